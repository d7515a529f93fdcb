-- Fold-in: users the model did not train on, answered without retraining, from ratings given as
-- jsonb (cf_recommend_for, cf_predict_for) or from their rows in the model's source
-- (cf_recommend, cf_predict under persona.fold_in), read with the caller's privileges.
CREATE TABLE fold_src AS SELECT user_id, item_id, rating FROM persona.ratings WHERE user_id <> 1;
CREATE INDEX ON fold_src (user_id);
SELECT r -> 'source_columns' AS source_columns
  FROM cf_train('fold_src', 'svd', 'fold_svd', '{"test_fraction": 0, "epochs": 10}') r;
SELECT summary -> 'source' AS stored_source FROM persona.cf_model_versions WHERE model = 'fold_svd';
CREATE TEMP TABLE user1 AS
  SELECT pg_catalog.jsonb_object_agg(item_id::text, rating) AS ratings FROM persona.ratings WHERE user_id = 1;

-- User 1 is not in the model: without their rows in the source they get the unknown user's list.
SELECT array_agg(item_id ORDER BY rank) = (SELECT array_agg(item_id ORDER BY rank) FROM cf_recommend(424242, 10, 'fold_svd'))
       AS unknown_list FROM cf_recommend(1, 10, 'fold_svd');
-- Folded in from given ratings: a different list, never an item user 1 rated, scores in scale.
SELECT count(*) AS n, bool_and(score BETWEEN 1 AND 5) AS in_scale,
       count(*) FILTER (WHERE item_id IN (SELECT item_id FROM persona.ratings WHERE user_id = 1)) AS rated,
       array_agg(item_id ORDER BY rank) <> (SELECT array_agg(item_id ORDER BY rank) FROM cf_recommend(424242, 10, 'fold_svd')) AS personal
  FROM user1, cf_recommend_for(user1.ratings, 10, 'fold_svd');
-- Once user 1's rows are in the source, cf_recommend folds them in: the same list as the given ratings.
INSERT INTO fold_src SELECT user_id, item_id, rating FROM persona.ratings WHERE user_id = 1;
SELECT (SELECT array_agg((item_id, score) ORDER BY rank) FROM cf_recommend(1, 10, 'fold_svd'))
     = (SELECT array_agg((item_id, score) ORDER BY rank) FROM user1, cf_recommend_for(user1.ratings, 10, 'fold_svd'))
       AS same_as_given;
-- Per row: cf_predict of the unknown user equals cf_predict_for, item by item.
SELECT bool_and(cf_predict(1, i, 'fold_svd') = cf_predict_for(user1.ratings, i, 'fold_svd')) AS predict_agrees,
       count(*) FILTER (WHERE cf_predict(1, i, 'fold_svd') <> cf_predict(424242, i, 'fold_svd')) >= 15 AS not_the_baseline
  FROM user1, generate_series(1, 20) i;
-- The formats of given ratings agree.
SELECT cf_predict_for('{"1": 5, "2": 3}', 3, 'fold_svd') = cf_predict_for('[[1, 5], [2, 3]]', 3, 'fold_svd')
   AND cf_predict_for('[[1, 5], [2, 3]]', 3, 'fold_svd') = cf_predict_for('[{"item_id": 1, "rating": 5}, {"item_id": 2, "rating": 3}]', 3, 'fold_svd')
       AS formats_agree;
-- persona.fold_in = off answers unknown users as before.
SET persona.fold_in = off;
SELECT array_agg(item_id ORDER BY rank) = (SELECT array_agg(item_id ORDER BY rank) FROM cf_recommend(424242, 10, 'fold_svd'))
       AS off_is_unknown FROM cf_recommend(1, 10, 'fold_svd');
-- always: known users from the ratings they have now (user 2 rates five items 5 since training).
SET persona.fold_in = always;
INSERT INTO fold_src SELECT 2, i, 5 FROM generate_series(1, 60) i
  WHERE i NOT IN (SELECT item_id FROM fold_src WHERE user_id = 2) LIMIT 5;
SELECT (SELECT array_agg(item_id ORDER BY rank) FROM cf_recommend(2, 10, 'fold_svd'))
     = (SELECT array_agg(item_id ORDER BY rank)
          FROM cf_recommend_for((SELECT jsonb_object_agg(item_id::text, rating) FROM fold_src WHERE user_id = 2), 10, 'fold_svd'))
       AS always_uses_current_rows,
       (SELECT count(*) FROM cf_recommend(2, 100, 'fold_svd') r JOIN fold_src s ON s.user_id = 2 AND s.item_id = r.item_id) AS new_rows_excluded;
RESET persona.fold_in;

-- Every algorithm folds in: a personal list of k items the user did not rate.
SELECT a AS algorithm, count(*) AS n,
       count(*) FILTER (WHERE item_id IN (SELECT item_id FROM persona.ratings WHERE user_id = 1)) AS rated
  FROM unnest(ARRAY['baseline', 'svdpp', 'als', 'knn_item', 'knn_user']) a
  CROSS JOIN LATERAL cf_train('fold_src', a, 'fold_' || a, '{"test_fraction": 0}') t
  CROSS JOIN user1
  CROSS JOIN LATERAL cf_recommend_for(user1.ratings, 10, 'fold_' || a) r
 GROUP BY a ORDER BY a;

-- Privileges: a role that may use the model but not read the source gets the unknown user's
-- list; with SELECT it gets the fold-in; row-level security hiding user 1's rows hides them here.
CREATE ROLE regress_fold_reader;
SELECT cf_model_grant('fold_svd', 'regress_fold_reader');
GRANT USAGE ON SCHEMA regress TO regress_fold_reader;
SET ROLE regress_fold_reader;
SELECT array_agg(item_id ORDER BY rank) = (SELECT array_agg(item_id ORDER BY rank) FROM cf_recommend(424242, 10, 'fold_svd'))
       AS no_select_no_fold FROM cf_recommend(1, 10, 'fold_svd');
RESET ROLE;
GRANT SELECT ON fold_src TO regress_fold_reader;
SET ROLE regress_fold_reader;
SELECT array_agg(item_id ORDER BY rank) <> (SELECT array_agg(item_id ORDER BY rank) FROM cf_recommend(424242, 10, 'fold_svd'))
       AS select_folds FROM cf_recommend(1, 10, 'fold_svd');
RESET ROLE;
ALTER TABLE fold_src ENABLE ROW LEVEL SECURITY;
CREATE POLICY not_user_1 ON fold_src FOR SELECT USING (user_id <> 1);
SET ROLE regress_fold_reader;
SELECT array_agg(item_id ORDER BY rank) = (SELECT array_agg(item_id ORDER BY rank) FROM cf_recommend(424242, 10, 'fold_svd'))
       AS rls_hides_rows FROM cf_recommend(1, 10, 'fold_svd');
RESET ROLE;
ALTER TABLE fold_src DISABLE ROW LEVEL SECURITY;
-- A model stored without its source columns (trained before 0.3.0) answers as before.
UPDATE persona.cf_model_versions SET summary = summary - 'source_columns' WHERE model = 'fold_svd';
SELECT array_agg(item_id ORDER BY rank) = (SELECT array_agg(item_id ORDER BY rank) FROM cf_recommend(424242, 10, 'fold_svd'))
       AS old_model_unknown FROM cf_recommend(1, 10, 'fold_svd');

-- Bad input.
SELECT regress.error_of($$SELECT cf_predict_for('{"x": 5}', 1, 'fold_svd')$$);
SELECT regress.error_of($$SELECT cf_predict_for('{"1": "five"}', 1, 'fold_svd')$$);
SELECT regress.error_of($$SELECT cf_predict_for('[[1]]', 1, 'fold_svd')$$);
SELECT regress.error_of($$SELECT cf_predict_for('[{"item_id": 1}]', 1, 'fold_svd')$$);
SELECT regress.error_of($$SELECT cf_predict_for('"1"', 1, 'fold_svd')$$);
SELECT regress.error_of($$SELECT * FROM cf_recommend_for('{"1": 5}', 0, 'fold_svd')$$);
-- No usable rating (items the model does not know, ratings off its scale): a NOTICE and the
-- unknown user's list.
SELECT array_agg(item_id ORDER BY rank) = (SELECT array_agg(item_id ORDER BY rank) FROM cf_recommend(424242, 5, 'fold_svd'))
       AS unknown_list FROM cf_recommend_for('{"99999999": 5, "1": 42}', 5, 'fold_svd');
SELECT cf_predict_for('{}', 1, 'fold_svd') = cf_predict(424242, 1, 'fold_svd') AS empty_is_unknown;
-- A huge k is bounded by the catalogue: every item the user did not rate.
SELECT count(*) = (SELECT count(DISTINCT item_id) FROM fold_src WHERE user_id <> 1) - 2 AS whole_catalogue
  FROM cf_recommend_for('{"1": 5, "2": 4}', 1000000, 'fold_svd');
-- A user-based k-NN model that kept no baselines cannot fold in with pearson_baseline.
SELECT regress.error_of($$SELECT cf_train('fold_src', 'knn_user', 'fold_knn_nb', '{"test_fraction": 0, "centering": "none"}')$$) AS trains;
SELECT regress.error_of($$SELECT * FROM cf_recommend_for('{"1": 5}', 5, 'fold_knn_nb')$$);

-- Clean up.
DROP TABLE fold_src;
DELETE FROM persona.cf_active WHERE model LIKE 'fold\_%';
DELETE FROM persona.cf_model_versions WHERE model LIKE 'fold\_%';
REVOKE USAGE ON SCHEMA regress FROM regress_fold_reader;
DROP ROLE regress_fold_reader;
