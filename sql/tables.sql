-- pg_persona: tables and views, created right after schema "persona" (src/lib.rs).
-- Everything the extension stores lives in schema "persona" so user schemas stay clean; the
-- headline functions live in the schema CREATE EXTENSION installs into (public by default).

COMMENT ON SCHEMA persona IS 'pg_persona: default data tables, campaigns and stored models';

-- Default data tables. Applications may use their own tables or views instead.
CREATE TABLE persona.users (
    user_id    bigint PRIMARY KEY,
    name       text,
    country    text,
    signup_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE persona.items (
    item_id     bigint PRIMARY KEY,
    title       text NOT NULL,
    category    text,
    description text,
    price       numeric(12,2)
);
CREATE TABLE persona.ratings (
    user_id  bigint NOT NULL,
    item_id  bigint NOT NULL,
    rating   real,
    rated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ratings_user_idx ON persona.ratings (user_id);
CREATE INDEX ratings_item_idx ON persona.ratings (item_id);

-- Campaigns and their events (exposure, click, conversion, or any other event name).
CREATE TABLE persona.campaigns (
    campaign      text PRIMARY KEY,
    channel       text,
    starts_at     timestamptz,
    ends_at       timestamptz,
    cost          numeric(14,2),
    control_arm   text NOT NULL DEFAULT 'control',
    planned_split jsonb,  -- e.g. {"treatment": 0.5, "control": 0.5}; NULL means equal split
    items         bigint[], -- items the campaign promotes (for campaign_audience)
    events        regclass, -- NULL: persona.campaign_events; else a table or view with the same columns
    CHECK (planned_split IS NULL OR jsonb_typeof(planned_split) = 'object'),
    -- Added in 0.2.0 (so last): each arm's own cost, e.g. {"email": 800, "push": 300}; when set,
    -- it replaces the attribution of cost to arms (unlisted arms: control 0, others unknown).
    arm_costs     jsonb CHECK (arm_costs IS NULL OR jsonb_typeof(arm_costs) = 'object')
);
CREATE TABLE persona.campaign_events (
    campaign    text NOT NULL,
    user_id     bigint NOT NULL,
    arm         text,
    event       text NOT NULL,
    value       numeric(14,2),
    occurred_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX campaign_events_campaign_idx ON persona.campaign_events (campaign, event);
CREATE TABLE persona.feedback (
    feedback_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id     bigint,
    item_id     bigint,
    campaign    text,
    body        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX feedback_campaign_idx ON persona.feedback (campaign);

-- Collaborative-filtering models: every trained version is kept; a model name points at one.
-- The model tables have no foreign keys, triggers or volatile defaults that a write depends on,
-- so that Citus can make them reference tables (persona.distribute()): pg_persona's functions
-- assign versions and times themselves, write plain INSERT ... VALUES, and check on every read
-- that the active version exists.
CREATE TABLE persona.cf_model_versions (
    model      text NOT NULL,
    version    integer NOT NULL,
    algorithm  text NOT NULL,
    params     jsonb NOT NULL,
    summary    jsonb NOT NULL,
    n_users    integer NOT NULL,
    n_items    integer NOT NULL,
    n_ratings  bigint NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    created_by name NOT NULL DEFAULT current_user,
    data       bytea NOT NULL,
    PRIMARY KEY (model, version)
);
ALTER TABLE persona.cf_model_versions ALTER COLUMN data SET STORAGE EXTERNAL; -- already dense floats
CREATE TABLE persona.cf_active (
    model   text PRIMARY KEY,
    version integer NOT NULL,  -- a row of persona.cf_model_versions (checked by the functions)
    -- Added in 0.3.0 (so last): the model's owner (the role that first trained it), the roles it
    -- granted use to (cf_model_grant), and whether every role may use it.
    owner         regrole NOT NULL,
    usable_by     regrole[] NOT NULL DEFAULT '{}',
    usable_by_all boolean NOT NULL DEFAULT false
);

CREATE VIEW persona.cf_models WITH (security_invoker = true) AS
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

-- Text models (bert_* functions): ONNX graphs, their tokenizers and how to read them, stored in
-- the database so they are backed up and replicated with it. A model with an encoder (a trained
-- classification head on another model's embeddings, like the default "sentiment" on "minilm")
-- stores only its spec and uses the encoder's graph and tokenizer. Every registration or
-- replacement takes a new version number from the sequence (on the node that writes), the same
-- on every node the row is replicated to; backends notice a stale ONNX Runtime session by the
-- version and by the row's xmin, so a direct UPDATE of a row is noticed too.
CREATE SEQUENCE persona.bert_model_version_seq;
CREATE TABLE persona.bert_model_store (
    name           text PRIMARY KEY
                   CHECK (name ~ '^[A-Za-z0-9_][A-Za-z0-9_.:-]*$' AND pg_catalog.length(name) <= 63),
    task           text NOT NULL CHECK (task IN ('embedding', 'classification')),
    encoder        text,            -- the model whose graph it runs on (checked by the functions)
    spec           jsonb NOT NULL,  -- pooling, max_length, labels, positive_label, head
    dim            integer,         -- embedding dimension; NULL for a logits-only classifier
    labels         text[],          -- class labels in logit order; NULL for an encoder
    positive_label text,            -- the label bert_score returns the probability of
    onnx           bytea,           -- the ONNX graph; NULL when encoder is set
    tokenizer      text,            -- tokenizer.json; NULL when encoder is set
    source         jsonb,           -- where it came from: file paths, or bert_train_classifier's report
    builtin        boolean NOT NULL DEFAULT false, -- registered by bert_register_defaults()
    version        bigint NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT pg_catalog.now(),
    created_by     name NOT NULL DEFAULT CURRENT_USER,
    -- Added in 0.3.0 (so last), as in persona.cf_active.
    owner          regrole NOT NULL,
    usable_by      regrole[] NOT NULL DEFAULT '{}',
    usable_by_all  boolean NOT NULL DEFAULT false,
    -- Added in 0.3.0: the graph's identity in the inference worker and its file cache.
    onnx_sha256    bytea GENERATED ALWAYS AS (pg_catalog.sha256(onnx)) STORED,
    CHECK ((encoder IS NULL) = (onnx IS NOT NULL)),
    CHECK ((onnx IS NULL) = (tokenizer IS NULL)),
    CHECK (encoder IS DISTINCT FROM name)
);
ALTER TABLE persona.bert_model_store ALTER COLUMN onnx SET STORAGE EXTERNAL; -- weights barely compress
CREATE INDEX bert_model_store_encoder_idx ON persona.bert_model_store (encoder);

CREATE VIEW persona.bert_models WITH (security_invoker = true) AS
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

-- Model privileges. A model is usable by its owner (and the roles that have the owner's
-- privileges), by the roles it was granted to (cf_model_grant, bert_model_grant), by every role
-- when granted to PUBLIC (the built-in text models are), and by superusers. Rows a role may not
-- use are invisible to it, so nothing it cannot use can be read back from the model tables:
-- SELECT is granted to PUBLIC below, row-level security filters it. There are no policies for
-- writes: only the tables' owner writes them, through pg_persona's functions, which check the
-- caller's ownership and record who did it.
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
-- A version is visible with its model.
ALTER TABLE persona.cf_model_versions ENABLE ROW LEVEL SECURITY;
CREATE POLICY usable ON persona.cf_model_versions FOR SELECT USING (
    persona.cf_model_visible(model));
ALTER TABLE persona.bert_model_store ENABLE ROW LEVEL SECURITY;
CREATE POLICY usable ON persona.bert_model_store FOR SELECT USING (
    persona.model_usable(owner, usable_by, usable_by_all));

-- User data and models are dumped by pg_dump (the tables themselves belong to the extension).
SELECT pg_catalog.pg_extension_config_dump('persona.users', '');
SELECT pg_catalog.pg_extension_config_dump('persona.items', '');
SELECT pg_catalog.pg_extension_config_dump('persona.ratings', '');
SELECT pg_catalog.pg_extension_config_dump('persona.campaigns', '');
SELECT pg_catalog.pg_extension_config_dump('persona.campaign_events', '');
SELECT pg_catalog.pg_extension_config_dump('persona.feedback', '');
SELECT pg_catalog.pg_extension_config_dump('persona.feedback_feedback_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('persona.cf_model_versions', '');
SELECT pg_catalog.pg_extension_config_dump('persona.cf_active', '');
-- The default text models are registered again by CREATE EXTENSION, so only the others are dumped.
SELECT pg_catalog.pg_extension_config_dump('persona.bert_model_store', 'WHERE NOT builtin');
SELECT pg_catalog.pg_extension_config_dump('persona.bert_model_version_seq', '');
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
