-- Scale-out on Citus, without Citus (which CI cannot install; tests/citus/ runs the real
-- cluster): the model tables hold nothing that stops Citus from replicating them, versions are
-- assigned by the functions, an active version that went missing is an error, and a function
-- running inside a Citus task (simulated by its application_name) reads models but refuses a
-- worker's local data tables.
SET extra_float_digits = 0;

-- persona.distribute() needs Citus.
SELECT regress.error_of('SELECT persona.distribute()');

-- No foreign key, no trigger and no volatile default on the model tables: Citus refuses the
-- first two on reference tables, and evaluates a default only where the row is written.
SELECT c.conrelid::regclass AS relation, c.conname
  FROM pg_constraint c
 WHERE c.contype = 'f' AND c.conrelid::regclass::text ~ '^persona\.(cf|bert|profile)_';
SELECT t.tgrelid::regclass AS relation, t.tgname
  FROM pg_trigger t
 WHERE NOT t.tgisinternal AND t.tgrelid::regclass::text ~ '^persona\.(cf|bert|profile)_';
SELECT a.attrelid::regclass AS relation, a.attname, pg_get_expr(d.adbin, d.adrelid) AS "default"
  FROM pg_attrdef d JOIN pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum
 WHERE d.adrelid::regclass::text ~ '^persona\.(cf|bert|profile)_'
   AND pg_get_expr(d.adbin, d.adrelid) ~ 'nextval'
 ORDER BY 1, 2;
-- The row-level security policies hold no subquery (Citus refuses them): functions do it.
SELECT tablename, qual FROM pg_policies WHERE schemaname = 'persona' ORDER BY tablename;

-- Versions are assigned by the functions: 1, 2, ... per cf model name.
SELECT (cf_train(algorithm => 'baseline', model => 'citus_v') ->> 'version')::int AS first,
       (cf_train(algorithm => 'baseline', model => 'citus_v') ->> 'version')::int AS second;
-- A text model's version comes from the sequence: distinct on every row.
SELECT count(DISTINCT version) = count(*) AS versions_distinct FROM persona.bert_model_store;

-- An active version that went missing (no foreign key keeps it now) is an error that says so.
BEGIN;
DELETE FROM persona.cf_model_versions WHERE model = 'citus_v' AND version = 2;
SELECT regress.error_of('SELECT cf_predict(1, 1, ''citus_v'')');
ROLLBACK;
SELECT cf_predict(1, 1, 'citus_v') IS NOT NULL AS predicts_again;

-- Inside a Citus task (as Citus names its connections to the workers). Models are read as usual
-- (here they are local tables; on a cluster, reference tables read with nested execution
-- allowed around the read only).
SELECT cf_predict(1, 1, 'citus_v') AS outside_a_task \gset
SET application_name = 'citus_internal gpid=10000000042';
SELECT cf_predict(1, 1, 'citus_v')::text = :'outside_a_task' AS same_prediction_in_a_task;
-- Nested execution was allowed around the read only.
SELECT coalesce(current_setting('citus.allow_nested_distributed_execution', true), '') <> 'on' AS nested_off_after_the_read;
-- A model missing on a worker names the node and points at persona.distribute().
SELECT regexp_replace(regress.error_of('SELECT cf_predict(1, 1, ''no_such_model'')'), 'port \d+', 'port N');
SELECT regexp_replace(regress.error_of('SELECT bert_score(''fine'', ''no_such_model'')'), 'port \d+', 'port N');
-- Data tables that are local tables on a worker are not the cluster's data: an error, never
-- an empty portrait or a "campaign does not exist".
SELECT regexp_replace(regress.error_of('SELECT user_profile(1)'), 'port \d+', 'port N');
SELECT regexp_replace(regress.error_of('SELECT count(*) FROM user_profiles(ARRAY[1, 2])'), 'port \d+', 'port N');
SELECT regexp_replace(regress.error_of($$SELECT campaign_metrics('spring_outdoor')$$), 'port \d+', 'port N');
RESET application_name;
SELECT user_profile(1) ->> 'user_id' AS profile_outside_a_task;

DELETE FROM persona.cf_active WHERE model = 'citus_v';
DELETE FROM persona.cf_model_versions WHERE model = 'citus_v';
