-- Upgrading: a database created with the previous release (0.1.0, from its frozen install script)
-- and updated with ALTER EXTENSION UPDATE must have exactly the objects of a fresh install of the
-- current version, and keep its data and models working. Two scratch databases, driven through
-- dblink: "fresh" (CREATE EXTENSION) and "updated" (VERSION '0.1.0', some data, then UPDATE).
SET client_min_messages = warning;
DROP DATABASE IF EXISTS persona_upgrade_fresh;
DROP DATABASE IF EXISTS persona_upgrade_updated;
RESET client_min_messages;
CREATE DATABASE persona_upgrade_fresh;
CREATE DATABASE persona_upgrade_updated;
CREATE EXTENSION dblink;
CREATE FUNCTION pg_temp.run(db text, sql text) RETURNS text LANGUAGE sql
  AS $$ SELECT dblink_exec('dbname=' || db, sql) $$;

SELECT pg_temp.run('persona_upgrade_fresh', 'CREATE EXTENSION pg_persona');
SELECT pg_temp.run('persona_upgrade_updated', $$CREATE EXTENSION pg_persona VERSION '0.1.0'$$);
SELECT v FROM dblink('dbname=persona_upgrade_updated',
  $$SELECT extversion FROM pg_extension WHERE extname = 'pg_persona'$$) AS t(v text);

-- What users had under 0.1.0: ratings, trained models, a campaign, a text model on minilm. This
-- library changes no model in an older catalog (55000 until ALTER EXTENSION UPDATE), so the
-- models are trained in the fresh database and their rows copied into the 0.1.0 catalog, as
-- 0.1.0 stored them. (The models are written in this build's format; reading models written
-- by 0.1.0's library, format 1, is tested in persona-core.)
CREATE FUNCTION pg_temp.error_of(query text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE st text; msg text;
BEGIN
  EXECUTE query;
  RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
  GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
  RETURN st || ': ' || msg;
END $$;
SELECT pg_temp.error_of($$SELECT pg_temp.run('persona_upgrade_updated', 'SELECT cf_train()')$$);
SELECT pg_temp.run('persona_upgrade_fresh', $run$DO $d$ BEGIN
  PERFORM persona.load_demo(users => 60, items => 30, seed => 3);
  PERFORM cf_train(algorithm => 'svd', model => 'kept', options => '{"seed": 1}');
  PERFORM cf_train(algorithm => 'knn_item', model => 'kept_knn', options => '{"test_fraction": 0}');
  CREATE TABLE labelled AS
    SELECT w1 || ' ' || w2 AS text, CASE WHEN w1 IN ('great', 'lovely') THEN 'yes' ELSE 'no' END AS label
      FROM unnest(ARRAY['great', 'lovely', 'awful', 'broken']) w1, unnest(ARRAY['tent', 'boots', 'jacket']) w2;
  PERFORM bert_train_classifier('mine', 'labelled', 'minilm', '{"holdout_fraction": 0}');
END $d$$run$);
SELECT pg_temp.run('persona_upgrade_updated', 'CREATE EXTENSION dblink');
SELECT pg_temp.run('persona_upgrade_updated', $run$DO $d$ BEGIN
  PERFORM persona.load_demo(users => 60, items => 30, seed => 3);
  INSERT INTO persona.cf_model_versions (model, version, algorithm, params, summary, n_users, n_items, n_ratings, data)
    SELECT * FROM dblink('dbname=persona_upgrade_fresh',
      'SELECT model, version, algorithm, params, summary, n_users, n_items, n_ratings, data FROM persona.cf_model_versions')
      AS t(model text, version int, algorithm text, params jsonb, summary jsonb, n_users int, n_items int, n_ratings bigint, data bytea);
  INSERT INTO persona.cf_active VALUES ('kept', 1), ('kept_knn', 1);
  INSERT INTO persona.bert_model_store (name, task, encoder, spec, dim, labels, positive_label, onnx, tokenizer, source, builtin)
    SELECT * FROM dblink('dbname=persona_upgrade_fresh',
      'SELECT name, task, encoder, spec, dim, labels, positive_label, onnx, tokenizer, source, builtin FROM persona.bert_model_store')
      AS t(name text, task text, encoder text, spec jsonb, dim int, labels text[], positive_label text, onnx bytea,
           tokenizer text, source jsonb, builtin boolean);
END $d$$run$);
-- The new library must serve the old catalog until ALTER EXTENSION ... UPDATE runs (it reads
-- columns added since through to_jsonb): these calls run on the 0.1.0 catalog.
CREATE TEMP TABLE before AS
SELECT * FROM dblink('dbname=persona_upgrade_updated', $$
  SELECT (SELECT count(*) FROM persona.ratings), cf_predict(1, 1, 'kept'), cf_predict(2, 3, 'kept_knn'),
         (campaign_metrics('spring_outdoor') -> 'arms' -> 0 ->> 'users_exposed')::int, bert_score('great boots', 'mine'),
         (SELECT version FROM persona.bert_model_store WHERE name = 'mine')$$)
  AS t(ratings bigint, predicted real, predicted_knn real, arm_users int, score real, text_version bigint);

SELECT pg_temp.run('persona_upgrade_updated', 'ALTER EXTENSION pg_persona UPDATE');
SELECT v FROM dblink('dbname=persona_upgrade_updated',
  $$SELECT extversion FROM pg_extension WHERE extname = 'pg_persona'$$) AS t(v text);

-- Every object of the extension, with its definition: functions (signature, body or C symbol,
-- volatility, parallel safety, strictness, comment, grants), relations (kind, columns in order
-- with types, defaults and storage, constraints, indexes, triggers, view text, grants), and the
-- tables pg_dump dumps.
CREATE TEMP VIEW catalog_query AS SELECT $q$
WITH ext AS (SELECT oid, extconfig, extcondition FROM pg_catalog.pg_extension WHERE extname = 'pg_persona'),
members AS (
  SELECT d.classid, d.objid FROM pg_catalog.pg_depend d, ext
   WHERE d.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass AND d.refobjid = ext.oid AND d.deptype = 'e'),
rels AS (SELECT objid AS oid FROM members WHERE classid = 'pg_catalog.pg_class'::pg_catalog.regclass)
SELECT pg_catalog.pg_describe_object(classid, objid, 0),
       CASE classid
         WHEN 'pg_catalog.pg_proc'::pg_catalog.regclass THEN
           pg_catalog.pg_get_functiondef(objid) || ' -- ' || coalesce(pg_catalog.obj_description(objid, 'pg_proc'), '')
           || ' ' || coalesce((SELECT proacl::text FROM pg_catalog.pg_proc WHERE oid = objid), '')
         WHEN 'pg_catalog.pg_class'::pg_catalog.regclass THEN
           (SELECT relkind::text || ' ' || coalesce(relacl::text, '') || CASE WHEN relrowsecurity THEN ' rls' ELSE '' END
              FROM pg_catalog.pg_class WHERE oid = objid)
           || coalesce(' ' || pg_catalog.pg_get_viewdef(objid), '')
           || coalesce(' -- ' || pg_catalog.obj_description(objid, 'pg_class'), '')
         ELSE '' END
  FROM members
UNION ALL
SELECT 'column ' || a.attrelid::pg_catalog.regclass || ' #' || a.attnum || ' ' || a.attname,
       pg_catalog.format_type(a.atttypid, a.atttypmod) || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END
       || coalesce(' DEFAULT ' || pg_catalog.pg_get_expr(ad.adbin, ad.adrelid), '') || ' storage ' || a.attstorage::text
  FROM pg_catalog.pg_attribute a
  LEFT JOIN pg_catalog.pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
 WHERE a.attrelid IN (SELECT oid FROM rels) AND a.attnum > 0 AND NOT a.attisdropped
UNION ALL
SELECT 'constraint ' || c.conrelid::pg_catalog.regclass || ' ' || c.conname, pg_catalog.pg_get_constraintdef(c.oid)
  FROM pg_catalog.pg_constraint c WHERE c.conrelid IN (SELECT oid FROM rels)
UNION ALL
SELECT 'index ' || i.indexrelid::pg_catalog.regclass, pg_catalog.pg_get_indexdef(i.indexrelid)
  FROM pg_catalog.pg_index i WHERE i.indrelid IN (SELECT oid FROM rels)
UNION ALL
SELECT 'trigger ' || t.tgrelid::pg_catalog.regclass || ' ' || t.tgname, pg_catalog.pg_get_triggerdef(t.oid)
  FROM pg_catalog.pg_trigger t WHERE t.tgrelid IN (SELECT oid FROM rels) AND NOT t.tgisinternal
UNION ALL
SELECT 'policy ' || p.polrelid::pg_catalog.regclass || ' ' || p.polname,
       p.polcmd::text || ' ' || p.polpermissive::text || ' ' || p.polroles::text || ' '
       || coalesce(pg_catalog.pg_get_expr(p.polqual, p.polrelid), '') || ' / ' || coalesce(pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid), '')
  FROM pg_catalog.pg_policy p WHERE p.polrelid IN (SELECT oid FROM rels)
UNION ALL
SELECT 'dumped by pg_dump', ext.extconfig::pg_catalog.regclass[]::text || ' ' || coalesce(ext.extcondition::text, '')
  FROM ext
$q$ AS q;
CREATE TEMP TABLE fresh AS
  SELECT * FROM dblink('dbname=persona_upgrade_fresh', (SELECT q FROM catalog_query)) AS t(object text, definition text);
CREATE TEMP TABLE updated AS
  SELECT * FROM dblink('dbname=persona_upgrade_updated', (SELECT q FROM catalog_query)) AS t(object text, definition text);
SELECT count(*) > 100 AS many_objects, count(*) FILTER (WHERE object LIKE 'function %') > 25 AS many_functions,
       count(*) FILTER (WHERE object LIKE 'trigger %') AS triggers,
       count(*) FILTER (WHERE object LIKE 'policy %') AS policies
  FROM fresh;
-- Differences either way (none expected).
(SELECT 'only after update' AS side, * FROM updated EXCEPT SELECT 'only after update', * FROM fresh)
UNION ALL
(SELECT 'only in a fresh install', * FROM fresh EXCEPT SELECT 'only in a fresh install', * FROM updated)
ORDER BY 2, 1;

-- The data and models made under 0.1.0 still answer the same.
SELECT b.ratings = a.ratings AS ratings_kept, b.predicted = a.predicted AS model_predicts_the_same,
       b.predicted_knn = a.predicted_knn AS knn_predicts_the_same,
       b.arm_users = a.arm_users AS campaign_same, abs(b.score - a.score) < 1e-6 AS text_model_scores_the_same
  FROM before b,
       dblink('dbname=persona_upgrade_updated', $$
         SELECT (SELECT count(*) FROM persona.ratings), cf_predict(1, 1, 'kept'), cf_predict(2, 3, 'kept_knn'),
                (campaign_metrics('spring_outdoor') -> 'arms' -> 0 ->> 'users_exposed')::int, bert_score('great boots', 'mine')$$)
       AS a(ratings bigint, predicted real, predicted_knn real, arm_users int, score real);
-- New in 0.2.0: a direct UPDATE of a stored text model takes a new version (caches notice it).
SELECT v > (SELECT text_version FROM before) AS new_version
  FROM dblink('dbname=persona_upgrade_updated', $$
    UPDATE persona.bert_model_store SET source = source WHERE name = 'mine' RETURNING version$$) AS t(v bigint);

-- New in 0.3.0: models have owners (here the role that trained them); the built-in text models
-- stay usable by every role, the others become private to their owner.
SELECT * FROM dblink('dbname=persona_upgrade_updated', $$
  SELECT 'cf', model, owner = quote_ident(current_user), usable_by FROM persona.cf_models
  UNION ALL
  SELECT 'text', name, owner = quote_ident(current_user), usable_by FROM persona.bert_models ORDER BY 1, 2$$)
  AS t(kind text, name text, owned_by_trainer boolean, usable_by text[]);

DROP EXTENSION dblink;
DROP DATABASE persona_upgrade_fresh;
DROP DATABASE persona_upgrade_updated;
