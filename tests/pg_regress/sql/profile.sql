-- User portraits.
SELECT p -> 'user_id' AS user_id, p -> 'activity' -> 'ratings' AS ratings, p ->> 'segment' AS segment,
       (p ->> 'churn_risk')::float8 BETWEEN 0 AND 1 AS churn_risk_is_probability,
       jsonb_array_length(p -> 'taste') AS categories, jsonb_array_length(p -> 'next' -> 'items') AS next_items,
       (SELECT array_agg(k ORDER BY k) FROM jsonb_object_keys(p) k) AS keys
  FROM user_profile(1, as_of => '2026-05-01') p;
-- The top taste category is the one the user rated most.
SELECT (user_profile(1) -> 'taste' -> 0 ->> 'category') = (
  SELECT i.category FROM persona.ratings r JOIN persona.items i USING (item_id) WHERE r.user_id = 1
   GROUP BY i.category ORDER BY count(*) DESC, avg(r.rating) DESC, i.category LIMIT 1) AS top_category_matches;
-- An unknown user is a prospect with no history; NULL gives NULL.
SELECT p ->> 'segment' AS segment, p -> 'activity' -> 'ratings' AS ratings, p -> 'churn_risk' AS churn_risk
  FROM user_profile(99999999) p;
SELECT user_profile(NULL) IS NULL AS null_user;
SELECT regress.error_of($$SELECT user_profile(1, NULL)$$);
-- Without a model there is no "next".
SELECT user_profile(1, 'no_model') -> 'next' AS next;
