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

COMMENT ON FUNCTION cf_train(regclass, text, text, jsonb) IS
  'Train a collaborative-filtering model on a relation (user_id, item_id, rating) and make it the active version of a model name';
COMMENT ON FUNCTION cf_evaluate(regclass, text, jsonb, regclass) IS
  'Train on part of a relation and report RMSE, MAE, precision/recall/NDCG/MAP@k and coverage on the held-out part; stores nothing';

-- Any role may use stored models (prediction reads them); training needs INSERT/UPDATE, which
-- only the extension owner has until a DBA grants it. User data tables stay private.
GRANT USAGE ON SCHEMA persona TO PUBLIC;
GRANT SELECT ON persona.cf_model_versions, persona.cf_active, persona.cf_models TO PUBLIC;
