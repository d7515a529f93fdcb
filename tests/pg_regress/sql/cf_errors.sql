-- Every user mistake of the cf API: SQLSTATE, message, hint. Nothing is stored by a failed call.
SELECT count(*) AS versions_before FROM persona.cf_model_versions;

-- Unknown model, algorithm, option, split.
SELECT regress.error_of($$SELECT cf_predict(1, 1, 'nope')$$);
SELECT regress.error_of($$SELECT cf_train(algorithm => 'deep_magic')$$);
SELECT regress.error_of($$SELECT cf_train(algorithm => 'svd', options => '{"factorz": 10}')$$);
SELECT regress.error_of($$SELECT cf_train(algorithm => 'svd', options => '{"factors": 0}')$$);
SELECT regress.error_of($$SELECT cf_train(algorithm => 'als', options => '{"alpha": "high"}')$$);
SELECT regress.error_of($$SELECT cf_train(options => '{"split": "weird"}')$$);
SELECT regress.error_of($$SELECT cf_train(options => '{"test_fraction": 1.5}')$$);
SELECT regress.error_of($$SELECT cf_train(options => '[1, 2]')$$);
SELECT regress.error_of($$SELECT cf_train(model => '')$$);

-- Source problems: missing relation, empty, missing or mistyped columns.
SELECT regress.error_of($$SELECT cf_train('regress.no_such_table')$$);
CREATE TABLE regress.empty (user_id bigint, item_id bigint, rating real);
SELECT regress.error_of($$SELECT cf_train('regress.empty')$$);
CREATE TABLE regress.nulls (user_id bigint, item_id bigint, rating real);
INSERT INTO regress.nulls VALUES (1, 1, NULL), (2, 2, NULL);
SELECT regress.error_of($$SELECT cf_train('regress.nulls')$$);
CREATE TABLE regress.wrong_names (customer bigint, product bigint, stars real);
SELECT regress.error_of($$SELECT cf_train('regress.wrong_names')$$);
CREATE TABLE regress.wrong_types (user_id text, item_id bigint, rating real);
SELECT regress.error_of($$SELECT cf_train('regress.wrong_types')$$);
CREATE TABLE regress.text_rating (user_id bigint, item_id bigint, rating text);
SELECT regress.error_of($$SELECT cf_train('regress.text_rating')$$);
SELECT regress.error_of($$SELECT cf_train('regress.wrong_names', options => '{"user_column": 7}')$$);

-- k must be positive.
SELECT regress.error_of($$SELECT * FROM cf_recommend(1, 0)$$);
SELECT regress.error_of($$SELECT * FROM cf_similar_items(1, -3)$$);

-- Deploying a version that does not exist.
SELECT regress.error_of($$SELECT cf_deploy('default', 99)$$);
SELECT regress.error_of($$SELECT cf_deploy('nope', 1)$$);

-- A training that diverges (a learning rate far too large) is an error, not a model of NaNs;
-- the active version stays.
SELECT active_version AS active_before_divergence FROM persona.cf_models WHERE model = 'default';
SELECT regress.error_of($$SELECT cf_train(algorithm => 'svd', options => '{"lr": 1000}')$$);
SELECT active_version AS active_after_divergence FROM persona.cf_models WHERE model = 'default';

-- One meaning per option: "k" is k-NN's neighbour count, "top_k" the ranking cut-off.
SELECT s -> 'params' ->> 'k' AS knn_k, s -> 'holdout' -> 'ranking' ->> 'k' AS ranking_k
  FROM cf_evaluate(algorithm => 'knn_item', options => '{"k": 5, "top_k": 3}') s;
SELECT regress.error_of($$SELECT cf_train(algorithm => 'svd', model => 'k_svd', options => '{"k": 5}')$$) ~ '^22023: bad option for algorithm "svd": unknown field `k`' AS k_is_not_an_svd_option;

-- A memory estimate that would overflow is refused like any other too-large job.
SELECT regress.error_of($$SELECT cf_train(algorithm => 'knn_item', options => '{"max_neighbors": 2305843009213693952}')$$) ~ '^54000: training "knn_item" on .* needs about \d+ MB, more than persona.max_training_memory' AS huge_estimate_refused;

-- A job larger than persona.max_training_memory is refused before it starts.
SET persona.max_training_memory = '1MB';
SELECT regress.error_of($$SELECT cf_train(algorithm => 'svd', options => '{"factors": 1000}')$$);
RESET persona.max_training_memory;

-- A role that may train, but has no SELECT on the source, gets permission denied (before any
-- model changes: its own model under another name, as 'default' is the superuser's).
CREATE ROLE persona_regress_reader;
GRANT USAGE ON SCHEMA regress TO persona_regress_reader;
GRANT INSERT ON persona.cf_model_versions TO persona_regress_reader;
SET ROLE persona_regress_reader;
SELECT regress.error_of($$SELECT cf_train('persona.ratings', model => 'readers')$$);
-- ... and uses a model once its owner grants it (tests/pg_regress/sql/privileges.sql has more).
SELECT regress.error_of($$SELECT cf_predict(1, 1)$$);
RESET ROLE;
SELECT cf_model_grant('default', 'persona_regress_reader') AS usable_by;
SET ROLE persona_regress_reader;
SELECT cf_predict(1, 1) BETWEEN 1 AND 5 AS can_predict;
RESET ROLE;
SELECT cf_model_revoke('default', 'persona_regress_reader') AS usable_by;
REVOKE INSERT ON persona.cf_model_versions FROM persona_regress_reader;
DROP OWNED BY persona_regress_reader;
DROP ROLE persona_regress_reader;

-- A training stopped by statement_timeout stores nothing; the active version stays.
SET statement_timeout = '300ms';
SELECT cf_train(algorithm => 'svdpp', options => '{"epochs": 10000, "factors": 300}');
RESET statement_timeout;
SELECT active_version, algorithm FROM persona.cf_models WHERE model = 'default';

SELECT count(*) AS versions_after FROM persona.cf_model_versions;
