-- pg_persona 0.2.0 -> 0.3.0
--
-- Model privileges. Every model has an owner; it is usable (and its rows readable) only by its
-- owner, the roles it is granted to (cf_model_grant / bert_model_grant) and superusers, enforced
-- by row-level security on the model tables. Only the tables' owner writes them, through
-- pg_persona's functions, which refuse to replace another role's model and record the real
-- caller in created_by. Existing models: the owner is the role that created the active version
-- (the extension owner when that role no longer exists); the built-in text models stay usable by
-- every role; every other model becomes private to its owner (a NOTICE names each one and how
-- to share it again).

\echo Use "ALTER EXTENSION pg_persona UPDATE TO '0.3.0'" to load this file. \quit

ALTER TABLE persona.cf_active
    ADD COLUMN owner regrole,
    ADD COLUMN usable_by regrole[] NOT NULL DEFAULT '{}',
    ADD COLUMN usable_by_all boolean NOT NULL DEFAULT false;
UPDATE persona.cf_active a
   SET owner = coalesce(
         (SELECT r.oid FROM persona.cf_model_versions v JOIN pg_catalog.pg_roles r ON r.rolname = v.created_by
           WHERE v.model = a.model AND v.version = a.version),
         (SELECT c.relowner FROM pg_catalog.pg_class c WHERE c.oid = 'persona.cf_active'::pg_catalog.regclass));
ALTER TABLE persona.cf_active ALTER COLUMN owner SET NOT NULL;

ALTER TABLE persona.bert_model_store
    ADD COLUMN owner regrole,
    ADD COLUMN usable_by regrole[] NOT NULL DEFAULT '{}',
    ADD COLUMN usable_by_all boolean NOT NULL DEFAULT false;
UPDATE persona.bert_model_store m
   SET owner = coalesce(
         (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname = m.created_by),
         (SELECT c.relowner FROM pg_catalog.pg_class c WHERE c.oid = 'persona.bert_model_store'::pg_catalog.regclass)),
       usable_by_all = builtin;
ALTER TABLE persona.bert_model_store ALTER COLUMN owner SET NOT NULL;
-- The graph's identity in the inference worker and its file cache (computed once per write, so
-- a backend finds the shared session without reading the graph).
ALTER TABLE persona.bert_model_store
    ADD COLUMN onnx_sha256 bytea GENERATED ALWAYS AS (pg_catalog.sha256(onnx)) STORED;

DO $$
DECLARE
    m record;
BEGIN
    FOR m IN SELECT 'model' AS kind, model AS name, owner, 'cf_model_grant' AS fn FROM persona.cf_active
             UNION ALL
             SELECT 'text model', name, owner, 'bert_model_grant' FROM persona.bert_model_store WHERE NOT builtin
             ORDER BY 1, 2
    LOOP
        RAISE NOTICE 'pg_persona 0.3.0: % "%" is now usable only by its owner % (and superusers)', m.kind, m.name, m.owner
            USING HINT = format('To let every role use it as before: SELECT %s(%L, ''PUBLIC'');', m.fn, m.name);
    END LOOP;
END
$$;

-- Who may use a row: its owner and the roles with the owner's privileges, its grantees, every
-- role when usable_by_all, and superusers (who bypass row-level security).
-- The policies call functions rather than hold subqueries: Citus refuses subqueries in the
-- policies of distributed and reference tables. model_usable reads only catalogs, so on every
-- node it decides with that node's roles.
CREATE FUNCTION persona.model_usable(owner regrole, usable_by regrole[], usable_by_all boolean)
RETURNS boolean LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp AS $$
SELECT $3
    OR pg_catalog.pg_has_role($1::pg_catalog.oid, 'USAGE')
    OR EXISTS (SELECT FROM pg_catalog.unnest($2) AS g (role)
                WHERE pg_catalog.pg_has_role(g.role::pg_catalog.oid, 'USAGE'))
$$;
-- A version is visible with its model. Inside a Citus task (a query on a shard) the model table
-- is read with nested execution allowed: it is a reference table, the same on every node.
CREATE FUNCTION persona.cf_model_visible(model text) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
SET citus.allow_nested_distributed_execution = on AS $$
SELECT EXISTS (SELECT FROM persona.cf_active a WHERE a.model OPERATOR(pg_catalog.=) $1)
$$;
ALTER TABLE persona.cf_active ENABLE ROW LEVEL SECURITY;
CREATE POLICY usable ON persona.cf_active FOR SELECT USING (
    persona.model_usable(owner, usable_by, usable_by_all));
ALTER TABLE persona.cf_model_versions ENABLE ROW LEVEL SECURITY;
CREATE POLICY usable ON persona.cf_model_versions FOR SELECT USING (
    persona.cf_model_visible(model));
ALTER TABLE persona.bert_model_store ENABLE ROW LEVEL SECURITY;
CREATE POLICY usable ON persona.bert_model_store FOR SELECT USING (
    persona.model_usable(owner, usable_by, usable_by_all));

-- 0.2.0 documented granting INSERT, UPDATE (and DELETE) on the model tables to roles that train.
-- INSERT on persona.cf_model_versions and persona.bert_model_store keeps its meaning (the right
-- to create models); every other write privilege a role other than the owner holds on the model
-- tables is revoked: row-level security refuses direct writes, except TRUNCATE, which it does
-- not cover.
DO $$
DECLARE
    g record;
BEGIN
    FOR g IN
        SELECT c.oid::pg_catalog.regclass AS rel, a.privilege_type AS priv,
               CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(r.rolname) END AS grantee
          FROM pg_catalog.pg_class c
         CROSS JOIN LATERAL pg_catalog.aclexplode(c.relacl) a
          LEFT JOIN pg_catalog.pg_roles r ON r.oid = a.grantee
         WHERE c.oid IN ('persona.cf_model_versions'::pg_catalog.regclass, 'persona.cf_active'::pg_catalog.regclass,
                         'persona.bert_model_store'::pg_catalog.regclass)
           AND a.grantee <> c.relowner
           AND a.privilege_type <> 'SELECT'
           AND NOT (a.privilege_type = 'INSERT' AND c.oid <> 'persona.cf_active'::pg_catalog.regclass)
    LOOP
        EXECUTE pg_catalog.format('REVOKE %s ON %s FROM %s', g.priv, g.rel, g.grantee);
    END LOOP;
END
$$;

-- The views run with the caller's privileges, so they show only the models the caller may use;
-- they gain each model's owner and grantees.
CREATE OR REPLACE VIEW persona.cf_models WITH (security_invoker = true) AS
SELECT v.model,
       a.version AS active_version,
       v.algorithm,
       v.n_users,
       v.n_items,
       v.n_ratings,
       v.params,
       v.summary -> 'holdout' AS holdout_metrics,
       pg_catalog.octet_length(v.data) AS bytes,
       v.created_at,
       v.created_by,
       (SELECT pg_catalog.count(*) FROM persona.cf_model_versions w WHERE w.model = v.model) AS versions,
       a.owner::text AS owner,  -- as text: a role OID means nothing on another Citus node
       CASE WHEN a.usable_by_all THEN '{PUBLIC}'::text[] ELSE '{}' END || a.usable_by::text[] AS usable_by
  FROM persona.cf_active a
  JOIN persona.cf_model_versions v ON v.model = a.model AND v.version = a.version;

CREATE OR REPLACE VIEW persona.bert_models WITH (security_invoker = true) AS
SELECT m.name,
       m.task,
       m.encoder,
       m.dim,
       m.labels,
       m.positive_label,
       m.spec ->> 'pooling' AS pooling,
       (m.spec ->> 'max_length')::integer AS max_length,
       coalesce(pg_catalog.jsonb_typeof(m.spec -> 'head') = 'object', false) AS has_head,
       coalesce(pg_catalog.octet_length(m.onnx), pg_catalog.octet_length(e.onnx)) AS onnx_bytes,
       m.source -> 'holdout' AS holdout_metrics,
       m.builtin,
       m.version,
       m.created_at,
       m.created_by,
       m.owner::text AS owner,
       CASE WHEN m.usable_by_all THEN '{PUBLIC}'::text[] ELSE '{}' END || m.usable_by::text[] AS usable_by
  FROM persona.bert_model_store m
  LEFT JOIN persona.bert_model_store e ON e.name = m.encoder;

-- Sharing a model: its owner grants or revokes its use.
CREATE FUNCTION "cf_model_grant"("model" TEXT, "role" TEXT) RETURNS TEXT[]
STRICT VOLATILE PARALLEL UNSAFE LANGUAGE c AS 'MODULE_PATHNAME', 'cf_model_grant_wrapper';
CREATE FUNCTION "cf_model_revoke"("model" TEXT, "role" TEXT) RETURNS TEXT[]
STRICT VOLATILE PARALLEL UNSAFE LANGUAGE c AS 'MODULE_PATHNAME', 'cf_model_revoke_wrapper';
CREATE FUNCTION "bert_model_grant"("name" TEXT, "role" TEXT) RETURNS TEXT[]
STRICT VOLATILE PARALLEL UNSAFE LANGUAGE c AS 'MODULE_PATHNAME', 'bert_model_grant_wrapper';
CREATE FUNCTION "bert_model_revoke"("name" TEXT, "role" TEXT) RETURNS TEXT[]
STRICT VOLATILE PARALLEL UNSAFE LANGUAGE c AS 'MODULE_PATHNAME', 'bert_model_revoke_wrapper';
COMMENT ON FUNCTION cf_model_grant(text, text) IS
  'Let a role (or PUBLIC) use a collaborative-filtering model: predict, recommend, read its rows; owner only';
COMMENT ON FUNCTION cf_model_revoke(text, text) IS
  'Take back the use of a collaborative-filtering model from a role (or PUBLIC); owner only';
COMMENT ON FUNCTION bert_model_grant(text, text) IS
  'Let a role (or PUBLIC) use a text model: score, classify, embed, train on it, read its row; owner only';
COMMENT ON FUNCTION bert_model_revoke(text, text) IS
  'Take back the use of a text model from a role (or PUBLIC); owner only';

-- The shared inference worker: what holds text graphs in memory and on disk.
CREATE FUNCTION persona."text_cache_entries"() RETURNS TABLE (
	"holder" TEXT,
	"pid" INT,
	"sha256" TEXT,
	"task" TEXT,
	"bytes" bigint,
	"last_used" timestamp with time zone
)
STRICT VOLATILE PARALLEL SAFE
LANGUAGE c AS 'MODULE_PATHNAME', 'text_cache_entries_wrapper';
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
CREATE FUNCTION persona."inference_worker_stats"() RETURNS TABLE (
	"pid" INT,
	"starts" bigint,
	"requests" bigint,
	"batches" bigint,
	"runs" bigint,
	"texts" bigint,
	"busy_seconds" double precision
)
STRICT VOLATILE PARALLEL SAFE
LANGUAGE c AS 'MODULE_PATHNAME', 'inference_worker_stats_wrapper';
CREATE VIEW persona.inference_worker AS
SELECT s.pid, s.starts, s.requests, s.batches, s.runs, s.texts, s.busy_seconds,
       CASE WHEN s.runs > 0 THEN round(s.batches::numeric / s.runs, 2) END AS batches_per_run
  FROM persona.inference_worker_stats() s;
COMMENT ON VIEW persona.inference_worker IS
  'The shared inference worker since the server started: starts, requests answered, callers'' batches run, merged runs, texts, seconds running; batches_per_run shows cross-connection batching';
REVOKE ALL ON FUNCTION persona.inference_worker_stats() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION persona.inference_worker_stats() TO pg_monitor;
GRANT SELECT ON persona.inference_worker TO pg_monitor;

-- Fold-in: recommendations and predictions for users the model did not train on, from ratings
-- given as jsonb (cf_recommend and cf_predict fold unknown users in from the model's source
-- under the new setting persona.fold_in, without a catalog change).
CREATE FUNCTION "cf_recommend_for"(
	"ratings" jsonb,
	"k" INT DEFAULT 10,
	"model" TEXT DEFAULT 'default',
	"exclude_seen" bool DEFAULT true
) RETURNS TABLE (
	"item_id" bigint,
	"score" real,
	"rank" INT
)
STRICT STABLE PARALLEL SAFE
LANGUAGE c AS 'MODULE_PATHNAME', 'cf_recommend_for_wrapper';
CREATE FUNCTION "cf_predict_for"(
	"ratings" jsonb,
	"item_id" bigint,
	"model" TEXT DEFAULT 'default'
) RETURNS real
STRICT STABLE PARALLEL SAFE
LANGUAGE c AS 'MODULE_PATHNAME', 'cf_predict_for_wrapper';

-- Explanations: the ratings that contribute most to a score (cf_explain, cf_explain_for) and
-- recommendations with their top reason (cf_recommend_explained).
CREATE FUNCTION "cf_explain"(
	"user_id" bigint,
	"item_id" bigint,
	"model" TEXT DEFAULT 'default',
	"k" INT DEFAULT 5
) RETURNS TABLE (
	"rank" INT,
	"reason_kind" TEXT,
	"reason_id" bigint,
	"rating" real,
	"weight" real,
	"contribution" real,
	"share" real
)
STRICT STABLE PARALLEL SAFE
LANGUAGE c AS 'MODULE_PATHNAME', 'cf_explain_wrapper';
CREATE FUNCTION "cf_explain_for"(
	"ratings" jsonb,
	"item_id" bigint,
	"model" TEXT DEFAULT 'default',
	"k" INT DEFAULT 5
) RETURNS TABLE (
	"rank" INT,
	"reason_kind" TEXT,
	"reason_id" bigint,
	"rating" real,
	"weight" real,
	"contribution" real,
	"share" real
)
STRICT STABLE PARALLEL SAFE
LANGUAGE c AS 'MODULE_PATHNAME', 'cf_explain_for_wrapper';
CREATE FUNCTION "cf_recommend_explained"(
	"user_id" bigint,
	"k" INT DEFAULT 10,
	"model" TEXT DEFAULT 'default',
	"exclude_seen" bool DEFAULT true
) RETURNS TABLE (
	"item_id" bigint,
	"score" real,
	"rank" INT,
	"reason_kind" TEXT,
	"reason_id" bigint,
	"reason_share" real
)
STRICT STABLE PARALLEL SAFE
LANGUAGE c AS 'MODULE_PATHNAME', 'cf_recommend_explained_wrapper';

-- Cold-start items: cf_train's option item_text adds unrated items with factors predicted from
-- their text; cf_add_items adds items that arrived since, with the stored map.
CREATE FUNCTION "cf_add_items"(
	"model" TEXT DEFAULT 'default'
) RETURNS jsonb
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c AS 'MODULE_PATHNAME', 'cf_add_items_wrapper';

-- Campaign statistics v2: campaign_metrics gains options (relative effects, sequential, Bayesian
-- and CUPED results, capping, corrections, segments); the one-argument call is unchanged. The
-- library keeps the old entry point, so a 0.2.0 catalog works until this update runs.
DROP FUNCTION "campaign_metrics"(TEXT);
CREATE FUNCTION "campaign_metrics"(
	"campaign" TEXT,
	"options" jsonb DEFAULT '{}'
) RETURNS jsonb
STRICT STABLE PARALLEL SAFE
LANGUAGE c AS 'MODULE_PATHNAME', 'campaign_metrics_with_options_wrapper';
-- Sample size and minimum detectable effect.
CREATE FUNCTION "campaign_power"(
	"baseline" double precision,
	"mde" double precision DEFAULT NULL,
	"users_per_arm" bigint DEFAULT NULL,
	"sd" double precision DEFAULT NULL,
	"alpha" double precision DEFAULT NULL,
	"power" double precision DEFAULT 0.8,
	"arms" INT DEFAULT 2,
	"relative" bool DEFAULT false
) RETURNS jsonb
STABLE PARALLEL SAFE
LANGUAGE c AS 'MODULE_PATHNAME', 'campaign_power_wrapper';
-- The campaign report as a self-contained HTML page.
CREATE FUNCTION "campaign_report"(
	"campaign" TEXT,
	"options" jsonb DEFAULT '{}'
) RETURNS TEXT
STRICT STABLE PARALLEL SAFE
LANGUAGE c AS 'MODULE_PATHNAME', 'campaign_report_wrapper';
COMMENT ON FUNCTION campaign_metrics(text, jsonb) IS
  'Evaluate a campaign: per-arm metrics, each arm against control with intervals and tests, SRM check and satisfaction; options add relative effects, sequential, Bayesian and CUPED results, capping, corrections and segments';
COMMENT ON FUNCTION campaign_power(double precision, double precision, bigint, double precision, double precision, double precision, integer, boolean) IS
  'Users per arm to detect an effect, or the effect detectable with a number of users (two-sided z-test, Bonferroni over the comparisons with control)';
COMMENT ON FUNCTION campaign_report(text, jsonb) IS
  'The campaign report as a self-contained HTML page (inline SVG, no script): verdicts, arms, forest plot of lifts, cumulative conversion with its sequential band, Qini curve of a score relation';

-- Portraits v2: purchases (persona.orders) and portrait models (profile_train), owned and shared
-- like cf models.
-- Purchases, for portraits' lifetime models and RFM (profile_train, user_profile). An
-- application can train on its own table or view with these columns instead (profile_train's
-- option "orders").
CREATE TABLE persona.orders (
    order_id    bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    user_id     bigint NOT NULL,
    occurred_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    value       numeric(14,2)
);
CREATE INDEX orders_user_idx ON persona.orders (user_id, occurred_at);

-- Portrait models (profile_train): the lifetime models' parameters and the population's RFM
-- quintiles fitted on an orders relation; every version kept, a name points at one, owned and
-- shared like cf models.
CREATE TABLE persona.profile_model_versions (
    model      text NOT NULL,
    version    integer NOT NULL,
    orders     text NOT NULL,   -- the orders relation it was fitted on (qualified name)
    params     jsonb NOT NULL,  -- bgnbd, gamma_gamma, rfm, as_of, discount_rate
    summary    jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    created_by name NOT NULL DEFAULT CURRENT_USER,
    PRIMARY KEY (model, version)
);
CREATE TABLE persona.profile_active (
    model         text PRIMARY KEY,
    version       integer NOT NULL,  -- a row of persona.profile_model_versions (checked by the functions)
    owner         regrole NOT NULL,
    usable_by     regrole[] NOT NULL DEFAULT '{}',
    usable_by_all boolean NOT NULL DEFAULT false
);
CREATE VIEW persona.profile_models WITH (security_invoker = true) AS
SELECT v.model,
       a.version AS active_version,
       v.orders,
       v.params,
       v.summary,
       v.created_at,
       v.created_by,
       (SELECT pg_catalog.count(*) FROM persona.profile_model_versions w WHERE w.model = v.model) AS versions,
       a.owner::text AS owner,  -- as text: a role OID means nothing on another Citus node
       CASE WHEN a.usable_by_all THEN '{PUBLIC}'::text[] ELSE '{}' END || a.usable_by::text[] AS usable_by
  FROM persona.profile_active a
  JOIN persona.profile_model_versions v ON v.model = a.model AND v.version = a.version;
CREATE FUNCTION persona.profile_model_visible(model text) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
SET citus.allow_nested_distributed_execution = on AS $$
SELECT EXISTS (SELECT FROM persona.profile_active a WHERE a.model OPERATOR(pg_catalog.=) $1)
$$;
ALTER TABLE persona.profile_active ENABLE ROW LEVEL SECURITY;
CREATE POLICY usable ON persona.profile_active FOR SELECT USING (
    persona.model_usable(owner, usable_by, usable_by_all));
ALTER TABLE persona.profile_model_versions ENABLE ROW LEVEL SECURITY;
CREATE POLICY usable ON persona.profile_model_versions FOR SELECT USING (
    persona.profile_model_visible(model));
SELECT pg_catalog.pg_extension_config_dump('persona.orders', '');
SELECT pg_catalog.pg_extension_config_dump('persona.orders_order_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('persona.profile_model_versions', '');
SELECT pg_catalog.pg_extension_config_dump('persona.profile_active', '');
GRANT SELECT ON persona.profile_model_versions, persona.profile_active, persona.profile_models TO PUBLIC;
CREATE FUNCTION "profile_train"(
	"model" TEXT DEFAULT 'default',
	"options" jsonb DEFAULT '{}'
) RETURNS jsonb
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c AS 'MODULE_PATHNAME', 'profile_train_wrapper';
CREATE FUNCTION "profile_deploy"(
	"model" TEXT,
	"version" INT
) RETURNS jsonb
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c AS 'MODULE_PATHNAME', 'profile_deploy_wrapper';
CREATE FUNCTION "profile_model_grant"("model" TEXT, "role" TEXT) RETURNS TEXT[]
STRICT VOLATILE PARALLEL UNSAFE LANGUAGE c AS 'MODULE_PATHNAME', 'profile_model_grant_wrapper';
CREATE FUNCTION "profile_model_revoke"("model" TEXT, "role" TEXT) RETURNS TEXT[]
STRICT VOLATILE PARALLEL UNSAFE LANGUAGE c AS 'MODULE_PATHNAME', 'profile_model_revoke_wrapper';
CREATE FUNCTION "user_profiles"(
	"users" bigint[] DEFAULT NULL,
	"model" TEXT DEFAULT 'default',
	"as_of" timestamp with time zone DEFAULT NULL
) RETURNS TABLE (
	"user_id" bigint,
	"profile" jsonb
)
STABLE PARALLEL SAFE
LANGUAGE c AS 'MODULE_PATHNAME', 'user_profiles_wrapper';
COMMENT ON FUNCTION profile_train(text, jsonb) IS
  'Fit a portrait model (BG/NBD and Gamma-Gamma lifetime models, RFM quintiles) on an orders relation and make it the active version of a name';

-- Scale-out on Citus: the model tables can become reference tables (persona.distribute()), which
-- Citus refuses for tables with triggers or foreign keys between them. pg_persona's functions now
-- assign text-model versions (one nextval on the node that writes, replicated as a value) and
-- check that an active version or an encoder exists; a direct UPDATE of a text model is noticed
-- by the row's xmin instead of a version-bumping trigger.
ALTER TABLE persona.cf_active DROP CONSTRAINT cf_active_model_version_fkey;
ALTER TABLE persona.bert_model_store DROP CONSTRAINT bert_model_store_encoder_fkey;
DROP TRIGGER new_version ON persona.bert_model_store;
DROP FUNCTION persona.bert_model_store_new_version();
ALTER TABLE persona.bert_model_store ALTER COLUMN version DROP DEFAULT;

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

-- Fine-tuning: bert_finetune trains the encoder itself (from the fp32 checkpoint in
-- persona.model_dir/<encoder>/) with a classification head and registers an ONNX classifier.
CREATE FUNCTION persona."bert_finetune_impl"(
	"name" TEXT,
	"source" oid,
	"encoder" TEXT,
	"options" jsonb
) RETURNS jsonb
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c AS 'MODULE_PATHNAME', 'bert_finetune_impl_wrapper';
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
