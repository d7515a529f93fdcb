#!/usr/bin/env bash
# SQL regression tests (pg_regress, as pgvector runs them): tests/pg_regress/sql/*.sql against the
# extension installed in the system cluster, compared with tests/pg_regress/expected/*.out.
# The order is tests/pg_regress/schedule. On failure the diff is printed. REGRESS_ONLY="setup cf"
# runs only the named suites (in that order; most need setup first), for work on one suite.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/pg.sh
PG_REGRESS=$(dirname "$("$PG_CONFIG" --pgxs)")/../test/regress/pg_regress
bash scripts/cluster.sh start
# pg_regress's psql connects by port, not through Debian's wrapper.
PGPORT=$(pg_port)
export PGPORT
work=$(mktemp -d /tmp/persona-regress.XXXXXX)
cp -r tests/pg_regress/. "$work/"
if [[ -n "${REGRESS_ONLY:-}" ]]; then
  printf 'test: %s\n' $REGRESS_ONLY > "$work/schedule"
fi
# The expected outputs name the directories of Debian's PostgreSQL 15 (setting defaults, library
# paths in messages); on another server they are that server's.
lib=$("$PG_CONFIG" --pkglibdir) share=$("$PG_CONFIG" --sharedir)
sed -i -e "s#/usr/lib/postgresql/15/lib#$lib#g" -e "s#/usr/share/postgresql/15#$share#g" "$work"/expected/*.out
# Test data of the text-model tests (bert.sql), read there through \getenv abs_srcdir PG_ABS_SRCDIR:
# the tiny ONNX graphs and tokenizers of persona-core's tests, a stub ONNX Runtime that reports
# version 1.10 (too old), and a model directory with one model, a symbolic link that escapes it
# and a model directory whose model.onnx links out of it.
data=$work/data
mkdir -p "$data/models/tiny" "$data/outside"
cp crates/persona-core/tests/data/text/*.onnx crates/persona-core/tests/data/text/*.json "$data/"
cp "$data/encoder.onnx" "$data/models/tiny/model.onnx"
cp "$data/tokenizer.json" "$data/models/tiny/"
cp "$data/encoder.onnx" "$data/tokenizer.json" "$data/outside/"
ln -s ../outside "$data/models/escape"
mkdir -p "$data/models/linked"
ln -s ../../outside/encoder.onnx "$data/models/linked/model.onnx"
cp "$data/tokenizer.json" "$data/models/linked/"
cat > "$data/old_ort.c" <<'C'
typedef struct { const void *(*GetApi)(unsigned); const char *(*GetVersionString)(void); } OrtApiBase;
static const void *get_api(unsigned v) { (void)v; return 0; }
static const char *version(void) { return "1.10.0"; }
static const OrtApiBase base = { get_api, version };
const OrtApiBase *OrtGetApiBase(void) { return &base; }
C
cc -shared -fPIC -o "$data/libonnxruntime_old.so" "$data/old_ort.c"
chown -R postgres:postgres "$work"
# The server log from here on must show no crash: a backend killed by a signal (which makes the
# postmaster restart every backend), a PANIC, or a restart.
log=$(pg_main_cluster | awk '{print $7}')
log_start=$(stat -c %s "$log" 2>/dev/null || echo 0)
status=0
(cd "$work" && runuser -u postgres -- "$PG_REGRESS" \
   --inputdir=. --outputdir=. --bindir="$PG_BINDIR" \
   --dbname=persona_regress --schedule=schedule) | tee "$work/summary.txt" || status=$?
# A closing line in the plain "N passed, N failed" form, for CI logs.
total=$(grep -c '^test ' "$work/summary.txt" || true)
failed=$(grep -c '^test .*FAILED' "$work/summary.txt" || true)
echo "regression: $((total - failed)) passed, $failed failed"
if [[ -f "$log" ]]; then
  crashes=$(tail -c +$((log_start + 1)) "$log" \
    | grep -E "terminated by signal|PANIC|server process .* was terminated|all server processes terminated|database system was interrupted" || true)
  if [[ -n "$crashes" ]]; then
    echo "the server log shows crashes during the regression tests:" >&2
    echo "$crashes" >&2
    status=1
  else
    echo "server log: no crash, PANIC or restart during the run ($log)"
  fi
else
  echo "server log $log not found: crash check skipped" >&2
fi
if [[ $status -ne 0 ]]; then
  [[ -f "$work/regression.diffs" ]] && cat "$work/regression.diffs"
  echo "regression tests failed; results in $work" >&2
  exit $status
fi
rm -rf "$work"
