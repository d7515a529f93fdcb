-- Bad input, every function: each SQL function of the extension is called with a valid baseline
-- call, then with one argument at a time replaced by each hostile value of its type (NULL, empty
-- and 1 MB texts, extreme integers, NaN and infinities, malformed and out-of-range options,
-- wrong relations, huge arrays, bytes that are no model). Each call runs in a subtransaction
-- that is rolled back, and is pinned to its outcome: "ok" (with a NULL or a row count where that
-- says something) or its SQLSTATE. None may be XX000 (a bug), and the backend must survive
-- every one (scripts/regress.sh also checks the server log for crashes after the run).
SET statement_timeout = '120s';
SET client_min_messages = warning;
CREATE TABLE regress.bad_labelled AS
  SELECT w1 || ' ' || w2 AS text, CASE WHEN w1 IN ('great', 'lovely') THEN 'yes' ELSE 'no' END AS label
    FROM unnest(ARRAY['great', 'lovely', 'awful', 'broken']) w1, unnest(ARRAY['tent', 'boots', 'jacket']) w2;

-- The outcome of one call, rolled back whatever it did.
CREATE FUNCTION regress.outcome(query text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE r text; st text;
BEGIN
  BEGIN
    EXECUTE query INTO r;
    RAISE SQLSTATE 'ZZ001' USING MESSAGE = coalesce(r, '');
  EXCEPTION
    WHEN SQLSTATE 'ZZ001' THEN RETURN 'ok' || CASE WHEN SQLERRM = '' THEN '' ELSE ': ' || SQLERRM END;
    WHEN OTHERS THEN GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE; RETURN st;
  END;
END $$;

-- A valid call of every function (arguments as SQL expressions).
CREATE TABLE regress.baseline (fn regprocedure PRIMARY KEY, args text[] NOT NULL);
INSERT INTO regress.baseline VALUES
  ('persona.text_cache_entries()', '{}'),
  ('persona.inference_worker_stats()', '{}'),
  ('persona.model_usable(regrole,regrole[],boolean)', ARRAY['current_user::regrole', $$'{}'$$, 'false']),
  ('persona.cf_model_visible(text)', ARRAY[$$'default'$$]),
  ('persona.profile_model_visible(text)', ARRAY[$$'default'$$]),
  ('persona.distribute()', '{}'),
  ('persona.bert_train_classifier_impl(text,oid,text,jsonb)', ARRAY[$$'bad_clf'$$, $$'regress.bad_labelled'::regclass::oid$$, $$'minilm'$$, $$'{"holdout_fraction": 0}'$$]),
  ('persona.cf_evaluate_impl(oid,text,jsonb,oid)', ARRAY[$$'persona.ratings'::regclass::oid$$, $$'baseline'$$, $$'{}'$$, 'NULL']),
  ('persona.cf_train_impl(oid,text,text,jsonb)', ARRAY[$$'persona.ratings'::regclass::oid$$, $$'baseline'$$, $$'bad_input'$$, $$'{}'$$]),
  ('persona.load_demo(integer,integer,bigint,boolean)', ARRAY['40', '15', '1', 'true']),
  ('bert_classify(text,text)', ARRAY[$$'good'$$, $$'sentiment'$$]),
  ('bert_drop_model(text,boolean)', ARRAY[$$'minilm'$$, 'true']),
  ('bert_embed(text,text)', ARRAY[$$'good'$$, $$'minilm'$$]),
  ('bert_embed(text[],text)', ARRAY[$$ARRAY['good', 'bad']$$, $$'minilm'$$]),
  ('bert_model_grant(text,text)', ARRAY[$$'sentiment'$$, $$'public'$$]),
  ('bert_model_revoke(text,text)', ARRAY[$$'sentiment'$$, $$'public'$$]),
  ('bert_register_defaults(boolean)', ARRAY['false']),
  ('bert_register_model(text,bytea,text,text,jsonb)', ARRAY[$$'bad_reg'$$,
     $$(SELECT onnx FROM persona.bert_model_store WHERE name = 'minilm')$$,
     $$(SELECT tokenizer FROM persona.bert_model_store WHERE name = 'minilm')$$, $$'embedding'$$, $$'{}'$$]),
  ('bert_register_model_file(text,text,text,jsonb)', ARRAY[$$'bad_file'$$, $$'minilm'$$, $$'embedding'$$, $$'{}'$$]),
  ('bert_score(text,text)', ARRAY[$$'good'$$, $$'sentiment'$$]),
  ('bert_score(text[],text)', ARRAY[$$ARRAY['good', 'bad']$$, $$'sentiment'$$]),
  ('bert_finetune(text,regclass,text,jsonb)', ARRAY[$$'bad_ft'$$, $$'regress.bad_labelled'$$, $$'minilm'$$, $$'{"holdout_fraction": 0, "epochs": 1, "frozen_layers": 5}'$$]),
  ('persona.bert_finetune_impl(text,oid,text,jsonb)', ARRAY[$$'bad_ft'$$, $$'regress.bad_labelled'::regclass::oid$$, $$'minilm'$$, $$'{"holdout_fraction": 0, "epochs": 1, "frozen_layers": 5}'$$]),
  ('bert_train_classifier(text,regclass,text,jsonb)', ARRAY[$$'bad_clf'$$, $$'regress.bad_labelled'$$, $$'minilm'$$, $$'{"holdout_fraction": 0}'$$]),
  ('campaign_audience(text,integer,text,bigint[])', ARRAY[$$'spring_outdoor'$$, '10', $$'default'$$, 'NULL']),
  ('campaign_metrics(text,jsonb)', ARRAY[$$'spring_outdoor'$$, $$'{"difference": "relative", "sequential": true, "bayesian": true, "correction": "holm", "capping": {"type": "percentile", "value": 0.99}}'$$]),
  ('profile_train(text,jsonb)', ARRAY[$$'bad_input_portrait'$$, $$'{"as_of": "2026-04-15"}'$$]),
  ('user_profiles(bigint[],text,timestamp with time zone)', ARRAY['ARRAY[1, 2]::bigint[]', $$'default'$$, $$'2026-04-15'$$]),
  ('profile_deploy(text,integer)', ARRAY[$$'default'$$, '1']),
  ('profile_model_grant(text,text)', ARRAY[$$'default'$$, $$'public'$$]),
  ('profile_model_revoke(text,text)', ARRAY[$$'default'$$, $$'public'$$]),
  ('campaign_report(text,jsonb)', ARRAY[$$'spring_outdoor'$$, $$'{"bayesian": false}'$$]),
  ('campaign_power(double precision,double precision,bigint,double precision,double precision,double precision,integer,boolean)',
   ARRAY['0.05', '0.01', 'NULL', 'NULL', '0.05', '0.8', '2', 'false']),
  ('campaign_metrics_daily(text)', ARRAY[$$'spring_outdoor'$$]),
  ('campaign_uplift(text,oid,text,double precision)', ARRAY[$$'spring_outdoor'$$, 'NULL', $$'default'$$, '0.3']),
  ('cf_add_items(text)', ARRAY[$$'default'$$]),
  ('cf_deploy(text,integer)', ARRAY[$$'default'$$, '1']),
  ('cf_evaluate(regclass,text,jsonb,regclass)', ARRAY[$$'persona.ratings'$$, $$'baseline'$$, $$'{}'$$, 'NULL']),
  ('cf_model_grant(text,text)', ARRAY[$$'default'$$, $$'public'$$]),
  ('cf_model_revoke(text,text)', ARRAY[$$'default'$$, $$'public'$$]),
  ('cf_predict(bigint,bigint,text)', ARRAY['1', '1', $$'default'$$]),
  ('cf_recommend(bigint,integer,text,boolean)', ARRAY['1', '5', $$'default'$$, 'true']),
  ('cf_recommend_for(jsonb,integer,text,boolean)', ARRAY[$$'{"1": 5}'$$, '5', $$'default'$$, 'true']),
  ('cf_predict_for(jsonb,bigint,text)', ARRAY[$$'{"1": 5}'$$, '1', $$'default'$$]),
  ('cf_explain(bigint,bigint,text,integer)', ARRAY['1', '1', $$'default'$$, '3']),
  ('cf_explain_for(jsonb,bigint,text,integer)', ARRAY[$$'{"1": 5, "2": 3}'$$, '3', $$'default'$$, '3']),
  ('cf_recommend_explained(bigint,integer,text,boolean)', ARRAY['1', '5', $$'default'$$, 'true']),
  ('cf_similar_items(bigint,integer,text)', ARRAY['1', '5', $$'default'$$]),
  ('cf_similar_users(bigint,integer,text)', ARRAY['1', '5', $$'default'$$]),
  ('cf_train(regclass,text,text,jsonb)', ARRAY[$$'persona.ratings'$$, $$'baseline'$$, $$'bad_input'$$, $$'{}'$$]),
  ('user_profile(bigint,text,timestamp with time zone)', ARRAY['1', $$'default'$$, $$'2026-05-01'$$]);

-- Every function of the extension has a baseline (a new function fails here until it has one).
SELECT p.oid::regprocedure AS function_without_baseline
  FROM pg_proc p JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
  JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'pg_persona'
 WHERE p.prorettype <> 'trigger'::regtype AND p.oid NOT IN (SELECT fn FROM regress.baseline);

-- Hostile values by argument type.
CREATE TABLE regress.hostile (type regtype, label text, value text);
INSERT INTO regress.hostile VALUES
  ('text', 'NULL', 'NULL'), ('text', 'empty', $$''$$), ('text', '1 MB', $$repeat('word ', 200000)$$),
  ('text', 'quotes', $$'a''b"c\ %s'$$), ('text', 'unicode', $$'🎉 ünï'$$),
  ('integer', 'NULL', 'NULL::integer'), ('integer', '0', '0'), ('integer', '-1', '-1'),
  ('integer', 'max', '2147483647'), ('integer', 'min', '(-2147483648)'),
  ('bigint', 'NULL', 'NULL::bigint'), ('bigint', '0', '0::bigint'), ('bigint', 'max', '9223372036854775807'),
  ('bigint', 'min', '(-9223372036854775808)'),
  ('boolean', 'NULL', 'NULL::boolean'),
  ('double precision', 'NULL', 'NULL::float8'), ('double precision', 'NaN', $$'NaN'::float8$$),
  ('double precision', 'Infinity', $$'Infinity'::float8$$), ('double precision', '-1', '-1::float8'),
  ('double precision', '1e308', '1e308::float8'),
  ('jsonb', 'NULL', 'NULL::jsonb'), ('jsonb', 'array', $$'[1]'$$), ('jsonb', 'string', $$'"x"'$$),
  ('jsonb', 'json null', $$'null'$$), ('jsonb', '1e400', $$'{"seed": 1e400}'$$),
  ('jsonb', 'nested 200', $$(repeat('{"a":', 200) || '1' || repeat('}', 200))::jsonb$$),
  ('jsonb', 'unknown key', $$'{"no_such_option": 1}'$$), ('jsonb', 'seed "x"', $$'{"seed": "x"}'$$),
  ('jsonb', 'seed -1', $$'{"seed": -1}'$$), ('jsonb', 'seed 1e30', $$'{"seed": 1e30}'$$),
  ('regclass', 'NULL', 'NULL::regclass'), ('regclass', 'pg_class', $$'pg_class'::regclass$$),
  ('regclass', 'feedback', $$'persona.feedback'::regclass$$), ('regclass', 'a view', $$'persona.cf_models'::regclass$$),
  ('regclass', 'oid 0', '0::oid::regclass'),
  ('oid', 'NULL', 'NULL::oid'), ('oid', '0', '0::oid'), ('oid', 'max', '4294967295::oid'),
  ('oid', 'pg_class', $$'pg_class'::regclass::oid$$),
  ('text[]', 'NULL', 'NULL::text[]'), ('text[]', 'empty', $$'{}'::text[]$$), ('text[]', '{NULL}', $$'{NULL}'::text[]$$),
  ('text[]', '20000 empty', $$array_fill(''::text, ARRAY[20000])$$),
  ('text[]', '1 MB element', $$ARRAY[repeat('word ', 200000)]$$),
  ('bigint[]', 'NULL', 'NULL::bigint[]'), ('bigint[]', 'empty', $$'{}'::bigint[]$$),
  ('bigint[]', '{NULL}', $$'{NULL}'::bigint[]$$), ('bigint[]', 'extremes', $$'{-9223372036854775808,9223372036854775807}'::bigint[]$$),
  ('bytea', 'NULL', 'NULL::bytea'), ('bytea', 'empty', $$''::bytea$$), ('bytea', 'one zero', $$'\x00'::bytea$$),
  ('bytea', '1 MB noise', $$decode(repeat(md5('x'), 32768), 'hex')$$),
  ('timestamp with time zone', 'NULL', 'NULL::timestamptz'), ('timestamp with time zone', 'infinity', $$'infinity'::timestamptz$$),
  ('timestamp with time zone', '-infinity', $$'-infinity'::timestamptz$$),
  ('timestamp with time zone', 'far future', $$'294276-12-31'::timestamptz$$);

-- The calls: the baseline, and each argument replaced by each hostile value of its type.
CREATE TABLE regress.calls AS
WITH fns AS (
  SELECT b.fn, b.args, p.proretset, p.proargtypes::regtype[] AS types, p.proname,
         n.nspname
    FROM regress.baseline b JOIN pg_proc p ON p.oid = b.fn JOIN pg_namespace n ON n.oid = p.pronamespace),
cases AS (
  SELECT fn, proretset, nspname, proname, 0 AS arg, 'baseline' AS label, args FROM fns
  UNION ALL
  SELECT f.fn, f.proretset, f.nspname, f.proname, i, h.label, f.args[:i - 1] || h.value || f.args[i + 1:]
    FROM fns f, generate_subscripts(f.args, 1) i, regress.hostile h
   WHERE h.type = f.types[i - 1])
SELECT fn, arg, label,
       CASE WHEN proretset
            THEN format('SELECT count(*) || '' rows'' FROM %I.%I(%s)', nspname, proname, array_to_string(args, ', '))
            ELSE format('SELECT CASE WHEN %I.%I(%s) IS NULL THEN ''null'' END', nspname, proname, array_to_string(args, ', '))
       END AS query
  FROM cases;
SELECT count(*) AS calls, count(DISTINCT fn) AS functions FROM regress.calls;

CREATE TABLE regress.outcomes AS
  SELECT fn, arg, label, regress.outcome(query) AS outcome FROM regress.calls;
-- How many graphs are cached depends on what ran before.
UPDATE regress.outcomes SET outcome = regexp_replace(outcome, '^ok: \d+ rows$', 'ok: N rows')
 WHERE fn = 'persona.text_cache_entries()'::regprocedure;
RESET client_min_messages;

-- Every outcome, pinned.
SELECT fn, arg, label, outcome FROM regress.outcomes ORDER BY fn::text, arg, label;
-- None is an internal error; the backend is still here.
SELECT count(*) FILTER (WHERE outcome LIKE 'XX000%') AS internal_errors,
       count(*) FILTER (WHERE outcome LIKE 'ok%') AS ok, count(*) AS calls
  FROM regress.outcomes;
SELECT 1 AS still_connected;

-- Corrupt and inconsistent model bytes of a real model: a clean XX001 on use, never a crash.
CREATE TABLE regress.corrupt AS
  SELECT label, bytes FROM (SELECT data FROM persona.cf_model_versions WHERE model = 'default' ORDER BY version LIMIT 1) m,
  LATERAL (VALUES ('truncated', substr(data, 1, length(data) / 2)),
                  ('flipped in the middle', overlay(data placing '\xffffffffffffffff'::bytea from length(data) / 2 for 8)),
                  ('wrong magic', overlay(data placing 'XXXX'::bytea from 1 for 4)),
                  ('future format', overlay(data placing '\x63000000'::bytea from 5 for 4)),
                  ('empty', ''::bytea)) v(label, bytes);
CREATE FUNCTION regress.use_corrupt(bytes bytea) RETURNS text LANGUAGE plpgsql AS $$
DECLARE st text;
BEGIN
  BEGIN
    INSERT INTO persona.cf_model_versions (model, version, algorithm, params, summary, n_users, n_items, n_ratings, data)
      SELECT 'corrupt', 1, algorithm, params, summary, n_users, n_items, n_ratings, bytes
        FROM persona.cf_model_versions WHERE model = 'default' ORDER BY version LIMIT 1;
    INSERT INTO persona.cf_active (model, version, owner) VALUES ('corrupt', 1, current_user::regrole);
    PERFORM cf_predict(1, 1, 'corrupt');
    RAISE SQLSTATE 'ZZ001';
  EXCEPTION
    WHEN SQLSTATE 'ZZ001' THEN RETURN 'ok';
    WHEN OTHERS THEN GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE; RETURN st;
  END;
END $$;
SELECT label, regress.use_corrupt(bytes) AS outcome FROM regress.corrupt ORDER BY label;

DROP TABLE regress.bad_labelled, regress.baseline, regress.hostile, regress.calls, regress.outcomes, regress.corrupt;
DROP FUNCTION regress.outcome(text), regress.use_corrupt(bytea);
RESET statement_timeout;
