#!/usr/bin/env bash
# RSS and PSS of backends scoring text at once (the default sentiment model), from
# /proc/PID/smaps_rollup, with 1 and with N concurrent backends. Needs `make bench` to have
# created persona_bench.sentences. Usage: benches/memory.sh [N=8]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/pg.sh"
N=${1:-8}
DB=persona_bench
sql="SET persona.inference_threads = 1; SELECT count(bert_score(body)) FROM (SELECT body FROM sentences LIMIT 300) s; SELECT pg_sleep(8);"
for i in $(seq 1 "$N"); do
  runuser -u postgres -- psql -X -q -d "$DB" -v ON_ERROR_STOP=1 -c "SET application_name = 'membench'" -c "$sql" >/dev/null &
done
sleep 1
# wait until every backend has scored and is sleeping
for _ in $(seq 1 120); do
  n=$(runuser -u postgres -- psql -X -qAt -d "$DB" -c "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'membench' AND query LIKE '%pg_sleep%' AND state = 'active'")
  [[ "$n" -ge "$N" ]] && break
  sleep 1
done
pids=$(runuser -u postgres -- psql -X -qAt -d "$DB" -c "SELECT pid FROM pg_stat_activity WHERE application_name = 'membench'")
rss=0; pss=0; k=0
for p in $pids; do
  r=$(awk '/^Rss:/ {print $2}' /proc/$p/smaps_rollup); s=$(awk '/^Pss:/ {print $2}' /proc/$p/smaps_rollup)
  rss=$((rss + r)); pss=$((pss + s)); k=$((k + 1))
done
echo "$k backends scoring with the sentiment model: total RSS $((rss / 1024)) MB, total PSS $((pss / 1024)) MB, per backend RSS $((rss / k / 1024)) MB, PSS $((pss / k / 1024)) MB"
wait
