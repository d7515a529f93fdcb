-- Collaborative filtering: train, predict, recommend, similar, evaluate, versions.
-- By default the report holds 10% out, and the model deployed is then fitted on every row.
SELECT r ->> 'model' AS model, r ->> 'version' AS version, r ->> 'algorithm' AS algorithm,
       r ->> 'rows_read' AS rows_read, r ->> 'rows_held_out' AS held_out, r ->> 'ratings_used' AS used,
       r -> 'refit' AS refit, r -> 'rating_range' AS rating_range,
       (r -> 'holdout' ->> 'rmse')::float8 BETWEEN 0.5 AND 1.0 AS rmse_plausible,
       (r -> 'holdout' -> 'ranking' ->> 'k')::int AS k
  FROM cf_train() r;
SELECT n_ratings = (SELECT count(*) FROM persona.ratings) AS deployed_model_saw_every_row FROM persona.cf_models WHERE model = 'default';
-- refit => false deploys the model the report was computed on (half the training time).
SELECT (r ->> 'ratings_used')::int + (r ->> 'rows_held_out')::int = (r ->> 'rows_read')::int AS used_the_split, r -> 'refit' AS refit
  FROM cf_train(model => 'no_refit', options => '{"refit": false, "epochs": 5}') r;
SELECT regress.error_of($$SELECT cf_train(model => 'no_refit', options => '{"refit": "yes"}')$$);
SELECT regress.error_of($$SELECT cf_evaluate(options => '{"refit": false}')$$);
DELETE FROM persona.cf_active WHERE model = 'no_refit';
DELETE FROM persona.cf_model_versions WHERE model = 'no_refit';

-- Every algorithm trains and predicts within the rating scale.
SELECT a AS algorithm, r ->> 'version' AS version,
       (SELECT bool_and(cf_predict(u, i, 'm_' || a) BETWEEN 1 AND 5) FROM generate_series(1, 20) u, generate_series(1, 10) i) AS in_scale
  FROM unnest(ARRAY['baseline', 'svd', 'svdpp', 'knn_user', 'knn_item']) a,
       LATERAL cf_train(algorithm => a, model => 'm_' || a) r;

-- Implicit ALS: scores rank items; they are not ratings.
SELECT r ->> 'algorithm' AS algorithm, r -> 'rating_range' AS rating_range, r -> 'holdout' -> 'rmse' AS rmse,
       (r -> 'holdout' -> 'ranking' ->> 'precision_at_k')::float8 > 0.05 AS finds_relevant_items
  FROM cf_train(algorithm => 'als', model => 'clicks', options => '{"rating_column": null, "factors": 16}') r;

-- Predictions are deterministic for a seed and stable across calls.
SELECT round(cf_predict(1, 1)::numeric, 4) = round(cf_predict(1, 1)::numeric, 4) AS stable;

-- Unknown users or items fall back to the global mean plus known biases, not an error.
SELECT cf_predict(123456789, 1, 'm_baseline') = cf_predict(987654321, 1, 'm_baseline') AS unknown_users_agree,
       cf_predict(123456789, 987654321, 'm_baseline') BETWEEN 1 AND 5 AS unknown_both_in_scale;

-- NULL in, NULL out.
SELECT cf_predict(NULL, 1) IS NULL AS null_user, cf_predict(1, NULL) IS NULL AS null_item;

-- Top-N: k rows, ranks 1..k, scores descending, nothing the user already rated.
SELECT count(*) AS n, min(rank) AS first, max(rank) AS last,
       bool_and(score <= prev) AS descending
  FROM (SELECT rank, score, lag(score, 1, 'Infinity') OVER (ORDER BY rank) AS prev FROM cf_recommend(1, 10)) r;
SELECT count(*) AS already_rated FROM cf_recommend(1, 100) r JOIN persona.ratings x ON x.user_id = 1 AND x.item_id = r.item_id;
SELECT count(*) > 0 AS includes_rated FROM cf_recommend(1, 200, exclude_seen => false) r
  JOIN persona.ratings x ON x.user_id = 1 AND x.item_id = r.item_id;
SELECT count(*) AS for_unknown_user FROM cf_recommend(424242, 5);

-- Similar items and users.
SELECT count(*) AS n, bool_and(item_id <> 1) AS excludes_itself FROM cf_similar_items(1, 5, 'm_knn_item');
SELECT count(*) AS n, bool_and(user_id <> 1) AS excludes_itself FROM cf_similar_users(1, 5, 'm_knn_user');
SELECT count(*) AS n FROM cf_similar_items(1, 5);
SELECT count(*) AS unknown_item FROM cf_similar_items(987654, 5);

-- Evaluation stores nothing and reports every metric.
SELECT count(*) AS versions_before FROM persona.cf_model_versions;
SELECT e ->> 'split' AS split, e ->> 'test_fraction' AS test_fraction,
       (SELECT array_agg(k ORDER BY k) FROM jsonb_object_keys(e -> 'holdout') k) AS holdout_keys,
       (SELECT array_agg(k ORDER BY k) FROM jsonb_object_keys(e -> 'holdout' -> 'ranking') k) AS ranking_keys
  FROM cf_evaluate(algorithm => 'svd', options => '{"split": "user", "test_fraction": 0.25}') e;
SELECT count(*) AS versions_after FROM persona.cf_model_versions;
-- Beyond accuracy (Microsoft Recommenders' definitions): every metric, in its range; the
-- catalogue coverage is the ranking report's.
SELECT (SELECT array_agg(k ORDER BY k) FROM jsonb_object_keys(b) k) AS beyond_keys,
       (b ->> 'diversity')::float8 BETWEEN 0 AND 1 AS diversity, (b ->> 'serendipity')::float8 BETWEEN 0 AND 1 AS serendipity,
       (b ->> 'novelty')::float8 > 0 AS novelty, (b ->> 'distributional_coverage')::float8 > 0 AS entropy,
       b -> 'catalog_coverage' = e -> 'holdout' -> 'ranking' -> 'catalog_coverage' AS same_coverage
  FROM cf_evaluate(algorithm => 'als', options => '{"split": "user", "test_fraction": 0.25}') e,
       LATERAL (SELECT e -> 'holdout' -> 'beyond_accuracy') x(b);
-- ... or against a test relation the user gives.
CREATE TABLE regress.test_part AS SELECT * FROM persona.ratings WHERE user_id % 10 = 0 AND item_id % 3 = 0;
CREATE TABLE regress.train_part AS SELECT * FROM persona.ratings EXCEPT ALL SELECT * FROM regress.test_part;
SELECT e ->> 'split' AS split, (e ->> 'rows_held_out')::int = (SELECT count(*) FROM regress.test_part) AS all_test_rows_scored
  FROM cf_evaluate('regress.train_part', 'baseline', '{}', 'regress.test_part') e;

-- Versions: retraining adds a version and activates it; cf_deploy rolls back.
SELECT cf_train(algorithm => 'baseline') ->> 'version' AS version;
SELECT model, active_version, algorithm, versions FROM persona.cf_models WHERE model = 'default';
SELECT cf_deploy('default', 1);
SELECT model, active_version, algorithm, versions FROM persona.cf_models WHERE model = 'default';

-- Every model is listed.
SELECT model, active_version, algorithm, n_users > 0 AS has_users, bytes > 0 AS has_bytes FROM persona.cf_models ORDER BY model;

-- Duplicates are merged into their mean, NULL ratings skipped and counted.
CREATE TABLE regress.dups (user_id int, item_id int, rating numeric);
INSERT INTO regress.dups VALUES (1, 1, 4), (1, 1, 2), (1, 2, NULL), (2, 1, 5), (2, 2, 1), (NULL, 3, 3);
SELECT r ->> 'rows_read' AS rows_read, r ->> 'ratings_used' AS used, r ->> 'duplicates_merged' AS merged,
       r ->> 'skipped_null' AS skipped_null
  FROM cf_train('regress.dups', 'baseline', 'dups', '{"test_fraction": 0}') r;

-- Ratings outside a declared scale are skipped and counted.
SELECT r ->> 'skipped_out_of_range' AS out_of_range, r -> 'rating_range' AS rating_range
  FROM cf_train('regress.dups', 'baseline', 'dups', '{"test_fraction": 0, "min_rating": 2, "max_rating": 4}') r;

-- Other column names.
CREATE VIEW regress.clicks AS SELECT user_id AS customer, item_id AS product, 1 AS clicks FROM persona.ratings;
SELECT r ->> 'ratings_used' AS used FROM cf_train('regress.clicks', 'als', 'clicks2',
  '{"user_column": "customer", "item_column": "product", "rating_column": "clicks", "test_fraction": 0, "iterations": 2}') r;

-- Parallel query: cf_predict is PARALLEL SAFE and works inside parallel workers (model tables are
-- read without assigning a transaction id).
SET parallel_setup_cost = 0;
SET parallel_tuple_cost = 0;
SET min_parallel_table_scan_size = 0;
SET max_parallel_workers_per_gather = 2;
EXPLAIN (COSTS OFF) SELECT sum(cf_predict(user_id, item_id)) FROM persona.ratings;
SELECT count(*) AS rows, bool_and(cf_predict(user_id, item_id) BETWEEN 1 AND 5) AS in_scale FROM persona.ratings;
RESET parallel_setup_cost;
RESET parallel_tuple_cost;
RESET min_parallel_table_scan_size;
RESET max_parallel_workers_per_gather;

-- Another session's training is seen at this session's next transaction, without reconnecting
-- (the model is cached per backend, its version resolved once per transaction).
CREATE EXTENSION dblink;
SELECT cf_train(algorithm => 'baseline', model => 'shared') ->> 'version' AS version;
SELECT round(cf_predict(1, 1, 'shared')::numeric, 3) = round(cf_predict(1, 1, 'm_baseline')::numeric, 3) AS cached_v1;
SELECT r FROM dblink('dbname=' || current_database(),
                     $$SELECT cf_train(algorithm => 'svdpp', model => 'shared') ->> 'version'$$) AS t(r text);
SELECT round(cf_predict(1, 1, 'shared')::numeric, 3) = round(cf_predict(1, 1, 'm_svdpp')::numeric, 3) AS sees_v2;
-- A training rolled back after this backend used its model frees its version number; the next
-- training's model under that number is not mistaken for the cached one: this backend answers
-- what a new backend answers.
BEGIN;
SELECT cf_train(algorithm => 'baseline', model => 'rolled') ->> 'version' AS version;
SELECT cf_predict(1, 1, 'rolled') IS NOT NULL AS used;
ROLLBACK;
SELECT cf_train(algorithm => 'svd', model => 'rolled', options => '{"seed": 3}') ->> 'version' AS version;
SELECT cf_predict(1, 1, 'rolled') = r AS same_as_a_new_backend
  FROM dblink('dbname=' || current_database(), $$SELECT cf_predict(1, 1, 'rolled')$$) AS t(r real);
DROP EXTENSION dblink;

-- The same rows in another physical order (as after VACUUM FULL, CLUSTER or from a distributed
-- table) give the same model bytes for a seed: rows are put in one order before training.
CREATE TABLE regress.ordered AS SELECT * FROM persona.ratings ORDER BY user_id, item_id;
CREATE TABLE regress.shuffled AS SELECT * FROM persona.ratings ORDER BY md5(user_id::text || '/' || item_id::text);
SELECT (SELECT array_agg(user_id) FROM (SELECT user_id FROM regress.ordered LIMIT 5) a) IS DISTINCT FROM
       (SELECT array_agg(user_id) FROM (SELECT user_id FROM regress.shuffled LIMIT 5) b) AS stored_in_another_order;
SELECT cf_train('regress.ordered', 'svdpp', 'order_a', '{"seed": 5}') ->> 'version' AS a,
       cf_train('regress.shuffled', 'svdpp', 'order_b', '{"seed": 5}') ->> 'version' AS b;
SELECT a.data = b.data AS same_model_bytes
  FROM persona.cf_model_versions a, persona.cf_model_versions b WHERE a.model = 'order_a' AND b.model = 'order_b';
DELETE FROM persona.cf_active WHERE model IN ('order_a', 'order_b');
DELETE FROM persona.cf_model_versions WHERE model IN ('order_a', 'order_b');
DROP TABLE regress.ordered, regress.shuffled;
