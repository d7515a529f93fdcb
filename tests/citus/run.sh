#!/usr/bin/env bash
# pg_persona on a Citus cluster: builds three local nodes (a coordinator and two workers) from a
# PostgreSQL installation that has Citus and pg_persona installed, then checks that what Citus
# pushes down gives a single node's answers. See tests/citus/README.md. Not part of CI (Citus is
# not installable from the registries CI uses).
#
#   PG_CONFIG=/path/to/pg_config bash tests/citus/run.sh
#
# Exit status 0 when every check passed; each check prints "ok" or "FAILED" with what it saw.
set -euo pipefail
PG_CONFIG=${PG_CONFIG:-pg_config}
BIN=$("$PG_CONFIG" --bindir)
BASE=${CITUS_TEST_DIR:-/tmp/persona-citus}
read -r -a PORTS <<< "${CITUS_PORTS:-9700 9701 9702}"
KEEP=${KEEP_CLUSTER:-0}

# Run the server programs as postgres when started as root (initdb refuses root).
as_pg() { if [[ $(id -u) == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }
[[ -f "$("$PG_CONFIG" --pkglibdir)/citus.so" ]] || { echo "Citus is not installed under $("$PG_CONFIG" --pkglibdir)" >&2; exit 2; }
[[ -f "$("$PG_CONFIG" --pkglibdir)/pg_persona.so" ]] || { echo "pg_persona is not installed under $("$PG_CONFIG" --pkglibdir)" >&2; exit 2; }

stop_all() {
  for i in 0 1 2; do
    [[ -d "$BASE/n$i" ]] && as_pg "$BIN/pg_ctl" -D "$BASE/n$i" -m fast stop >/dev/null 2>&1 || true
  done
}
trap '[[ $KEEP == 1 ]] || stop_all' EXIT
stop_all
rm -rf "$BASE"; mkdir -p "$BASE"
[[ $(id -u) == 0 ]] && chown postgres: "$BASE"
for i in 0 1 2; do
  as_pg "$BIN/initdb" -D "$BASE/n$i" -A trust -U postgres >/dev/null
  cat >> "$BASE/n$i/postgresql.conf" <<CONF
port = ${PORTS[$i]}
listen_addresses = '127.0.0.1'
unix_socket_directories = '$BASE'
shared_preload_libraries = 'citus,pg_persona'
max_connections = 100
CONF
  as_pg "$BIN/pg_ctl" -D "$BASE/n$i" -l "$BASE/n$i.log" -w start >/dev/null
done

# q PORT SQL: the result of one statement, unaligned (errors stop the script).
q() { "$BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$BASE" -U postgres -p "$1" -d persona -Atc "$2"; }
# err PORT SQL: the error message of a statement expected to fail ("no error" otherwise).
err() {
  local out
  if out=$("$BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$BASE" -U postgres -p "$1" -d persona -Atc "$2" 2>&1); then
    echo "no error"
  else
    echo "$out"
  fi
}
C=${PORTS[0]}
failures=0
check() { # check NAME EXPECTED ACTUAL
  if [[ "$2" == "$3" ]]; then echo "ok      $1"; else echo "FAILED  $1: expected [$2], got [$3]"; failures=$((failures + 1)); fi
}
check_has() { # check_has NAME NEEDLE HAYSTACK
  if [[ "$3" == *"$2"* ]]; then echo "ok      $1"; else echo "FAILED  $1: [$2] not in [$3]"; failures=$((failures + 1)); fi
}

for i in 0 1 2; do
  "$BIN/createdb" -h "$BASE" -U postgres -p "${PORTS[$i]}" persona
  q "${PORTS[$i]}" "CREATE EXTENSION citus"
done
# CITUS_COORDINATOR_IN_METADATA=0 leaves the coordinator out of pg_dist_node: it then holds no
# replica of the reference tables, and even its own reads of the model tables go to a worker.
if [[ "${CITUS_COORDINATOR_IN_METADATA:-1}" == 1 ]]; then
  q "$C" "SELECT citus_set_coordinator_host('127.0.0.1', $C)" >/dev/null
fi
q "$C" "SELECT citus_add_node('127.0.0.1', ${PORTS[1]})" >/dev/null
q "$C" "SELECT citus_add_node('127.0.0.1', ${PORTS[2]})" >/dev/null
q "$C" "CREATE EXTENSION pg_persona" 2>&1 | grep -v '^WARNING\|^HINT' || true
check "CREATE EXTENSION reaches the workers" "1.1" \
  "$(q "$C" "SELECT string_agg(result, ',') FROM run_command_on_workers(\$\$SELECT count(*) || '.' || (SELECT count(*) FROM pg_extension WHERE extname = 'pg_persona') FROM pg_extension WHERE extname = 'pg_persona'\$\$)" | cut -d, -f1)"

# The demo data on the coordinator, and distributed copies of it.
q "$C" "SELECT persona.load_demo()" >/dev/null
q "$C" "CREATE TABLE ratings_d AS SELECT * FROM persona.ratings; SELECT create_distributed_table('ratings_d', 'user_id')" >/dev/null
q "$C" "CREATE TABLE users_d AS SELECT * FROM persona.users; SELECT create_distributed_table('users_d', 'user_id')" >/dev/null
q "$C" "CREATE TABLE events_d AS SELECT * FROM persona.campaign_events; SELECT create_distributed_table('events_d', 'user_id')" >/dev/null
q "$C" "CREATE TABLE feedback_d AS SELECT * FROM persona.feedback; SELECT create_distributed_table('feedback_d', 'user_id')" >/dev/null

# A role that trains a model before the tables are distributed: its owner must survive the copy.
q "$C" "CREATE ROLE alice LOGIN; CREATE ROLE bob LOGIN;
        GRANT INSERT ON persona.cf_model_versions TO alice; GRANT SELECT ON ratings_d, persona.ratings TO alice, bob"
q "$C" "SET ROLE alice; SELECT cf_train('persona.ratings', 'svd', 'alice_m', '{\"epochs\": 5}')" >/dev/null

# Training reads through SQL, in an order Citus does not fix: the same rows give the same bytes.
q "$C" "SELECT cf_train('ratings_d', 'svd', 'dist', '{\"epochs\": 5}')" >/dev/null
q "$C" "SELECT cf_train('ratings_d', 'svd', 'dist', '{\"epochs\": 5}')" >/dev/null
q "$C" "SELECT cf_train('persona.ratings', 'svd', 'local', '{\"epochs\": 5}')" >/dev/null
check "same rows, any order: identical model bytes" "1" \
  "$(q "$C" "SELECT count(DISTINCT md5(data)) FROM persona.cf_model_versions WHERE model IN ('dist', 'local')")"

# Before persona.distribute(): a pushed-down prediction says what is wrong and what to do.
e=$(err "$C" "SELECT sum(cf_predict(user_id, item_id, 'local')) FROM ratings_d")
check_has "before distribute: the worker's error names persona.distribute()" "persona.distribute()" "$e"
check_has "before distribute: the worker's error names the node" "127.0.0.1:" "$e"

check "persona.distribute() makes five reference tables" "made a reference table:5" \
  "$(q "$C" "SELECT action || ':' || count(*) FROM persona.distribute() GROUP BY action")"
check "persona.distribute() again changes nothing" "already a reference table:5" \
  "$(q "$C" "SELECT action || ':' || count(*) FROM persona.distribute() GROUP BY action")"
check "owners are the same roles on every node" "alice,alice" \
  "$(q "$C" "SELECT string_agg(result, ',') FROM run_command_on_workers(\$\$SELECT owner::text FROM persona.cf_active WHERE model = 'alice_m'\$\$)")"

# Predictions pushed down to the workers equal the coordinator's over its local copy (summed as
# float8: a real sum depends on the order the shards return).
single=$(q "$C" "SELECT round(sum(cf_predict(user_id, item_id, 'local')::float8)::numeric, 3) FROM persona.ratings")
check "cf_predict pushed down = single node" "$single" \
  "$(q "$C" "SELECT round(sum(cf_predict(user_id, item_id, 'local')::float8)::numeric, 3) FROM ratings_d")"
check "EXPLAIN: cf_predict runs on the workers" "1" \
  "$(q "$C" "EXPLAIN (VERBOSE) SELECT sum(cf_predict(user_id, item_id, 'local')) FROM ratings_d" | grep -c 'Task Count' || true)"
# A new version, then a deploy back: the workers see each at the next query.
q "$C" "SELECT cf_train('persona.ratings', 'baseline', 'local')" >/dev/null
v2=$(q "$C" "SELECT round(sum(cf_predict(user_id, item_id, 'local')::float8)::numeric, 3) FROM persona.ratings")
check "a new version is seen by the workers" "$v2" \
  "$(q "$C" "SELECT round(sum(cf_predict(user_id, item_id, 'local')::float8)::numeric, 3) FROM ratings_d")"
q "$C" "SELECT cf_deploy('local', 1)" >/dev/null
check "cf_deploy is seen by the workers" "$single" \
  "$(q "$C" "SELECT round(sum(cf_predict(user_id, item_id, 'local')::float8)::numeric, 3) FROM ratings_d")"
check "recommendations on the coordinator" "10" "$(q "$C" "SELECT count(*) FROM cf_recommend(1, 10, 'dist')")"

# Model privileges hold on the workers: alice may use her model there, bob may not.
check "alice predicts with her model on the workers" "ok" \
  "$(q "$C" "SET ROLE alice; SELECT CASE WHEN sum(cf_predict(user_id, item_id, 'alice_m')) > 0 THEN 'ok' END FROM ratings_d")"
check_has "bob may not use alice's model on the workers" "permission denied" \
  "$(err "$C" "SET ROLE bob; SELECT sum(cf_predict(user_id, item_id, 'alice_m')) FROM ratings_d")"

# Text models: the same versions on every node, and scores pushed down equal the coordinator's.
text=$(q "$C" "SELECT count(*) FROM persona.bert_model_store")
if [[ "$text" -gt 0 ]]; then
  versions=$(q "$C" "SELECT string_agg(name || ':' || version, ' ' ORDER BY name) FROM persona.bert_model_store")
  check "text-model versions are the same on every node" "$versions,$versions" \
    "$(q "$C" "SELECT string_agg(result, ',') FROM run_command_on_workers(\$\$SELECT string_agg(name || ':' || version, ' ' ORDER BY name) FROM persona.bert_model_store\$\$)")"
  check "bert_score pushed down = single node" \
    "$(q "$C" "SELECT round(sum(bert_score(body))::numeric, 4) FROM persona.feedback")" \
    "$(q "$C" "SELECT round(sum(bert_score(body))::numeric, 4) FROM feedback_d")"
else
  echo "skipped text-model checks: no text model registered (persona.model_dir has no models)"
fi

# Writes after distribution: the upserts and updates pg_persona sends replicate to every node.
if [[ "$text" -gt 0 ]]; then
  q "$C" "CREATE TABLE labelled AS SELECT body AS text, CASE WHEN user_id % 2 = 0 THEN 'a' ELSE 'b' END AS label
            FROM persona.feedback WHERE body IS NOT NULL" >/dev/null
  q "$C" "SELECT bert_train_classifier('halves', 'labelled', 'minilm', '{\"holdout_fraction\": 0}')" >/dev/null
  q "$C" "SELECT bert_train_classifier('halves', 'labelled', 'minilm', '{\"holdout_fraction\": 0, \"replace\": true}')" >/dev/null
  versions=$(q "$C" "SELECT string_agg(name || ':' || version, ' ' ORDER BY name) FROM persona.bert_model_store")
  check "text models registered and replaced after distribute: same versions on every node" "$versions,$versions" \
    "$(q "$C" "SELECT string_agg(result, ',') FROM run_command_on_workers(\$\$SELECT string_agg(name || ':' || version, ' ' ORDER BY name) FROM persona.bert_model_store\$\$)")"
  check "a classifier trained after distribute scores on the workers as on the coordinator" \
    "$(q "$C" "SELECT round(sum(bert_score(body, 'halves'))::numeric, 4) FROM persona.feedback")" \
    "$(q "$C" "SELECT round(sum(bert_score(body, 'halves'))::numeric, 4) FROM feedback_d")"
  q "$C" "SELECT bert_drop_model('halves')" >/dev/null
  check "bert_drop_model after distribute: gone on every node" "0,0" \
    "$(q "$C" "SELECT string_agg(result, ',') FROM run_command_on_workers(\$\$SELECT count(*) FROM persona.bert_model_store WHERE name = 'halves'\$\$)")"
fi
q "$C" "SELECT cf_model_grant('local', 'bob')" >/dev/null
check "cf_model_grant after distribute: the grantee by name on every node" "{bob},{bob}" \
  "$(q "$C" "SELECT string_agg(result, ',') FROM run_command_on_workers(\$\$SELECT usable_by::text FROM persona.cf_active WHERE model = 'local'\$\$)")"
check "bob predicts with the granted model on the workers" "ok" \
  "$(q "$C" "SET ROLE bob; SELECT CASE WHEN sum(cf_predict(user_id, item_id, 'local')) > 0 THEN 'ok' END FROM ratings_d")"
q "$C" "SELECT profile_train(options => '{\"as_of\": \"2026-04-15\", \"clusters\": false}')" >/dev/null
check "profile_train after distribute: the model on every node" "1,1" \
  "$(q "$C" "SELECT string_agg(result, ',') FROM run_command_on_workers(\$\$SELECT count(*) FROM persona.profile_active WHERE model = 'default'\$\$)")"
role_oids=$(q "$C" "SELECT 'alice' || '=' || 'alice'::regrole::oid") 
echo "info    role OIDs: coordinator $role_oids, workers $(q "$C" "SELECT string_agg(result, ' ') FROM run_command_on_workers(\$\$SELECT 'alice=' || 'alice'::regrole::oid\$\$)")"

# Campaign statistics over a distributed events table equal those over the local one.
before=$(q "$C" "SELECT md5((campaign_metrics('spring_outdoor') -> 'comparisons')::text)")
q "$C" "UPDATE persona.campaigns SET events = 'events_d' WHERE campaign = 'spring_outdoor'"
check "campaign_metrics over distributed events = single node" "$before" \
  "$(q "$C" "SELECT md5((campaign_metrics('spring_outdoor') -> 'comparisons')::text)")"

# Portraits read the data tables: pushed down to a worker, whose persona tables are empty local
# tables, an error (never a silent "prospect"); evaluated on the coordinator, a single node's.
check_has "user_profile pushed down with local data tables is refused" "local table" \
  "$(err "$C" "SELECT count(user_profile(user_id, as_of => '2026-04-15')) FROM users_d")"
check "user_profile over a MATERIALIZED CTE = single node" \
  "$(q "$C" "SELECT md5(string_agg(user_profile(user_id, as_of => '2026-04-15')::text, ',' ORDER BY user_id)) FROM persona.users")" \
  "$(q "$C" "WITH u AS MATERIALIZED (SELECT user_id FROM users_d) SELECT md5(string_agg(user_profile(user_id, as_of => '2026-04-15')::text, ',' ORDER BY user_id)) FROM u")"

# The cost of Citus closing idle connections: each new worker backend loads the model again.
# One million synthetic ratings (20,000 users x 5,000 items) distributed, an SVD model trained on
# them; the median of five pushed-down queries with 1 (Citus's default) and 16 cached connections.
q "$C" "CREATE TABLE big_d AS SELECT 1 + g % 20000 AS user_id, 1 + (101 * (g / 20000) + 7 * (g % 20000)) % 5000 AS item_id,
          (1 + (g * 31) % 5)::real AS rating FROM generate_series(0, 999999) g;
        SELECT create_distributed_table('big_d', 'user_id')" >/dev/null
q "$C" "SELECT cf_train('big_d', 'svd', 'big', '{\"epochs\": 3, \"test_fraction\": 0}')" >/dev/null
for conns in 1 16; do
  times=$("$BIN/psql" -X -q -h "$BASE" -U postgres -p "$C" -d persona -At \
    -c "SET citus.max_cached_conns_per_worker = $conns" \
    -c "SELECT sum(cf_predict(user_id, item_id, 'big')::float8) FROM big_d" \
    -c "\\timing on" \
    -c "SELECT sum(cf_predict(user_id, item_id, 'big')::float8) FROM big_d" \
    -c "SELECT sum(cf_predict(user_id, item_id, 'big')::float8) FROM big_d" \
    -c "SELECT sum(cf_predict(user_id, item_id, 'big')::float8) FROM big_d" \
    -c "SELECT sum(cf_predict(user_id, item_id, 'big')::float8) FROM big_d" \
    -c "SELECT sum(cf_predict(user_id, item_id, 'big')::float8) FROM big_d" \
    | grep -o 'Time: [0-9.]*' | awk '{print $2}' | sort -n | sed -n 3p)
  echo "info    citus.max_cached_conns_per_worker = $conns: a pushed-down cf_predict over 1M distributed ratings, median of 5: $times ms"
done

echo "$failures check(s) failed"
[[ $failures == 0 ]]
