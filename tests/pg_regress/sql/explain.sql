-- Explanations: the ratings that contribute most to a score (cf_explain, cf_explain_for), and
-- recommendations with their top reason (cf_recommend_explained). A user's ratings are read
-- from the model's source with the caller's privileges.
CREATE TABLE explain_src AS SELECT user_id, item_id, rating FROM persona.ratings;
CREATE INDEX ON explain_src (user_id);
SELECT a AS algorithm, t ->> 'algorithm' = a AS trained
  FROM unnest(ARRAY['svd', 'svdpp', 'als', 'baseline', 'knn_item', 'knn_user']) a
  CROSS JOIN LATERAL cf_train('explain_src', a, 'explain_' || a, '{"test_fraction": 0}') t ORDER BY a;
CREATE TEMP TABLE user1 AS
  SELECT jsonb_object_agg(item_id::text, rating) AS ratings FROM explain_src WHERE user_id = 1;
-- The item explained: each model's best recommendation for user 1.
CREATE TEMP TABLE explained AS
  SELECT a AS algorithm, (SELECT item_id FROM cf_recommend(1, 1, 'explain_' || a)) AS item
    FROM unnest(ARRAY['svd', 'svdpp', 'als', 'baseline', 'knn_item', 'knn_user']) a;

-- k reasons, ranked 1..k by descending contribution; the reasons are items user 1 rated (with
-- their rating), or, user-based, neighbours who rated the item (with their rating of it); the
-- top reason raises the score; shares are at most 1 in absolute value.
SELECT e.algorithm, count(*) AS n, array_agg(r.rank ORDER BY r.rank) = '{1,2,3}' AS ranked,
       bool_and(r.reason_kind = CASE e.algorithm WHEN 'knn_user' THEN 'user' ELSE 'item' END) AS kind,
       bool_and(CASE r.reason_kind
                  WHEN 'item' THEN EXISTS (SELECT 1 FROM explain_src s WHERE s.user_id = 1
                                              AND s.item_id = r.reason_id AND s.rating = r.rating)
                  ELSE EXISTS (SELECT 1 FROM explain_src s WHERE s.user_id = r.reason_id
                                  AND s.item_id = e.item AND s.rating = r.rating) END) AS real_ratings,
       bool_and(abs(r.share) <= 1) AS shares,
       bool_and(r.contribution > 0) FILTER (WHERE r.rank = 1) AS top_raises,
       array_agg(r.contribution ORDER BY r.rank) = array_agg(r.contribution ORDER BY r.contribution DESC) AS by_contribution
  FROM explained e CROSS JOIN LATERAL cf_explain(1, e.item, 'explain_' || e.algorithm, 3) r
 GROUP BY e.algorithm ORDER BY e.algorithm;

-- The same as the user's ratings given as jsonb.
SELECT e.algorithm,
       (SELECT array_agg((rank, reason_id, contribution) ORDER BY rank) FROM cf_explain(1, e.item, 'explain_' || e.algorithm, 5))
     = (SELECT array_agg((rank, reason_id, contribution) ORDER BY rank) FROM user1, cf_explain_for(user1.ratings, e.item, 'explain_' || e.algorithm, 5))
       AS same_as_given
  FROM explained e ORDER BY e.algorithm;

-- ALS scores have no base: all the contributions add up to the fold-in's score.
SELECT abs((SELECT sum(contribution) FROM user1, cf_explain_for(user1.ratings, e.item, 'explain_als', 100000))
           - (SELECT cf_predict_for(user1.ratings, e.item, 'explain_als') FROM user1)) < 1e-4 AS als_adds_up
  FROM explained e WHERE e.algorithm = 'als';
-- All the shares of one score have absolute values summing to 1.
SELECT e.algorithm, round(sum(abs(r.share))::numeric, 4) AS total_share
  FROM explained e CROSS JOIN LATERAL cf_explain(1, e.item, 'explain_' || e.algorithm, 100000) r
 GROUP BY e.algorithm ORDER BY e.algorithm;

-- cf_recommend_explained: cf_recommend's rows, each with the reason cf_explain ranks first.
SELECT a AS algorithm,
       (SELECT array_agg((item_id, score, rank) ORDER BY rank) FROM cf_recommend_explained(1, 5, 'explain_' || a))
     = (SELECT array_agg((item_id, score, rank) ORDER BY rank) FROM cf_recommend(1, 5, 'explain_' || a)) AS same_rows,
       (SELECT bool_and((x.reason_kind, x.reason_id, x.reason_share) IS NOT DISTINCT FROM
                        (SELECT (reason_kind, reason_id, share) FROM cf_explain(1, x.item_id, 'explain_' || a, 1)))
          FROM cf_recommend_explained(1, 5, 'explain_' || a) x) AS top_reason,
       (SELECT count(*) FILTER (WHERE reason_id IS NOT NULL) FROM cf_recommend_explained(1, 5, 'explain_' || a)) AS with_reason
  FROM unnest(ARRAY['svd', 'svdpp', 'als', 'baseline', 'knn_item', 'knn_user']) a ORDER BY a;

-- An item the model does not know: no reasons (its score is the fallback). A user without
-- ratings in the source: no reasons either, and recommendations without one.
SELECT count(*) AS unknown_item FROM cf_explain(1, 99999999, 'explain_svd');
SELECT count(*) AS unknown_user FROM cf_explain(424242, 1, 'explain_svd');
SELECT count(*) AS rows, count(reason_id) AS with_reason FROM cf_recommend_explained(424242, 5, 'explain_svd');
-- A huge k is bounded by the user's ratings.
SELECT count(*) = (SELECT count(*) FROM explain_src WHERE user_id = 1) AS all_ratings
  FROM cf_explain(1, (SELECT item FROM explained WHERE algorithm = 'svd'), 'explain_svd', 2147483647);

-- Bad input and what the caller may not read.
SELECT regress.error_of($$SELECT * FROM cf_explain(1, 1, 'explain_svd', 0)$$);
SELECT regress.error_of($$SELECT * FROM cf_explain_for('{"x": 5}', 1, 'explain_svd')$$);
SELECT left(regress.error_of($$SELECT * FROM cf_explain(1, 1, 'no_such_model')$$), 5) AS no_such_model;
CREATE ROLE regress_explain_reader;
SELECT cf_model_grant('explain_svd', 'regress_explain_reader');
GRANT USAGE ON SCHEMA regress TO regress_explain_reader;
SET ROLE regress_explain_reader;
-- A role that may use the model but not read the source does not see the user's ratings.
SELECT regress.error_of($$SELECT * FROM cf_explain(1, 1, 'explain_svd')$$);
SELECT regress.error_of($$SELECT * FROM cf_recommend_explained(1, 5, 'explain_svd')$$);
-- What the caller gives is theirs to see.
SELECT count(*) AS given FROM cf_explain_for('{"1": 5, "2": 4, "3": 1}', 4, 'explain_svd', 3);
RESET ROLE;
-- Row-level security hiding user 1's rows hides their reasons.
GRANT SELECT ON explain_src TO regress_explain_reader;
ALTER TABLE explain_src ENABLE ROW LEVEL SECURITY;
CREATE POLICY not_user_1 ON explain_src FOR SELECT USING (user_id <> 1);
SET ROLE regress_explain_reader;
SELECT count(*) AS rls_hides FROM cf_explain(1, 1, 'explain_svd');
SELECT count(*) > 0 AS others_shown FROM cf_explain(2, 1, 'explain_svd');
RESET ROLE;
-- A model whose version did not record its source, and a source that is gone.
UPDATE persona.cf_model_versions SET summary = summary - 'source_columns' WHERE model = 'explain_baseline';
SELECT regress.error_of($$SELECT * FROM cf_explain(1, 1, 'explain_baseline')$$);
ALTER TABLE explain_src RENAME COLUMN rating TO stars;
SELECT regress.error_of($$SELECT * FROM cf_explain(1, 1, 'explain_svd')$$);

-- Clean up.
DROP TABLE explain_src;
SELECT regress.error_of($$SELECT * FROM cf_explain(1, 1, 'explain_svd')$$) AS dropped;
DELETE FROM persona.cf_active WHERE model LIKE 'explain\_%';
DELETE FROM persona.cf_model_versions WHERE model LIKE 'explain\_%';
REVOKE USAGE ON SCHEMA regress FROM regress_explain_reader;
DROP ROLE regress_explain_reader;
