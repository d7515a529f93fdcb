-- Campaign evaluation on the demo campaign, and its edge cases.
SELECT jsonb_pretty(campaign_metrics('spring_outdoor') - 'arms' - 'comparisons' - 'srm' #- '{satisfaction,mean_sentiment}');
-- Satisfaction: the mean sentiment of the campaign's feedback equals the per-row bert_score mean.
SELECT round((campaign_metrics('spring_outdoor') -> 'satisfaction' ->> 'mean_sentiment')::numeric, 4) AS mean_sentiment,
       round(avg(bert_score(body))::numeric, 4) AS per_row_mean
  FROM persona.feedback WHERE campaign = 'spring_outdoor';
-- Another sentiment model that does not exist: the report still comes, with the reason.
SET persona.sentiment_model = 'no_such_model';
SELECT campaign_metrics('spring_outdoor') -> 'satisfaction' AS satisfaction;
RESET persona.sentiment_model;
SELECT a ->> 'arm' AS arm, a ->> 'users_exposed' AS users_exposed, a ->> 'exposures' AS exposures,
       a ->> 'clicks' AS clicks, a ->> 'users_converted' AS users_converted, a ->> 'revenue' AS revenue
  FROM jsonb_array_elements(campaign_metrics('spring_outdoor') -> 'arms') a;
SELECT jsonb_pretty(campaign_metrics('spring_outdoor') -> 'srm');
-- Costs: by default the campaign's cost is attributed to the treated arms by exposed users;
-- arm_costs states each arm's own (an unlisted arm: control 0, others unknown, so no ROI).
SELECT a ->> 'arm' AS arm, a ->> 'cost' AS cost, round((a ->> 'roi')::numeric, 4) AS roi
  FROM jsonb_array_elements(campaign_metrics('spring_outdoor') -> 'arms') a;
UPDATE persona.campaigns SET arm_costs = '{"treatment": 1000.5}' WHERE campaign = 'spring_outdoor';
SELECT a ->> 'arm' AS arm, a ->> 'cost' AS cost, round((a ->> 'roi')::numeric, 4) AS roi,
       round(((a ->> 'revenue')::numeric - 1000.5) / 1000.5, 4) AS roi_by_hand
  FROM jsonb_array_elements(campaign_metrics('spring_outdoor') -> 'arms') a;
UPDATE persona.campaigns SET arm_costs = '{"treatment": "a lot"}' WHERE campaign = 'spring_outdoor';
SELECT regress.error_of($$SELECT campaign_metrics('spring_outdoor')$$);
SELECT regress.error_of($$UPDATE persona.campaigns SET arm_costs = '[1, 2]' WHERE campaign = 'spring_outdoor'$$);
UPDATE persona.campaigns SET arm_costs = NULL WHERE campaign = 'spring_outdoor';
SELECT (SELECT array_agg(k ORDER BY k) FROM jsonb_object_keys(c) k) AS comparison_keys
  FROM jsonb_array_elements(campaign_metrics('spring_outdoor') -> 'comparisons') c;
-- The CTR is tested with users as the unit (delta method): the same z from the events by hand,
-- V = n/(n-1) * sum((c - R e)^2) / (sum e)^2 per arm over users with an exposure or a click.
WITH per_user AS (
  SELECT arm, user_id, count(*) FILTER (WHERE event = 'click')::float8 AS c,
         count(*) FILTER (WHERE event = 'exposure')::float8 AS e
    FROM persona.campaign_events WHERE campaign = 'spring_outdoor' GROUP BY 1, 2),
arms AS (
  SELECT arm, count(*) AS n, sum(c) / sum(e) AS r, sum(e) AS se FROM per_user WHERE c > 0 OR e > 0 GROUP BY arm),
var AS (
  SELECT a.arm, a.r, a.n / (a.n - 1.0) * sum((p.c - a.r * p.e) ^ 2) / a.se ^ 2 AS v
    FROM arms a JOIN per_user p ON p.arm = a.arm AND (p.c > 0 OR p.e > 0) GROUP BY a.arm, a.r, a.n, a.se)
SELECT ctr ->> 'test' AS test,
       abs((ctr ->> 'z')::float8 - (t.r - c.r) / sqrt(t.v + c.v)) < 1e-9 AS z_matches,
       abs((ctr -> 'absolute_lift_ci' ->> 'high')::float8 - (ctr -> 'absolute_lift_ci' ->> 'low')::float8
           - 2 * 1.959963984540054 * sqrt(t.v + c.v)) < 1e-9 AS interval_matches
  FROM (SELECT campaign_metrics('spring_outdoor') -> 'comparisons' -> 0 -> 'ctr' AS ctr) m,
       var t, var c WHERE t.arm = 'treatment' AND c.arm = 'control';

-- The report agrees with a hand-written GROUP BY.
SELECT arm, count(DISTINCT user_id) FILTER (WHERE event = 'exposure') AS users_exposed,
       count(*) FILTER (WHERE event = 'exposure') AS exposures, count(*) FILTER (WHERE event = 'click') AS clicks,
       count(DISTINCT user_id) FILTER (WHERE event = 'conversion') AS users_converted,
       sum(value) FILTER (WHERE event = 'conversion') AS revenue
  FROM persona.campaign_events WHERE campaign = 'spring_outdoor' GROUP BY arm ORDER BY arm = 'control' DESC, arm;

-- Daily view.
SELECT count(*) AS rows, count(DISTINCT arm) AS arms, sum(exposures) AS exposures, sum(clicks) AS clicks
  FROM campaign_metrics_daily('spring_outdoor');

-- Audience: k unexposed users, ranked by affinity.
SELECT count(*) AS n, min(rank) AS first, max(rank) AS last FROM campaign_audience('spring_outdoor', 10);
SELECT count(*) AS exposed_in_audience FROM campaign_audience('spring_outdoor', 50) a
  JOIN persona.campaign_events e ON e.user_id = a.user_id AND e.campaign = 'spring_outdoor';

-- Uplift metrics of a targeting score.
SELECT (SELECT array_agg(k ORDER BY k) FROM jsonb_object_keys(u) k) AS keys, u ->> 'users' AS users
  FROM campaign_uplift('spring_outdoor') u;

-- Edge cases: a campaign without control, one user, zero exposures, events without arm.
INSERT INTO persona.campaigns (campaign, cost) VALUES ('solo', 100), ('tiny', NULL), ('empty', 10);
INSERT INTO persona.campaign_events (campaign, user_id, arm, event, value) VALUES
  ('solo', 1, 'treatment', 'exposure', NULL), ('solo', 2, 'treatment', 'exposure', NULL),
  ('solo', 2, 'treatment', 'conversion', 20), ('solo', 3, NULL, 'exposure', NULL),
  ('tiny', 1, 'control', 'exposure', NULL), ('tiny', 2, 'treatment', 'exposure', NULL),
  ('tiny', 2, 'treatment', 'conversion', 5), ('tiny', 3, 'treatment', 'conversion', 7);
SELECT campaign_metrics('solo') -> 'control_arm' AS control, jsonb_array_length(campaign_metrics('solo') -> 'comparisons') AS comparisons,
       jsonb_array_length(campaign_metrics('solo') -> 'data_warnings') > 0 AS warns_about_missing_arm;
SELECT c -> 'conversion_rate' ->> 'p_value' AS p_value, c -> 'revenue_per_user' ->> 't' AS welch_t
  FROM jsonb_array_elements(campaign_metrics('tiny') -> 'comparisons') c;
SELECT w ->> 'code' AS warning FROM jsonb_array_elements(campaign_metrics('tiny') -> 'data_warnings') w;
SELECT jsonb_array_length(campaign_metrics('empty') -> 'arms') AS arms;

-- Mistakes.
SELECT regress.error_of($$SELECT campaign_metrics('no_such_campaign')$$);
SELECT regress.error_of($$SELECT * FROM campaign_audience('solo', 5)$$);
SELECT regress.error_of($$SELECT * FROM campaign_audience('spring_outdoor', 0)$$);
-- NULL where a value is needed: 22004 naming the argument (these functions cannot be STRICT:
-- a NULL items or scores argument has a meaning).
SELECT regress.error_of($$SELECT * FROM campaign_audience(NULL)$$);
SELECT regress.error_of($$SELECT * FROM campaign_audience('spring_outdoor', NULL)$$);
SELECT regress.error_of($$SELECT campaign_uplift(NULL)$$);
SELECT regress.error_of($$SELECT campaign_uplift('spring_outdoor', model => NULL)$$);
UPDATE persona.campaigns SET planned_split = '{"treatment": -1}' WHERE campaign = 'solo';
SELECT regress.error_of($$SELECT campaign_metrics('solo')$$);
SET persona.significance_level = 0.9;
