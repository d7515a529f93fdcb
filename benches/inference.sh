#!/usr/bin/env bash
# persona.inference = backend (each backend runs its own ONNX Runtime session) against worker
# (one shared inference worker), side by side in one run with the default 'sentiment' model:
#   1. memory: PSS of MEM_CLIENTS backends that have each scored SCORE_ROWS texts, against the
#      same number of idle backends and one backend-mode scorer alone (worker mode: plus the
#      worker's own PSS)
#   2. throughput: pgbench, CLIENTS clients for DURATION seconds, one bert_score per transaction
#   3. one backend, array form: bert_score(text[]) over ARRAY_ROWS texts (best of REPEAT)
#   4. one backend, per row: count(bert_score(body)) over ROW_ROWS rows (best of REPEAT)
#   5. the first call in a new backend, FIRST_CALLS fresh connections per mode
# Prints a table and writes benches/inference-results.json. Runs as root against the running
# system cluster (scripts/cluster.sh start; pg_persona in shared_preload_libraries) and
# never restarts it. The texts are persona_bench.sentences (benches/run.sh) when it exists,
# else the same SST-2 phrases read from ../shared/data/sst2-train/train.tsv (SST2=...).
# The default run takes about 4 minutes on 2 cores; QUICK=1 is a smoke test (under 2 minutes).
# Every figure above can be set from the environment.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/pg.sh

if [[ ${QUICK:-0} == 1 ]]; then
  : "${DURATION:=5}" "${WARMUP:=2}" "${TEXTS:=1000}" "${ARRAY_ROWS:=500}" "${ROW_ROWS:=200}"
  : "${FIRST_CALLS:=4}" "${REPEAT:=1}" "${ROUNDS:=1}"
fi
: "${DURATION:=20}"     # seconds of each measured pgbench run
: "${ROUNDS:=3}"        # measured pgbench runs per mode, alternating (median reported)
: "${WARMUP:=5}"        # seconds of the discarded pgbench run before it
: "${CLIENTS:=8}"       # pgbench clients
: "${MEM_CLIENTS:=32}"  # concurrent backends whose memory is measured
: "${SCORE_ROWS:=50}"   # texts each of them scores first
: "${TEXTS:=2000}"      # rows of bench_texts
: "${ARRAY_ROWS:=2000}" # texts in the array-form call
: "${ROW_ROWS:=500}"    # rows of the per-row call
: "${FIRST_CALLS:=10}"  # fresh connections per mode for the first-call timing
: "${REPEAT:=2}"        # repetitions of the single-backend timings (best kept)
: "${READY_TIMEOUT:=300}"
DB=${DB:-persona_inference_bench}
OUT=benches/inference-results.json
MODES=(backend worker)

die() { echo "inference.sh: $*" >&2; exit 1; }
(( ARRAY_ROWS <= TEXTS && ROW_ROWS <= TEXTS && SCORE_ROWS <= TEXTS )) || die "ARRAY_ROWS, ROW_ROWS and SCORE_ROWS must not exceed TEXTS"
[[ "$(pg_main_cluster | awk '{print $4}')" == online ]] || die "cluster $PGCLUSTER is not running (bash scripts/cluster.sh start)"
PGPORT=$(pg_port)
SERVER_LOG=$(pg_main_cluster | awk '{print $7}')
export PGPORT
# Every client bypasses Debian's psql wrapper (PGPORT picks the cluster). Parallel plans are off
# so that each measurement is one process's work, as in bench.py.
pg() {
  runuser -u postgres -- env PGPORT="$PGPORT" ${PGAPPNAME:+PGAPPNAME="$PGAPPNAME"} \
    PGOPTIONS="${PGOPTIONS:-} -c max_parallel_workers_per_gather=0" "$@"
}
psql() { pg "$PG_BINDIR/psql" -X -q -v ON_ERROR_STOP=1 "$@"; }
q() { psql -At -d "$DB" "$@"; }
# A client in MODE: persona.inference is superuser-only, so it is set per connection.
in_mode() { local mode=$1; shift; PGOPTIONS="-c persona.inference=$mode" "$@"; }

work=$(mktemp -d /tmp/persona-inference.XXXXXX)
chmod 755 "$work"
chown postgres "$work"
results=$work/results    # "key value" lines, turned into JSON and the table at the end
bg=()
cleanup() {
  # Clients parked at the gate must not outlive a failed run.
  if (( ${#bg[@]} )); then
    q -c "INSERT INTO inference_bench_gate VALUES ('abort')" >/dev/null 2>&1 || true
    wait "${bg[@]}" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
put() { echo "$1 $2" >> "$results"; }
started=$(date -u '+%F %T')
t_start=$SECONDS

# The machine ------------------------------------------------------------------------------------
cpu=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
version=$(psql -At -d postgres -c "SELECT version()")
max_conn=$(psql -At -d postgres -c "SHOW max_connections")
in_use=$(psql -At -d postgres -c "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()")
preload=$(psql -At -d postgres -c "SHOW shared_preload_libraries")
# Other work on the machine (a build, another test suite) skews every figure: the load and the
# other connections at the start are printed with them.
load=$(cut -d' ' -f1-3 /proc/loadavg)
echo "machine: $(nproc) CPUs, ${cpu:-unknown CPU}, $(awk '/^MemTotal/ {printf "%.1f GB", $2 / 1048576}' /proc/meminfo), load average $load"
echo "server:  ${version%%,*} (max_connections $max_conn; $in_use other client connections open)"
[[ ",${preload// /}," == *,pg_persona,* ]] || \
  die "pg_persona is not in shared_preload_libraries ('$preload'): no inference worker to compare with"
worker_pid() {
  local p pm
  p=$(psql -At -d postgres -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_persona inference'")
  # A worker without a database connection is not in pg_stat_activity: the postmaster's child
  # of that title.
  if [[ -z "$p" ]]; then
    pm=$(head -1 "$(psql -At -d postgres -c "SHOW data_directory")/postmaster.pid")
    p=$(ps --ppid "$pm" -o pid=,args= | awk '/pg_persona inference/ {print $1; exit}')
  fi
  echo "$p"
}
[[ -n "$(worker_pid)" ]] || die "the pg_persona inference worker is not running (see $SERVER_LOG)"
(( MEM_CLIENTS + in_use + 3 <= max_conn )) || \
  die "MEM_CLIENTS=$MEM_CLIENTS needs $((MEM_CLIENTS + 3)) connections; max_connections is $max_conn with $in_use in use"
# Backend mode costs about 250 MB RSS per scoring backend: too little memory would bring the OOM
# killer, whose kill of one backend restarts the whole server.
avail_mb=$(awk '/^MemAvailable/ {print int($2 / 1024)}' /proc/meminfo)
(( avail_mb > MEM_CLIENTS * 300 + 1024 )) || \
  die "MEM_CLIENTS=$MEM_CLIENTS backend-mode scorers need about $((MEM_CLIENTS * 300)) MB; $avail_mb MB available"
put machine.cpus "$(nproc)"; put machine.cpu "\"$cpu\""; put machine.postgres "\"${version%%,*}\""
put machine.load_average_at_start "\"$load\""; put machine.other_connections_at_start "$in_use"
put machine.mem_total_gb "$(awk '/^MemTotal/ {printf "%.1f", $2 / 1048576}' /proc/meminfo)"

# The texts ------------------------------------------------------------------------------------
# A database of its own, created by this build's extension script: a catalog created by an older
# build has no graph hashes (bert_model_store.onnx_sha256) and then runs every graph in the
# backend whatever persona.inference says.
psql -d postgres -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB"
psql -d "$DB" -c "SET client_min_messages = warning" -c "CREATE EXTENSION pg_persona"
q -c "CREATE TABLE bench_texts (id int PRIMARY KEY, body text NOT NULL)" \
  -c "CREATE TABLE inference_bench_gate (tag text)"
SST2=${SST2:-../shared/data/sst2-train/train.tsv}
if [[ "$(psql -At -d persona_bench -c "SELECT to_regclass('public.sentences') IS NOT NULL" 2>/dev/null)" == t ]]; then
  text_source="persona_bench.sentences"
  psql -d persona_bench -c "\copy (SELECT id + 1, body FROM sentences ORDER BY id LIMIT $TEXTS) TO pstdout" |
    q -c "\copy bench_texts FROM pstdin"
elif [[ -f "$SST2" ]]; then
  text_source=$(realpath "$SST2")
  # bench.py's selection: the first phrases of at least five words, in file order.
  python3 - "$SST2" "$TEXTS" <<'PY' | q -c "\copy bench_texts FROM pstdin"
import sys
n, out = int(sys.argv[2]), []
for line in open(sys.argv[1], encoding="utf-8").read().split("\n")[1:]:
    t = line.split("\t")[0].strip()
    if len(t.split()) >= 5:
        out.append(t)
    if len(out) == n:
        break
for i, t in enumerate(out, 1):
    print(f"{i}\t{t.replace(chr(92), chr(92) * 2)}")
PY
else
  echo "SKIPPED: no texts: neither persona_bench.sentences (benches/run.sh) nor SST-2 at '$SST2' (set SST2)" >&2
  exit 0
fi
q -c "ANALYZE bench_texts"
n_texts=$(q -c "SELECT count(*) FROM bench_texts")
(( n_texts >= ARRAY_ROWS && n_texts >= ROW_ROWS )) || die "only $n_texts texts in $text_source"
# The first call also checks that 'sentiment' is registered and loads it into the worker.
in_mode worker q -c "SELECT bert_score('a fine film')" >/dev/null || die "scoring with 'sentiment' in worker mode failed"
settings=$(q -F ' ' -c "SELECT string_agg(name || '=' || setting, ' ' ORDER BY name) FROM pg_settings
                        WHERE name IN ('persona.worker_threads', 'persona.inference_threads', 'persona.batch_size',
                                       'persona.inference_spin', 'persona.worker_max_graphs')")
echo "texts:   $n_texts from $text_source; $settings"
put texts "$n_texts"; put texts_source "\"$text_source\""; put settings "\"$settings\""

# 1. Memory ------------------------------------------------------------------------------------
# Each group of clients does its work, then waits at a gate (a table polled by a DO block, so no
# backend has to be terminated) while /proc/PID/smaps_rollup of every one is read.
# Sums Rss and Pss (kB) over the pids given into RSS and PSS.
mem_of() {
  local p r s
  RSS=0 PSS=0
  for p in "$@"; do
    [[ -r /proc/$p/smaps_rollup ]] || die "process $p is gone"
    read -r r s < <(awk '/^Rss:/ {r = $2} /^Pss:/ {s = $2} END {print r + 0, s + 0}' "/proc/$p/smaps_rollup")
    RSS=$((RSS + r)); PSS=$((PSS + s))
  done
}
# measure TAG MODE N SQL: N clients in MODE run SQL, then wait at the gate; writes memory.TAG.*
measure() {
  local tag=$1 mode=$2 n=$3 sql=$4 gate ready pids deadline=$((SECONDS + READY_TIMEOUT)) p k held
  gate="DO \$\$BEGIN WHILE NOT EXISTS (SELECT FROM inference_bench_gate WHERE tag IN ('$tag', 'abort'))
          AND clock_timestamp() < statement_timestamp() + interval '20 minutes' LOOP
          PERFORM pg_sleep(0.2); END LOOP; END\$\$"
  bg=()
  for _ in $(seq 1 "$n"); do
    PGAPPNAME=$tag in_mode "$mode" q -c "$sql" -c "$gate" >/dev/null &
    bg+=($!)
  done
  while :; do
    ready=$(q -c "SELECT count(*) FROM pg_stat_activity WHERE application_name = '$tag' AND state = 'active' AND query LIKE 'DO %'")
    (( ready >= n )) && break
    for p in "${bg[@]}"; do kill -0 "$p" 2>/dev/null || die "a '$tag' client failed before reaching the gate"; done
    (( SECONDS < deadline )) || die "'$tag': only $ready of $n clients ready after ${READY_TIMEOUT}s"
    sleep 1
  done
  pids=$(q -c "SELECT pid FROM pg_stat_activity WHERE application_name = '$tag'")
  k=$(wc -w <<< "$pids")
  (( k == n )) || die "'$tag': $k backends, expected $n"
  mem_of $pids
  # Which mode really ran: a backend running its own session is listed in persona.text_cache.
  held=$(q -c "SELECT count(*) FROM persona.text_cache WHERE holder = 'backend' AND pid IN ($(paste -sd, <<< "$pids"))")
  if [[ "$tag" == worker* ]] && (( held > 0 )); then
    die "'$tag': $held backends hold their own session although persona.inference = worker"
  elif [[ "$tag" == backend* ]] && (( held != n )); then
    die "'$tag': only $held of $n backends hold their own session in persona.inference = backend"
  fi
  put "memory.$tag.backends" "$n"; put "memory.$tag.total_rss_mb" "$((RSS / 1024))"; put "memory.$tag.total_pss_mb" "$((PSS / 1024))"
  printf "memory:  %-11s %3d backends, total PSS %6d MB, RSS %6d MB\n" "$tag" "$n" $((PSS / 1024)) $((RSS / 1024))
  if [[ "$tag" == worker* ]]; then
    local wp
    wp=$(worker_pid)
    [[ -n "$wp" ]] || die "no inference worker found"
    mem_of "$wp"
    put "memory.$tag.worker_rss_mb" "$((RSS / 1024))"; put "memory.$tag.worker_pss_mb" "$((PSS / 1024))"
    printf "memory:  %-11s the inference worker (pid %d): PSS %6d MB, RSS %6d MB\n" "$tag" "$wp" $((PSS / 1024)) $((RSS / 1024))
  fi
  q -c "INSERT INTO inference_bench_gate VALUES ('$tag')" >/dev/null
  for p in "${bg[@]}"; do wait "$p" || die "'$tag': a client failed"; done
  bg=()
}
# The worker keeps what its busiest batch made ONNX Runtime allocate since it started (other
# databases' work included), so its size before this run's scoring is recorded too.
wp=$(worker_pid)
[[ -n "$wp" ]] || die "no inference worker found"
mem_of "$wp"
put memory.worker_at_start.pss_mb "$((PSS / 1024))"; put memory.worker_at_start.rss_mb "$((RSS / 1024))"
printf "memory:  the inference worker (pid %d) before this run's scoring: PSS %d MB, RSS %d MB\n" "$wp" $((PSS / 1024)) $((RSS / 1024))
score="SELECT count(bert_score(body)) FROM (SELECT body FROM bench_texts ORDER BY id LIMIT $SCORE_ROWS) s"
measure idle auto "$MEM_CLIENTS" "SELECT 1"
measure backend_one backend 1 "$score"
measure backend backend "$MEM_CLIENTS" "$score"
measure worker worker "$MEM_CLIENTS" "$score"

# 2. Throughput: pgbench, one bert_score per transaction ------------------------------------------
cat > "$work/score.sql" <<SQL
\set id random(1, $n_texts)
SELECT bert_score(body) FROM bench_texts WHERE id = :id;
SQL
chmod 644 "$work/score.sql"
# This VM's throughput drifts by ±20% from minute to minute: the modes alternate, ROUNDS times,
# and each mode's figure is the median of its rounds (latencies: all its rounds' transactions).
for round in $(seq 1 "$ROUNDS"); do
  for mode in "${MODES[@]}"; do
    # The warm-up's connections are gone before the measured run: in backend mode each measured
    # client still loads its own session in its first transaction (as any new connection would).
    in_mode "$mode" pg "$PG_BINDIR/pgbench" -n -c "$CLIENTS" -j 2 -T "$WARMUP" -f "$work/score.sql" "$DB" >/dev/null 2>&1 ||
      die "pgbench warm-up in $mode mode failed"
    in_mode "$mode" pg "$PG_BINDIR/pgbench" -n -c "$CLIENTS" -j 2 -T "$DURATION" -f "$work/score.sql" \
      -l --log-prefix="$work/pgbench_${mode}_$round" "$DB" > "$work/out_$mode.txt" 2>&1 ||
      { cat "$work/out_$mode.txt" >&2; die "pgbench in $mode mode failed"; }
    tps=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' "$work/out_$mode.txt")
    echo "$tps" >> "$work/tps_$mode"
    echo "pgbench: round $round, $mode: $tps tps"
  done
done
for mode in "${MODES[@]}"; do
  tps=$(sort -g "$work/tps_$mode" | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}')
  put "pgbench.$mode.tps" "$tps"
  put "pgbench.$mode.rounds" "[$(paste -sd, "$work/tps_$mode")]"
  # Per-transaction log (PG15 pgbench(1), "Per-Transaction Logging"): the third field is the
  # transaction's time in microseconds ("failed" for a failed one). A client's first transaction
  # is its lowest transaction_no (PG15 counts from 1).
  cat "$work/pgbench_${mode}_"* | python3 -c '
import math, sys
lat, first, failed = [], {}, 0
for line in sys.stdin:
    f = line.split()
    if not f[2].isdigit():
        failed += 1
        continue
    ms = int(f[2]) / 1000
    lat.append(ms)
    if f[0] not in first or int(f[1]) < first[f[0]][0]:
        first[f[0]] = (int(f[1]), ms)
lat.sort()
pct = lambda p: lat[max(0, math.ceil(p * len(lat)) - 1)]
mode = sys.argv[1]
print(f"pgbench.{mode}.transactions {len(lat)}")
print(f"pgbench.{mode}.failed {failed}")
print(f"pgbench.{mode}.p50_ms {pct(0.50):.2f}")
print(f"pgbench.{mode}.p99_ms {pct(0.99):.2f}")
print(f"pgbench.{mode}.first_txn_max_ms {max(ms for _, ms in first.values()):.1f}")
' "$mode" >> "$results"
done

# 3 and 4. One backend: array form and per row, modes interleaved, best of REPEAT -------------------
# Each repetition is a new session: a warm-up call (the backend-mode session load), then both
# timings, taken with clock_timestamp() inside the session.
for rep in $(seq 1 "$REPEAT"); do
  for mode in "${MODES[@]}"; do
    read -r t_arr t_row < <(in_mode "$mode" q -F ' ' <<SQL
SELECT count(*) FROM unnest(bert_score(ARRAY(SELECT body FROM bench_texts ORDER BY id DESC LIMIT 100))) \g /dev/null
SELECT clock_timestamp() AS t0 \gset
SELECT count(*) FROM unnest(bert_score(ARRAY(SELECT body FROM bench_texts ORDER BY id LIMIT $ARRAY_ROWS))) \g /dev/null
SELECT clock_timestamp() AS t1 \gset
SELECT count(bert_score(body)) FROM (SELECT body FROM bench_texts ORDER BY id LIMIT $ROW_ROWS) s \g /dev/null
SELECT extract(epoch FROM :'t1'::timestamptz - :'t0'::timestamptz),
       extract(epoch FROM clock_timestamp() - :'t1'::timestamptz);
SQL
)
    [[ -n "$t_row" ]] || die "single-backend timing in $mode mode failed"
    put "single.$mode.array_s" "$t_arr"; put "single.$mode.row_s" "$t_row"
    printf "single:  %-7s rep %d: array %d texts in %.2f s, per row %d in %.2f s\n" "$mode" "$rep" "$ARRAY_ROWS" "$t_arr" "$ROW_ROWS" "$t_row"
  done
done
put single.array_rows "$ARRAY_ROWS"; put single.row_rows "$ROW_ROWS"

# 5. First call in a new backend ----------------------------------------------------------------
# psql's \timing, so the figure includes the round trip but not the connection.
first_call() { in_mode "$1" q -c '\timing on' -c "SELECT bert_score('a fine film')" | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p'; }
for mode in "${MODES[@]}"; do first_call "$mode" >/dev/null; done   # library pages, the worker's graph
for _ in $(seq 1 "$FIRST_CALLS"); do
  for mode in "${MODES[@]}"; do
    ms=$(first_call "$mode") || true
    [[ -n "$ms" ]] || die "first call in $mode mode printed no time"
    put "first_call.$mode.ms" "$ms"
  done
done

# Report -----------------------------------------------------------------------------------------
put elapsed_s "$((SECONDS - t_start))"
put settings_run "\"DURATION=$DURATION WARMUP=$WARMUP CLIENTS=$CLIENTS MEM_CLIENTS=$MEM_CLIENTS SCORE_ROWS=$SCORE_ROWS TEXTS=$TEXTS ARRAY_ROWS=$ARRAY_ROWS ROW_ROWS=$ROW_ROWS FIRST_CALLS=$FIRST_CALLS REPEAT=$REPEAT ROUNDS=$ROUNDS QUICK=${QUICK:-0}\""
python3 - "$results" "$OUT" <<'PY'
import datetime, json, statistics, sys

raw = {}  # key -> every value put under it, in order
for line in open(sys.argv[1]):
    key, value = line.rstrip("\n").split(" ", 1)
    raw.setdefault(key, []).append(json.loads(value))
one = lambda key: raw[key][-1]
modes = ("backend", "worker")
run = dict(kv.split("=") for kv in one("settings_run").split())
n = one("memory.backend.backends")
idle, alone = one("memory.idle.total_pss_mb"), one("memory.backend_one.total_pss_mb")

memory = {"backends": n, "texts_scored_each": int(run["SCORE_ROWS"]),
          "idle_total_pss_mb": idle, "one_backend_mode_scorer_pss_mb": alone,
          "worker_at_start_pss_mb": one("memory.worker_at_start.pss_mb"),
          "worker_at_start_rss_mb": one("memory.worker_at_start.rss_mb")}
for m in modes:
    total = one(f"memory.{m}.total_pss_mb")
    r = {"total_pss_mb": total, "total_rss_mb": one(f"memory.{m}.total_rss_mb"),
         "per_backend_pss_mb": total / n, "per_backend_pss_above_idle_mb": (total - idle) / n}
    if m == "worker":
        r["worker_pss_mb"], r["worker_rss_mb"] = one("memory.worker.worker_pss_mb"), one("memory.worker.worker_rss_mb")
    r["total_pss_incl_worker_mb"] = total + r.get("worker_pss_mb", 0)
    r["ratio_to_2x_one_backend_scorer"] = r["total_pss_incl_worker_mb"] / (2 * alone)
    memory[m] = r
pgbench = {"clients": int(run["CLIENTS"]), "seconds": int(run["DURATION"])}
for m in modes:
    pgbench[m] = {k: one(f"pgbench.{m}.{k}") for k in ("tps", "rounds", "transactions", "failed", "p50_ms", "p99_ms", "first_txn_max_ms")}
arr_n, row_n = one("single.array_rows"), one("single.row_rows")
single = {"array_texts": arr_n, "row_texts": row_n, "repeats": int(run["REPEAT"])}
for m in modes:
    single[m] = {"array_texts_per_s": arr_n / min(raw[f"single.{m}.array_s"]),
                 "row_texts_per_s": row_n / min(raw[f"single.{m}.row_s"])}
first = {m: {"calls": len(raw[f"first_call.{m}.ms"]), "median_ms": statistics.median(raw[f"first_call.{m}.ms"]),
             "max_ms": max(raw[f"first_call.{m}.ms"])} for m in modes}
res = {"measured_on": datetime.date.today().isoformat(),
       "machine": {k.split(".", 1)[1]: v[-1] for k, v in raw.items() if k.startswith("machine.")},
       "run": run, "server_settings": one("settings"),
       "texts": {"rows": one("texts"), "source": one("texts_source")},
       "memory": memory, "pgbench": pgbench, "single_backend": single, "first_call": first,
       "elapsed_s": one("elapsed_s")}

M, P, S, F = memory, pgbench, single, first
both = lambda fmt: tuple(fmt(m) for m in modes)
rows = [
    (f"memory: {n} scoring backends, total PSS (MB)", *both(lambda m: f"{M[m]['total_pss_mb']}")),
    ("  inference worker PSS / RSS (MB)", "-", f"{M['worker']['worker_pss_mb']} / {M['worker']['worker_rss_mb']}"),
    ("  total PSS incl. worker (MB)", *both(lambda m: f"{M[m]['total_pss_incl_worker_mb']}")),
    (f"  vs 2 x one backend-mode scorer alone ({2 * alone} MB)", *both(lambda m: f"{M[m]['ratio_to_2x_one_backend_scorer']:.2f}x")),
    ("  PSS per backend (MB)", *both(lambda m: f"{M[m]['per_backend_pss_mb']:.1f}")),
    (f"  PSS per backend above an idle one ({idle / n:.1f} MB)", *both(lambda m: f"{M[m]['per_backend_pss_above_idle_mb']:.1f}")),
    (f"pgbench, {P['clients']} clients, 1 text/txn: tps (median)", *both(lambda m: f"{P[m]['tps']:.1f}")),
    (f"  each of {len(P['backend']['rounds'])} alternating {P['seconds']} s runs", *both(lambda m: " ".join(f"{t:.0f}" for t in P[m]['rounds']))),
    ("  latency p50 / p99 (ms)", *both(lambda m: f"{P[m]['p50_ms']:.1f} / {P[m]['p99_ms']:.1f}")),
    ("  slowest first transaction of a client (ms)", *both(lambda m: f"{P[m]['first_txn_max_ms']:.0f}")),
    ("  transactions (failed)", *both(lambda m: f"{P[m]['transactions']} ({P[m]['failed']})")),
    (f"one backend, array of {arr_n} texts: texts/s", *both(lambda m: f"{S[m]['array_texts_per_s']:.0f}")),
    (f"one backend, per row, {row_n} rows: texts/s", *both(lambda m: f"{S[m]['row_texts_per_s']:.0f}")),
    (f"first call in a new backend, median / max (ms)", *both(lambda m: f"{F[m]['median_ms']:.0f} / {F[m]['max_ms']:.0f}")),
]
w = max(len(r[0]) for r in rows)
print(f"\n{'persona.inference =':{w}}  {'backend':>15}  {'worker':>15}")
for r in rows:
    print(f"{r[0]:{w}}  {r[1]:>15}  {r[2]:>15}")
print(f"\none backend-mode scorer alone: PSS {alone} MB; {n} idle backends: PSS {idle} MB in all; "
      f"the worker before this run's scoring: PSS {memory['worker_at_start_pss_mb']} MB; "
      f"single-backend figures best of {single['repeats']}, first call over {first['backend']['calls']} connections.\n"
      f"{res['texts']['rows']} texts from {res['texts']['source']}; {res['server_settings']}; run took {res['elapsed_s']} s")
with open(sys.argv[2], "w") as f:
    json.dump(res, f, indent=2)
    f.write("\n")
PY
echo "results: $OUT"
# What the server logged during the run (an ERROR or a crash would make the figures meaningless).
if [[ -r "$SERVER_LOG" ]]; then
  bad=$(awk -v t="$started" 'f || ($1 ~ /^20[0-9][0-9]-/ && $1 " " $2 >= t) {f = 1; print}' "$SERVER_LOG" |
        grep -E 'ERROR|FATAL|PANIC|terminated|exited with' || true)
  if [[ -n "$bad" ]]; then echo "server log since $started UTC:"; echo "$bad" | tail -20; fi
fi
