#!/usr/bin/env bash
# Concurrency and durability, against the extension installed in the system cluster:
#   1. pgbench: CLIENTS clients for SECONDS seconds call every reading function (cf_predict,
#      cf_recommend, cf_similar_items, campaign_metrics, user_profile, bert_score) while one
#      session retrains the model they read in a loop and another rolls it back and forth with
#      cf_deploy. Each version is trained on ratings that all equal 1 + version % 5, so a baseline
#      model of version v predicts exactly that for everyone: every answer is checked, inside a
#      REPEATABLE READ transaction, against the version persona.cf_models says is active in the
#      same snapshot (an answer from a torn, stale or uncommitted model fails the client).
#   2. kill -9 of a backend in the middle of a training: after crash recovery every committed
#      model row is byte-identical and no partial version exists.
#   3. kill -9 of the postmaster right after a training commits: after a restart the new
#      version is there, byte-identical.
#   4. kill -9 of the inference worker (when pg_persona is preloaded): the server restarts its
#      processes and scores text again.
# Prints figures for the README's Reliability section; exits non-zero on any failure. PGOPTIONS
# (e.g. "-c persona.inference_spin=on") is passed to the pgbench clients.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/pg.sh
CLIENTS=${CLIENTS:-8}
SECONDS_RUN=${SECONDS_RUN:-30}
DB=persona_stress
bash scripts/cluster.sh start
PGPORT=$(pg_port)
export PGPORT
psql() { runuser -u postgres -- "$PG_BINDIR/psql" -X -q -v ON_ERROR_STOP=1 "$@"; }
pgbench() { runuser -u postgres -- env PGOPTIONS="${PGOPTIONS:-}" "$PG_BINDIR/pgbench" "$@"; }
work=$(mktemp -d /tmp/persona-stress.XXXXXX)
chmod 755 "$work"
fail() { echo "stress: FAILED: $*" >&2; exit 1; }

psql -d postgres -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB"
psql -d "$DB" <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION pg_persona;
SELECT persona.load_demo() IS NOT NULL AS loaded;
CREATE TABLE stress_ratings AS SELECT user_id, item_id, 1::real AS rating FROM persona.ratings;
-- Version v is trained on ratings that all equal 1 + (v + shift) % 5 (a rolled-back training
-- uses another shift than the committed one that reuses its version number).
CREATE FUNCTION stress_retrain(shift int DEFAULT 0) RETURNS int LANGUAGE plpgsql AS $$
DECLARE v int;
BEGIN
  PERFORM pg_advisory_xact_lock(42);
  v := (SELECT coalesce(max(version), 0) + 1 FROM persona.cf_model_versions WHERE model = 'stress');
  UPDATE stress_ratings SET rating = 1 + (v + shift) % 5;
  RETURN (cf_train('stress_ratings', 'baseline', 'stress', '{"test_fraction": 0}') ->> 'version')::int;
END $$;
SELECT stress_retrain() AS first_version;
-- One reader's transaction: every answer must come from the version active in its snapshot,
-- which predicts the one rating it was trained on (its summary's rating_range).
CREATE FUNCTION stress_read(u bigint, i bigint) RETURNS void LANGUAGE plpgsql AS $$
DECLARE p real; top real; v int; c real;
BEGIN
  p := cf_predict(u, i, 'stress');
  SELECT m.active_version, (w.summary -> 'rating_range' ->> 0)::real INTO v, c
    FROM persona.cf_models m JOIN persona.cf_model_versions w ON w.model = m.model AND w.version = m.active_version
   WHERE m.model = 'stress';
  IF p IS DISTINCT FROM c THEN
    RAISE EXCEPTION 'prediction % is not from the active version % (trained on %)', p, v, c;
  END IF;
  top := (SELECT max(score) FROM cf_recommend(u, 3, 'stress', false));
  IF top IS DISTINCT FROM p THEN
    RAISE EXCEPTION 'recommendation score % differs from prediction % in one transaction', top, p;
  END IF;
  PERFORM count(*) FROM cf_similar_items(i, 3, 'default');
  PERFORM campaign_metrics('spring_outdoor');
  PERFORM user_profile(u, 'stress');
  PERFORM bert_score('a lovely, well made tent');
END $$;
SELECT cf_train(algorithm => 'svd', options => '{"seed": 1}') IS NOT NULL AS default_trained;
SQL

cat > "$work/read.sql" <<'SQL'
\set u random(1, 500)
\set i random(1, 120)
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT stress_read(:u, :i);
END;
SQL
# A training that is used, then rolled back (its version number is reused by the next one,
# trained on another rating), then a committed one, then a check in the same backend.
cat > "$work/retrain.sql" <<'SQL'
BEGIN;
SELECT stress_retrain(2);
SELECT stress_read(1, 1);
ROLLBACK;
SELECT stress_retrain();
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT stress_read(1, 1);
END;
SQL
cat > "$work/deploy.sql" <<'SQL'
SELECT cf_deploy('stress', v) FROM (SELECT version AS v FROM persona.cf_model_versions
 WHERE model = 'stress' ORDER BY random() LIMIT 1) s;
SQL

echo "== 1. $CLIENTS readers for ${SECONDS_RUN}s against a retraining loop and a deploying loop"
pgbench -n -d "$DB" -c 1 -T "$SECONDS_RUN" -f "$work/retrain.sql" > "$work/retrain.out" 2>&1 &
retrain=$!
pgbench -n -d "$DB" -c 1 -T "$SECONDS_RUN" -f "$work/deploy.sql" > "$work/deploy.out" 2>&1 &
deploy=$!
status=0
pgbench -n -d "$DB" -c "$CLIENTS" -j 2 -T "$SECONDS_RUN" -f "$work/read.sql" > "$work/read.out" 2>&1 || status=$?
wait $retrain || fail "the retraining loop failed: $(cat "$work/retrain.out")"
wait $deploy || fail "the deploying loop failed: $(cat "$work/deploy.out")"
grep -E "aborted|ERROR" "$work/read.out" && fail "a reader got a wrong answer or an error (above)"
[[ $status -eq 0 ]] || fail "pgbench exited with $status: $(cat "$work/read.out")"
reads=$(awk '/number of transactions actually processed/ {print $NF}' "$work/read.out" | cut -d/ -f1)
tps=$(awk '/^tps/ {print $3; exit}' "$work/read.out")
retrains=$(awk '/number of transactions actually processed/ {print $NF}' "$work/retrain.out" | cut -d/ -f1)
deploys=$(awk '/number of transactions actually processed/ {print $NF}' "$work/deploy.out" | cut -d/ -f1)
echo "stress: $reads checked reads ($tps tps, each 6 functions) from $CLIENTS clients in ${SECONDS_RUN}s, during $retrains retrainings and $deploys deployments: every answer from the active version of its snapshot"

snapshot() {
  psql -d "$DB" -At -c "SELECT count(*) || ' ' || coalesce(md5(string_agg(model || version || md5(data), ',' ORDER BY model, version)), '') FROM persona.cf_model_versions"
}
await_ready() {
  for _ in $(seq 1 60); do
    runuser -u postgres -- "$PG_BINDIR/pg_isready" -q -p "$PGPORT" && psql -d "$DB" -c "SELECT 1" >/dev/null 2>&1 && return 0
    sleep 1
  done
  fail "the server did not come back"
}

echo "== 2. kill -9 of a backend in the middle of a training"
psql -d "$DB" -c "CREATE TABLE big AS SELECT u AS user_id, i AS item_id, (1 + (u * 7 + i * 13) % 5)::real AS rating FROM generate_series(1, 4000) u, generate_series(1, 150) i"
before=$(snapshot)
(psql -d "$DB" -c "SET application_name = 'persona_kill_me'" -c "SELECT cf_train('big', 'svdpp', 'killed', '{\"epochs\": 200}')" > "$work/killed.out" 2>&1 || true) &
trainer=$!
pid=""
for _ in $(seq 1 100); do
  pid=$(psql -d "$DB" -At -c "SELECT pid FROM pg_stat_activity WHERE application_name = 'persona_kill_me' AND query LIKE '%cf_train%' AND state = 'active'" || true)
  [[ -n "$pid" ]] && break
  sleep 0.1
done
[[ -n "$pid" ]] || fail "the training did not start"
sleep 3   # well into the training (it reads the source, then trains for minutes)
kill -9 "$pid"
wait $trainer || true
await_ready
after=$(snapshot)
[[ "$before" == "$after" ]] || fail "model rows changed after a backend was killed: $before -> $after"
partial=$(psql -d "$DB" -At -c "SELECT count(*) FROM persona.cf_model_versions WHERE model = 'killed'")
[[ "$partial" == 0 ]] || fail "a partial model of the killed training exists"
psql -d "$DB" -At -c "SELECT cf_predict(1, 1, 'stress') IS NOT NULL" | grep -q t || fail "models unusable after the crash"
echo "stress: backend $pid killed 3 s into an SVD++ training: crash recovery kept all $(echo "$before" | cut -d' ' -f1) model rows byte-identical, no partial model"

echo "== 3. kill -9 of the postmaster right after a training commits"
version=$(psql -d "$DB" -At -c "SELECT stress_retrain()")
committed=$(snapshot)
postmaster=$(head -1 "$(pg_main_cluster | awk '{print $6}')/postmaster.pid")
kill -9 "$postmaster"
for _ in $(seq 1 50); do kill -0 "$postmaster" 2>/dev/null || break; sleep 0.1; done
# Orphaned backends exit when they notice; then the cluster starts again.
sleep 2
pg_ctlcluster "$PG_MAJOR" main start || { sleep 3; pg_ctlcluster "$PG_MAJOR" main start; }
await_ready
restarted=$(snapshot)
[[ "$committed" == "$restarted" ]] || fail "committed model rows changed across a postmaster kill: $committed -> $restarted"
active=$(psql -d "$DB" -At -c "SELECT active_version FROM persona.cf_models WHERE model = 'stress'")
[[ "$active" == "$version" ]] || fail "version $version was committed but $active is active after the restart"
p=$(psql -d "$DB" -At -c "SELECT cf_predict(1, 1, 'stress')")
[[ "$p" == "$((1 + version % 5))" ]] || fail "the restarted server predicts $p, not $((1 + version % 5))"
echo "stress: postmaster killed right after version $version committed: after restart it is active, byte-identical, and predicts as trained"

echo "== 4. kill -9 of the inference worker"
# A crash of the worker (here SIGKILL; a segfault inside ONNX Runtime would be the same) is a
# crash of a process attached to shared memory: the postmaster restarts every process, the
# worker with them, and text scoring comes back by itself.
wpid=$(psql -d "$DB" -At -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_persona inference'")
if [[ -n "$wpid" ]]; then
  psql -d "$DB" -At -c "SELECT bert_score('warm up')" >/dev/null
  kill -9 "$wpid"
  scored=""
  for _ in $(seq 1 150); do
    scored=$(psql -d "$DB" -At -c "SELECT bert_score('a lovely, well made tent') > 0.5" 2>/dev/null || true)
    [[ "$scored" == t ]] && break
    sleep 0.2
  done
  [[ "$scored" == t ]] || fail "text scoring did not come back after the inference worker was killed"
  new=$(psql -d "$DB" -At -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_persona inference'")
  [[ -n "$new" && "$new" != "$wpid" ]] || fail "no new inference worker after the old one was killed"
  echo "stress: inference worker $wpid killed: the server restarted its processes, worker $new scores text again"
else
  echo "stress: no inference worker (pg_persona not in shared_preload_libraries): step 4 skipped"
fi

psql -d postgres -c "DROP DATABASE $DB"
rm -rf "$work"
echo "stress: passed"
