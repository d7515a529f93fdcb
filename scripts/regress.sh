#!/usr/bin/env bash
# SQL regression tests (pg_regress, as pgvector runs them): tests/pg_regress/sql/*.sql against the
# extension installed in the system cluster, compared with tests/pg_regress/expected/*.out.
# The order is tests/pg_regress/schedule. On failure the diff is printed.
set -euo pipefail
cd "$(dirname "$0")/.."
PG_REGRESS=$(dirname "$(/usr/lib/postgresql/15/bin/pg_config --pgxs)")/../test/regress/pg_regress
bash scripts/cluster.sh start
work=$(mktemp -d /tmp/persona-regress.XXXXXX)
cp -r tests/pg_regress/. "$work/"
chown -R postgres:postgres "$work"
status=0
(cd "$work" && runuser -u postgres -- "$PG_REGRESS" \
   --inputdir=. --outputdir=. --bindir=/usr/lib/postgresql/15/bin \
   --dbname=persona_regress --schedule=schedule) | tee "$work/summary.txt" || status=$?
# A closing line in the plain "N passed, N failed" form, for CI logs.
total=$(grep -c '^test ' "$work/summary.txt" || true)
failed=$(grep -c '^test .*FAILED' "$work/summary.txt" || true)
echo "regression: $((total - failed)) passed, $failed failed"
if [[ $status -ne 0 ]]; then
  [[ -f "$work/regression.diffs" ]] && cat "$work/regression.diffs"
  echo "regression tests failed; results in $work" >&2
  exit $status
fi
rm -rf "$work"
