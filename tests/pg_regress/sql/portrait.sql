-- Portraits v2: profile_train fits BG/NBD, Gamma-Gamma and RFM quintiles on an orders relation,
-- user_profile gains the lifetime and rfm sections (each checked here against its formula by
-- hand; the core equals lifetimes 0.11.3 in crates/persona-core/tests/lifetime_reference.rs).
SET extra_float_digits = 0;
-- The demo fills persona.orders with the campaign's conversions and the purchases before it.
SELECT count(*) AS orders, count(DISTINCT user_id) AS customers FROM persona.orders;
-- Without a portrait model the sections say why, and churn risk is the heuristic one.
SELECT p -> 'lifetime' AS lifetime, p ->> 'churn_model' AS churn_model
  FROM user_profile(1, as_of => '2026-04-15') p;

SELECT jsonb_pretty(profile_train(options => '{"as_of": "2026-04-15"}')
         - 'seconds' - 'bgnbd' - 'gamma_gamma' - 'rfm_quintiles' - 'taste_clusters'
         - 'taste_clusters_unavailable') AS report;
SELECT model, active_version, orders, versions, owner::text FROM persona.profile_models;

-- A customer with the most purchase days: the sections, and P(alive) and the RFM scores by hand
-- from the model's parameters and the customer's orders.
CREATE TEMP TABLE top AS
  SELECT user_id FROM persona.orders GROUP BY user_id
   ORDER BY count(DISTINCT (occurred_at AT TIME ZONE 'UTC')::date) DESC, user_id LIMIT 1;
CREATE TEMP TABLE top_summary AS
  WITH d AS (SELECT (occurred_at AT TIME ZONE 'UTC')::date AS day, sum(value) AS v
               FROM persona.orders WHERE user_id = (SELECT user_id FROM top)
                AND occurred_at <= '2026-04-15' GROUP BY 1)
  SELECT count(*) - 1 AS x, max(day) - min(day) AS tx, DATE '2026-04-15' - min(day) AS t,
         sum(v)::float8 AS total FROM d;
SELECT (SELECT user_id FROM top) AS user_id, p -> 'lifetime' -> 'purchase_days' AS purchase_days,
       abs((p -> 'lifetime' ->> 'p_alive')::float8
           - 1 / (1 + (m.a / (m.b + s.x - 1)) * ((m.alpha + s.t) / (m.alpha + s.tx)) ^ (m.r + s.x))) < 1e-4 AS p_alive_by_hand,
       abs((p -> 'lifetime' ->> 'churn_risk')::float8 - (1 - (p -> 'lifetime' ->> 'p_alive')::float8)) < 1e-9 AS churn_is_not_alive,
       p ->> 'churn_model' AS churn_model, p -> 'churn_risk' = p -> 'lifetime' -> 'churn_risk' AS churn_risk_from_model,
       (p -> 'lifetime' -> 'expected_purchases' ->> 'days_30')::float8
         <= (p -> 'lifetime' -> 'expected_purchases' ->> 'days_90')::float8 AS expected_grows,
       (p -> 'lifetime' ->> 'clv_12_months')::float8 > 0 AS has_clv,
       (p -> 'rfm' ->> 'total_value')::float8 = s.total AS total_matches,
       (p -> 'rfm' ->> 'm')::int = 1 + (SELECT count(*) FROM jsonb_array_elements_text(v.params -> 'rfm' -> 'monetary') e
                                         WHERE e::float8 < s.total) AS m_by_hand,
       p -> 'rfm' ->> 'segment' AS segment
  FROM user_profile((SELECT user_id FROM top), as_of => '2026-04-15') p, top_summary s,
       persona.profile_model_versions v,
       LATERAL (SELECT (v.params -> 'bgnbd' ->> 'r')::float8 AS r, (v.params -> 'bgnbd' ->> 'alpha')::float8 AS alpha,
                       (v.params -> 'bgnbd' ->> 'a')::float8 AS a, (v.params -> 'bgnbd' ->> 'b')::float8 AS b) m
 WHERE v.model = 'default' AND v.version = 1;
-- A one-time buyer is alive with probability 1 (BG/NBD: no repeat, no drop-out yet); a user
-- without orders has no lifetime section.
SELECT p -> 'lifetime' ->> 'p_alive' AS p_alive, p -> 'lifetime' ->> 'purchase_days' AS purchase_days
  FROM user_profile((SELECT user_id FROM persona.orders GROUP BY 1 HAVING count(*) = 1 ORDER BY 1 LIMIT 1),
                    as_of => '2026-04-15') p;
SELECT user_profile(u, as_of => '2026-04-15') -> 'lifetime' AS lifetime
  FROM (SELECT min(user_id) AS u FROM persona.users WHERE user_id NOT IN (SELECT user_id FROM persona.orders)) x;

-- A fit that does not converge is an error with the reason, and the active version stays. By
-- 2026-06-01 no demo customer has bought for six weeks, and their few repeat purchases do not
-- identify the drop-out process (lifetimes' BetaGeoFitter fails on these data too); lifetimes'
-- penalizer regularises it.
SELECT regress.error_of($$SELECT profile_train(options => '{"as_of": "2026-06-01"}')$$);
SELECT active_version FROM persona.profile_models WHERE model = 'default';
-- Versions: a second fit (a later as_of, a penalizer), rollback to the first, unknown versions.
SELECT p ->> 'version' AS version, p ->> 'penalizer' AS penalizer
  FROM profile_train(options => '{"as_of": "2026-06-01", "discount_rate": 0.02, "penalizer": 0.001}') p;
SELECT (user_profile((SELECT user_id FROM top), as_of => '2026-06-01') -> 'lifetime' ->> 'discount_rate') AS rate;
SELECT profile_deploy('default', 1);
SELECT (user_profile((SELECT user_id FROM top), as_of => '2026-06-01') -> 'lifetime' ->> 'model_version') AS version;
SELECT regress.error_of($$SELECT profile_deploy('default', 7)$$);
SELECT regress.error_of($$SELECT profile_deploy('nope', 1)$$);

-- Taste clusters: k-means on the user factors of a cf model, named by the categories its users
-- rate over-proportionally; deterministic for a seed.
SELECT cf_train(algorithm => 'svd', model => 'taste', options => '{"seed": 3, "test_fraction": 0}') IS NOT NULL AS trained;
SELECT p -> 'taste_clusters' ->> 'k' AS k, jsonb_array_length(p -> 'taste_clusters' -> 'names') AS names,
       (SELECT sum(x::int) FROM jsonb_array_elements_text(p -> 'taste_clusters' -> 'sizes') x)
         = (SELECT count(DISTINCT user_id) FROM persona.ratings) AS every_rater_clustered
  FROM profile_train('taste', '{"as_of": "2026-04-15", "clusters": {"cf_model": "taste", "k": 4, "seed": 7}}') p;
SELECT profile_train('taste', '{"as_of": "2026-04-15", "clusters": {"cf_model": "taste", "k": 4, "seed": 7}}') ->> 'version' AS version;
SELECT (SELECT params -> 'taste' -> 'centroids' FROM persona.profile_model_versions WHERE model = 'taste' AND version = 1)
     = (SELECT params -> 'taste' -> 'centroids' FROM persona.profile_model_versions WHERE model = 'taste' AND version = 2) AS same_seed_same_clusters;
-- In a portrait: the user's cluster (its nearest centroid), the cluster's name, and the cf model's
-- most similar users.
SELECT (t ->> 'cluster')::int BETWEEN 1 AND 4 AS cluster_in_range, t ->> 'of' AS of,
       t ->> 'name' = (SELECT params -> 'taste' -> 'names' ->> ((t ->> 'cluster')::int - 1)
                         FROM persona.profile_model_versions WHERE model = 'taste' AND version = 2) AS name_matches,
       ARRAY(SELECT (x ->> 'user_id')::bigint FROM jsonb_array_elements(t -> 'similar_users') x)
         = ARRAY(SELECT user_id FROM cf_similar_users(1, 5, 'taste') ORDER BY rank) AS similar_users_match
  FROM (SELECT user_profile(1, 'taste', '2026-04-15') -> 'taste_cluster' AS t) q;
-- k chosen by silhouette over 2..8: the chosen k has the highest silhouette.
SELECT (p -> 'taste_clusters' ->> 'k')::int = (SELECT (s ->> 0)::int FROM jsonb_array_elements(p -> 'taste_clusters' -> 'silhouettes') s
                                               ORDER BY (s ->> 1)::float8 DESC LIMIT 1) AS best_silhouette,
       jsonb_array_length(p -> 'taste_clusters' -> 'silhouettes') AS ks_tried
  FROM profile_train('taste', '{"as_of": "2026-04-15", "clusters": {"cf_model": "taste"}}') p;
-- A retrained cf model makes the clusters stale: the portrait says so.
SELECT cf_train(algorithm => 'svd', model => 'taste', options => '{"seed": 4, "test_fraction": 0}') IS NOT NULL AS retrained;
SELECT user_profile(1, 'taste', '2026-04-15') -> 'taste_cluster' ->> 'reason' AS stale;
-- Without a usable cf model the default fit says why; asked for explicitly, it is an error.
SELECT p ->> 'taste_clusters_unavailable' AS why FROM profile_train('no_cf_here', '{"as_of": "2026-04-15"}') p;
SELECT cf_train(algorithm => 'knn_item', model => 'taste_knn', options => '{"test_fraction": 0}') IS NOT NULL AS knn;
SELECT regress.error_of($$SELECT profile_train('x', '{"as_of": "2026-04-15", "clusters": {"cf_model": "taste_knn"}}')$$);
SELECT regress.error_of($$SELECT profile_train('x', '{"as_of": "2026-04-15", "clusters": {"k": 1}}')$$);
SELECT regress.error_of($$SELECT profile_train('x', '{"as_of": "2026-04-15", "clusters": {"kk": 3}}')$$);
SELECT regress.error_of($$SELECT profile_train('x', '{"as_of": "2026-04-15", "clusters": true}')$$);
SELECT p -> 'taste_clusters' AS none FROM profile_train('no_clusters', '{"as_of": "2026-04-15", "clusters": false}') p;

-- user_profiles: every user's portrait in one call, each equal to user_profile's.
SELECT count(*) AS users,
       count(*) FILTER (WHERE p.profile = user_profile(p.user_id, as_of => '2026-04-15')) AS equal_to_user_profile,
       count(*) FILTER (WHERE p.profile -> 'lifetime' ? 'p_alive') AS with_lifetime,
       (SELECT count(*) FROM persona.users) AS demo_users
  FROM user_profiles(as_of => '2026-04-15') p;
SELECT user_id, profile = user_profile(user_id, 'default', '2026-04-15') AS same
  FROM user_profiles(ARRAY[1, 171, 99999999, NULL], as_of => '2026-04-15') ORDER BY 1;
SELECT count(*) AS none FROM user_profiles(ARRAY[]::bigint[]);
SELECT regress.error_of($$SELECT * FROM user_profiles(model => NULL)$$);

-- Bad orders: NULL and negative values and future orders are left out and counted; a relation
-- without the columns names the option; no repeat buyers at all is an error with the reason and
-- the previous version stays active.
CREATE TABLE regress.bad_orders AS SELECT user_id, occurred_at, value FROM persona.orders;
INSERT INTO regress.bad_orders VALUES (1, '2026-04-01', NULL), (2, '2026-04-02', -5), (3, '2030-01-01', 10);
SELECT profile_train('bad', '{"orders": "regress.bad_orders", "as_of": "2026-04-15"}') -> 'orders_skipped' AS skipped;
-- The bad orders changed nothing else: the same parameters as on persona.orders.
SELECT (SELECT params -> 'bgnbd' FROM persona.profile_model_versions WHERE model = 'bad' AND version = 1)
     = (SELECT params -> 'bgnbd' FROM persona.profile_model_versions WHERE model = 'default' AND version = 1) AS same_fit;
CREATE TABLE regress.one_time AS SELECT DISTINCT ON (user_id) user_id, occurred_at, value FROM persona.orders;
SELECT regress.error_of($$SELECT profile_train('bad', '{"orders": "regress.one_time", "as_of": "2026-04-15"}')$$);
SELECT active_version FROM persona.profile_models WHERE model = 'bad';
-- Repeat buyers whose repeat days are worth nothing: Gamma-Gamma is not estimable, said so; the
-- purchase model stands and the portraits have no value or CLV.
CREATE TABLE regress.free_repeats AS
  SELECT user_id, occurred_at, CASE WHEN row_number() OVER (PARTITION BY user_id ORDER BY occurred_at) = 1
                                    THEN value ELSE 0 END AS value FROM persona.orders;
SELECT p ->> 'gamma_gamma_unavailable' AS why, p -> 'gamma_gamma' AS gamma_gamma
  FROM profile_train('free', '{"orders": "regress.free_repeats", "as_of": "2026-04-15"}') p;
CREATE TABLE regress.no_value AS SELECT user_id, occurred_at FROM persona.orders;
SELECT regress.error_of($$SELECT profile_train('bad', '{"orders": "regress.no_value"}')$$);
SELECT regress.error_of($$SELECT profile_train('bad', '{"orders": "regress.nothing"}')$$);
SELECT regress.error_of($$SELECT profile_train('bad', '{"ordres": "persona.orders"}')$$);
SELECT regress.error_of($$SELECT profile_train('bad', '{"discount_rate": 2}')$$);
SELECT regress.error_of($$SELECT profile_train('bad', '{"as_of": "soon"}')$$);
CREATE TABLE regress.no_orders (user_id bigint, occurred_at timestamptz, value numeric);
SELECT regress.error_of($$SELECT profile_train('bad', '{"orders": "regress.no_orders"}')$$);

-- Privileges: the model is its owner's until shared; a role it is shared with but that cannot
-- read the orders relation gets the sections' reason, not the data.
CREATE ROLE regress_portrait_reader;
GRANT USAGE ON SCHEMA regress TO regress_portrait_reader;
GRANT SELECT ON persona.ratings, persona.items, persona.campaign_events, persona.feedback TO regress_portrait_reader;
SET ROLE regress_portrait_reader;
SELECT user_profile(1, as_of => '2026-04-15') -> 'lifetime' AS not_shared;
RESET ROLE;
SELECT profile_model_grant('default', 'regress_portrait_reader');
SET ROLE regress_portrait_reader;
SELECT user_profile(1, as_of => '2026-04-15') -> 'lifetime' AS shared_without_orders;
SELECT regress.error_of($$SELECT profile_train('mine')$$);
RESET ROLE;
SELECT profile_model_revoke('default', 'regress_portrait_reader');
REVOKE USAGE ON SCHEMA regress FROM regress_portrait_reader;
REVOKE SELECT ON persona.ratings, persona.items, persona.campaign_events, persona.feedback FROM regress_portrait_reader;
DROP ROLE regress_portrait_reader;
