-- pg_persona: SQL-language wrappers, privileges and comments (runs last in the extension script).

-- cf_train / cf_evaluate take a regclass, so a relation name is resolved (and its existence and
-- the caller's right to see it checked) by PostgreSQL itself, then handed over by OID.
CREATE FUNCTION cf_train(
    source    regclass DEFAULT 'persona.ratings',
    algorithm text     DEFAULT 'svdpp',
    model     text     DEFAULT 'default',
    options   jsonb    DEFAULT '{}'
) RETURNS jsonb
LANGUAGE sql VOLATILE PARALLEL UNSAFE
AS $$ SELECT persona.cf_train_impl($1::pg_catalog.oid, $2, $3, $4) $$;

CREATE FUNCTION cf_evaluate(
    source    regclass DEFAULT 'persona.ratings',
    algorithm text     DEFAULT 'svdpp',
    options   jsonb    DEFAULT '{}',
    test      regclass DEFAULT NULL
) RETURNS jsonb
LANGUAGE sql VOLATILE PARALLEL UNSAFE
AS $$ SELECT CASE WHEN $1 IS NULL OR $2 IS NULL OR $3 IS NULL THEN NULL
                  ELSE persona.cf_evaluate_impl($1::pg_catalog.oid, $2, $3, $4::pg_catalog.oid) END $$;

-- cf_predict runs once per row over whole tables: a plain V1 C function (src/cf.rs).
CREATE FUNCTION cf_predict(user_id bigint, item_id bigint, model text DEFAULT 'default') RETURNS real
AS 'MODULE_PATHNAME', 'cf_predict_v1'
LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION cf_predict(bigint, bigint, text) IS
  'Predicted rating of an item by a user, clipped to the training scale; unknown users or items get the global mean plus the known biases';

COMMENT ON FUNCTION cf_train(regclass, text, text, jsonb) IS
  'Train a collaborative-filtering model on a relation (user_id, item_id, rating) and make it the active version of a model name';
COMMENT ON FUNCTION cf_evaluate(regclass, text, jsonb, regclass) IS
  'Train on part of a relation and report RMSE, MAE, precision/recall/NDCG/MAP@k and coverage on the held-out part; stores nothing';

-- bert_train_classifier takes a regclass like cf_train, resolved and permission-checked by
-- PostgreSQL, then handed over by OID.
CREATE FUNCTION bert_train_classifier(
    name    text,
    source  regclass,
    encoder text  DEFAULT 'minilm',
    options jsonb DEFAULT '{}'
) RETURNS jsonb
LANGUAGE sql VOLATILE PARALLEL UNSAFE
AS $$ SELECT persona.bert_train_classifier_impl($1, $2::pg_catalog.oid, $3, $4) $$;

COMMENT ON FUNCTION bert_train_classifier(text, regclass, text, jsonb) IS
  'Train a softmax classification head on a text encoder''s embeddings of a relation''s (text, label) rows, report held-out accuracy, macro-F1 and ROC AUC, and register it as a text model for bert_score and bert_classify';
-- bert_finetune takes a regclass the same way.
CREATE FUNCTION bert_finetune(
    name    text,
    source  regclass,
    encoder text  DEFAULT 'minilm',
    options jsonb DEFAULT '{}'
) RETURNS jsonb
LANGUAGE sql VOLATILE PARALLEL UNSAFE
AS $$ SELECT persona.bert_finetune_impl($1, $2::pg_catalog.oid, $3, $4) $$;

COMMENT ON FUNCTION bert_finetune(text, regclass, text, jsonb) IS
  'Fine-tune a text encoder and a classification head on a relation''s (text, label) rows (AdamW, warm-up, weight decay), report accuracy per epoch, and register the result as an ONNX classifier for bert_score and bert_classify';
COMMENT ON FUNCTION bert_score(text, text) IS
  'Probability of the positive label of a text under a classification model (default: sentiment)';
COMMENT ON FUNCTION bert_score(text[], text) IS
  'Probabilities of the positive label of many texts in one batched call';
COMMENT ON FUNCTION bert_classify(text, text) IS
  'Most probable label of a text, its probability and every label''s probability, as jsonb';
COMMENT ON FUNCTION bert_embed(text, text) IS
  'L2-normalised sentence embedding of a text (default model: minilm, 384 dimensions)';
COMMENT ON FUNCTION bert_embed(text[], text) IS
  'Sentence embeddings of many texts in one batched call, one row per element';
COMMENT ON FUNCTION bert_register_model(text, bytea, text, text, jsonb) IS
  'Register an ONNX text model (embedding or classification) from its bytes and tokenizer.json';
COMMENT ON FUNCTION bert_register_model_file(text, text, text, jsonb) IS
  'Register an ONNX text model from a directory under persona.model_dir (superusers and pg_read_server_files only)';
COMMENT ON FUNCTION bert_drop_model(text, boolean) IS
  'Drop a text model (with cascade, also the classifiers trained on it)';
COMMENT ON FUNCTION cf_model_grant(text, text) IS
  'Let a role (or PUBLIC) use a collaborative-filtering model: predict, recommend, read its rows; owner only';
COMMENT ON FUNCTION cf_model_revoke(text, text) IS
  'Take back the use of a collaborative-filtering model from a role (or PUBLIC); owner only';
COMMENT ON FUNCTION bert_model_grant(text, text) IS
  'Let a role (or PUBLIC) use a text model: score, classify, embed, train on it, read its row; owner only';
COMMENT ON FUNCTION bert_model_revoke(text, text) IS
  'Take back the use of a text model from a role (or PUBLIC); owner only';
COMMENT ON FUNCTION bert_register_defaults(boolean) IS
  'Register the default text models minilm and sentiment from persona.model_dir';

-- The default text models (minilm, sentiment). Never fails: without the model files or ONNX
-- Runtime, a WARNING says how to register them later (CREATE EXTENSION hides NOTICEs).
DO $$
BEGIN
  PERFORM bert_register_defaults();
EXCEPTION WHEN OTHERS THEN
  RAISE WARNING 'pg_persona: the default text models were not registered: %', SQLERRM
    USING HINT = 'Fix the cause, then run SELECT bert_register_defaults();';
END $$;

-- Every role sees the model tables, filtered by row-level security to the models it may use
-- (sql/tables.sql). Creating models needs INSERT on persona.cf_model_versions (cf models) or
-- persona.bert_model_store (text models), which only the extension owner has until a DBA grants
-- it; the rows are then written by pg_persona's functions (direct writes are refused). User data
-- tables stay private.
GRANT USAGE ON SCHEMA persona TO PUBLIC;
GRANT SELECT ON persona.cf_model_versions, persona.cf_active, persona.cf_models TO PUBLIC;
GRANT SELECT ON persona.bert_model_store, persona.bert_models TO PUBLIC;
GRANT SELECT ON persona.profile_model_versions, persona.profile_active, persona.profile_models TO PUBLIC;

-- What holds text graphs in memory and on disk: for DBAs and monitoring roles.
CREATE VIEW persona.text_cache WITH (security_invoker = true) AS
SELECT e.holder,
       e.pid,
       (SELECT pg_catalog.array_agg(m.name ORDER BY m.name)
          FROM persona.bert_model_store m
          LEFT JOIN persona.bert_model_store g ON g.name = m.encoder
         WHERE coalesce(g.onnx_sha256, m.onnx_sha256) = pg_catalog.decode(e.sha256, 'hex')) AS models,
       e.sha256,
       e.task,
       e.bytes,
       e.last_used
  FROM persona.text_cache_entries() e;
COMMENT ON VIEW persona.text_cache IS
  'Text graphs held by the inference worker (worker), by backends running their own sessions (backend), and the graph file cache (file); bytes: resident memory a session added, or the file size';
REVOKE ALL ON FUNCTION persona.text_cache_entries() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION persona.text_cache_entries() TO pg_monitor;
GRANT SELECT ON persona.text_cache TO pg_monitor;
CREATE VIEW persona.inference_worker AS
SELECT s.pid, s.starts, s.requests, s.batches, s.runs, s.texts, s.busy_seconds,
       CASE WHEN s.runs > 0 THEN round(s.batches::numeric / s.runs, 2) END AS batches_per_run
  FROM persona.inference_worker_stats() s;
COMMENT ON VIEW persona.inference_worker IS
  'The shared inference worker since the server started: starts, requests answered, callers'' batches run, merged runs, texts, seconds running; batches_per_run shows cross-connection batching';
REVOKE ALL ON FUNCTION persona.inference_worker_stats() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION persona.inference_worker_stats() TO pg_monitor;
GRANT SELECT ON persona.inference_worker TO pg_monitor;

COMMENT ON FUNCTION campaign_metrics(text, jsonb) IS
  'Evaluate a campaign: per-arm metrics, each arm against control with intervals and tests, SRM check and satisfaction; options add relative effects, sequential, Bayesian and CUPED results, capping, corrections and segments';
COMMENT ON FUNCTION campaign_power(double precision, double precision, bigint, double precision, double precision, double precision, integer, boolean) IS
  'Users per arm to detect an effect, or the effect detectable with a number of users (two-sided z-test, Bonferroni over the comparisons with control)';
COMMENT ON FUNCTION campaign_report(text, jsonb) IS
  'The campaign report as a self-contained HTML page (inline SVG, no script): verdicts, arms, forest plot of lifts, cumulative conversion with its sequential band, Qini curve of a score relation';
COMMENT ON FUNCTION profile_train(text, jsonb) IS
  'Fit a portrait model (BG/NBD and Gamma-Gamma lifetime models, RFM quintiles) on an orders relation and make it the active version of a name';

-- Scale-out on Citus: persona.distribute() makes pg_persona's model tables reference tables, so
-- that a model trained or registered on the coordinator is on every node, where functions pushed
-- down with a query over a distributed table (cf_predict, bert_score, user_profile) read it.
-- Idempotent. Role OIDs differ between nodes, so the owners and grantees that Citus copies with
-- the rows are written again by name on every node.
CREATE FUNCTION persona.distribute()
RETURNS TABLE (relation regclass, action text)
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t pg_catalog.regclass;
    key text;
    method text;
    o record;
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_extension e WHERE e.extname OPERATOR(pg_catalog.=) 'citus') THEN
        RAISE EXCEPTION 'persona.distribute() needs Citus, which is not installed in this database'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'On a single server there is nothing to distribute. On a Citus coordinator, CREATE EXTENSION citus first (see the README, "Scaling out").';
    END IF;
    EXECUTE 'SELECT pg_catalog.citus_is_coordinator()' INTO STRICT method;
    IF NOT method::boolean THEN
        RAISE EXCEPTION 'persona.distribute() must run on the Citus coordinator'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Connect to the coordinator and run SELECT persona.distribute(); there.';
    END IF;
    FOREACH t IN ARRAY ARRAY['persona.cf_model_versions', 'persona.cf_active', 'persona.bert_model_store',
                             'persona.profile_model_versions', 'persona.profile_active']::pg_catalog.regclass[] LOOP
        IF NOT pg_catalog.pg_has_role((SELECT c.relowner FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) t), 'USAGE') THEN
            RAISE EXCEPTION 'permission denied to distribute %', t
                USING ERRCODE = 'insufficient_privilege',
                      HINT = 'Run persona.distribute() as the owner of the extension or as a superuser.';
        END IF;
        EXECUTE 'SELECT partmethod::text FROM pg_catalog.pg_dist_partition WHERE logicalrelid OPERATOR(pg_catalog.=) $1'
            INTO method USING t;
        relation := t;
        IF method OPERATOR(pg_catalog.=) 'n' THEN
            action := 'already a reference table';
        ELSIF method IS NOT NULL THEN
            RAISE EXCEPTION '% is a distributed table, not a reference table', t
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      HINT = pg_catalog.format('Every node needs all models: SELECT undistribute_table(%L); then run persona.distribute() again.', t::text);
        ELSE
            EXECUTE 'SELECT pg_catalog.create_reference_table($1)' USING t;
            action := 'made a reference table';
            -- Owners and grantees by name, evaluated on every node.
            key := CASE WHEN t OPERATOR(pg_catalog.=) 'persona.bert_model_store'::pg_catalog.regclass THEN 'name' ELSE 'model' END;
            IF key OPERATOR(pg_catalog.=) 'name' OR t::text LIKE '%\_active' THEN
                FOR o IN EXECUTE pg_catalog.format(
                    'SELECT %I AS k, owner::text AS owner, usable_by::text[] AS usable_by FROM %s', key, t) LOOP
                    EXECUTE pg_catalog.format(
                        'UPDATE %s SET owner = $2::pg_catalog.regrole, usable_by = $3::pg_catalog.regrole[] WHERE %I OPERATOR(pg_catalog.=) $1',
                        t, key)
                        USING o.k, o.owner, o.usable_by;
                END LOOP;
            END IF;
        END IF;
        RETURN NEXT;
    END LOOP;
END
$$;
COMMENT ON FUNCTION persona.distribute() IS
  'On a Citus coordinator: make the model tables reference tables, so that every node has every model (idempotent)';
REVOKE ALL ON FUNCTION persona.distribute() FROM PUBLIC;
