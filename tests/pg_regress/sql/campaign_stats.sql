-- campaign_metrics' options: relative effects, sequential, Bayesian and CUPED results, capping,
-- multiple-testing corrections and segments, each checked against the same quantity computed by
-- hand in SQL from the events (the core functions themselves equal gbstats 0.8.0 to 1e-6 in
-- crates/persona-core/tests/gbstats_reference.rs); then campaign_power and bad input.
SET extra_float_digits = 0;
-- A campaign of 4000 users: half control, half treatment, each with a latent propensity that
-- drives both their purchases in February (another campaign, before starts_at) and in March.
CREATE TABLE regress.v2_users AS
  SELECT u AS user_id, (u % 2 = 0) AS treated,
         (ARRAY['de', 'fr', 'it', 'es', 'nl'])[1 + (u % 7) % 5] AS country,
         CASE WHEN u % 10 = 0 THEN NULL ELSE ((u * 37) % 100)::float8 END AS last_year_spend,
         ((u * 7919) % 1000) / 1000.0 AS propensity
    FROM generate_series(1, 4000) u;
CREATE TABLE regress.v2_events (campaign text, user_id bigint, arm text, event text, value numeric,
                                occurred_at timestamptz);
INSERT INTO regress.v2_events
  SELECT 'v2_test', user_id, CASE WHEN treated THEN 'treatment' ELSE 'control' END, 'exposure', NULL,
         '2026-03-02'::timestamptz + (user_id % 20) * interval '1 day'
    FROM regress.v2_users;
INSERT INTO regress.v2_events
  SELECT 'v2_test', user_id, CASE WHEN treated THEN 'treatment' ELSE 'control' END, 'click', NULL,
         '2026-03-02'::timestamptz + (user_id % 20) * interval '1 day' + interval '1 minute'
    FROM regress.v2_users WHERE (user_id * 13) % 100 < 30 + 10 * propensity;
-- Conversions: more likely with a high propensity, a little more in the treatment; values from
-- 5 to 200, and one whale.
INSERT INTO regress.v2_events
  SELECT 'v2_test', user_id, CASE WHEN treated THEN 'treatment' ELSE 'control' END, 'conversion',
         CASE WHEN user_id = 42 THEN 50000 ELSE 5 + (user_id * 31) % 196 END,
         '2026-03-03'::timestamptz + (user_id % 20) * interval '1 day'
    FROM regress.v2_users
   WHERE ((user_id * 7) % 100) / 100.0 < 0.08 + 0.25 * propensity + CASE WHEN treated THEN 0.03 ELSE 0 END;
-- February: the same users' purchases in an earlier campaign (the CUPED lookback window).
INSERT INTO regress.v2_events
  SELECT 'february', user_id, 'all', 'conversion', 5 + (user_id * 17) % 150,
         '2026-02-10'::timestamptz + (user_id % 15) * interval '1 day'
    FROM regress.v2_users WHERE ((user_id * 11) % 100) / 100.0 < 0.05 + 0.3 * propensity;
-- Purchases before the window: must not count.
INSERT INTO regress.v2_events
  SELECT 'january', user_id, 'all', 'conversion', 1000, '2026-01-05'
    FROM regress.v2_users WHERE user_id % 3 = 0;
INSERT INTO persona.campaigns (campaign, control_arm, events, starts_at)
  VALUES ('v2_test', 'control', 'regress.v2_events', '2026-03-01');

-- Without options (or with '{}') the report is exactly 0.2's.
SELECT campaign_metrics('v2_test') = campaign_metrics('v2_test', '{}') AS same_report,
       campaign_metrics('v2_test') ? 'analysis' AS has_analysis,
       (SELECT array_agg(k ORDER BY k) FROM jsonb_object_keys(campaign_metrics('v2_test') -> 'comparisons' -> 0 -> 'conversion_rate') k) AS keys;

-- Per-user values by hand, for the checks below.
CREATE VIEW regress.v2_per_user AS
  SELECT user_id, arm, (count(*) FILTER (WHERE event = 'conversion') > 0)::int::float8 AS conv,
         COALESCE(sum(value) FILTER (WHERE event = 'conversion'), 0)::float8 AS revenue
    FROM regress.v2_events WHERE campaign = 'v2_test' GROUP BY 1, 2;

-- difference = relative: gbstats' relative t-test, (p_t - p_c)/p_c with the delta-method
-- variance p_t(1-p_t)/(p_c^2 n_t) + p_c(1-p_c) p_t^2/(p_c^4 n_c).
WITH a AS (SELECT avg(conv) FILTER (WHERE arm = 'control') AS pc, avg(conv) FILTER (WHERE arm = 'treatment') AS pt,
                  count(*) FILTER (WHERE arm = 'control') AS nc, count(*) FILTER (WHERE arm = 'treatment') AS nt
             FROM regress.v2_per_user),
     r AS (SELECT campaign_metrics('v2_test', '{"difference": "relative"}') -> 'comparisons' -> 0 -> 'conversion_rate' -> 'effect' AS e)
SELECT r.e ->> 'difference' AS difference,
       abs((r.e ->> 'effect')::float8 - (pt - pc) / pc) < 1e-10 AS effect_matches,
       abs(((r.e -> 'ci' ->> 'high')::float8 - (r.e -> 'ci' ->> 'low')::float8) / 2
           - 1.9606 * sqrt(pt * (1 - pt) / (pc ^ 2 * nt) + pc * (1 - pc) * pt ^ 2 / (pc ^ 4 * nc))) < 1e-3 AS width_matches,
       round((r.e ->> 'p_value')::numeric, 6) AS p_value, r.e ->> 'significant' AS significant
  FROM a, r;
-- Absolute differences are the default of every added object.
SELECT c -> 'revenue_per_user' -> 'effect' ->> 'difference' AS difference,
       abs((c -> 'revenue_per_user' -> 'effect' ->> 'effect')::float8 - (c -> 'revenue_per_user' ->> 'difference')::float8) < 1e-9 AS equals_difference
  FROM (SELECT campaign_metrics('v2_test', '{"difference": "absolute"}') -> 'comparisons' -> 0 AS c) m;

-- sequential: the always-valid interval (Waudby-Smith et al. eq. 9) is wider than the
-- fixed-sample one and its p-value larger; the formula by hand for the conversion rate.
WITH a AS (SELECT avg(conv) FILTER (WHERE arm = 'control') AS pc, avg(conv) FILTER (WHERE arm = 'treatment') AS pt,
                  count(*) FILTER (WHERE arm = 'control') AS nc, count(*) FILTER (WHERE arm = 'treatment') AS nt
             FROM regress.v2_per_user),
     k AS (SELECT sqrt((-2 * ln(0.05) + ln(-2 * ln(0.05) + 1)) / 5000) AS rho),
     r AS (SELECT campaign_metrics('v2_test', '{"sequential": true, "difference": "absolute"}') -> 'comparisons' -> 0 -> 'conversion_rate' AS m)
SELECT abs((r.m -> 'sequential' -> 'ci' ->> 'high')::float8 - (pt - pc)
           - sqrt((pt * (1 - pt) / nt + pc * (1 - pc) / nc) * (nt + nc))
             * sqrt(2 * ((nt + nc) * rho ^ 2 + 1) * ln(sqrt((nt + nc) * rho ^ 2 + 1) / 0.05) / ((nt + nc) * rho) ^ 2)) < 1e-10 AS ci_matches,
       (r.m -> 'sequential' ->> 'p_value')::float8 > (r.m -> 'effect' ->> 'p_value')::float8 AS p_larger,
       (r.m -> 'sequential' -> 'ci' ->> 'high')::float8 > (r.m -> 'effect' -> 'ci' ->> 'high')::float8 AS ci_wider
  FROM a, k, r;
-- A larger tuning parameter tightens the interval at this sample size.
SELECT (a.s -> 'ci' ->> 'high')::float8 - (a.s -> 'ci' ->> 'low')::float8
       <> (b.s -> 'ci' ->> 'high')::float8 - (b.s -> 'ci' ->> 'low')::float8 AS tuning_used
  FROM (SELECT campaign_metrics('v2_test', '{"sequential": true}') -> 'comparisons' -> 0 -> 'conversion_rate' -> 'sequential' AS s) a,
       (SELECT campaign_metrics('v2_test', '{"sequential": true, "sequential_tuning": 500}') -> 'comparisons' -> 0 -> 'conversion_rate' -> 'sequential' AS s) b;

-- bayesian: with the improper prior the posterior mean is the observed difference, chance to win
-- is Phi(effect/sd), risks are expected losses (their difference is the effect).
SELECT abs((b ->> 'effect')::float8 - (m ->> 'absolute_lift')::float8) < 1e-12 AS mean_is_lift,
       (b ->> 'chance_to_win')::float8 > 0.5 AS likely_better, b ->> 'prior' AS prior,
       abs((b -> 'risk' ->> 'control')::float8 - (b -> 'risk' ->> 'treatment')::float8 - (b ->> 'effect')::float8) < 1e-12 AS risks_consistent
  FROM (SELECT c -> 'conversion_rate' AS m, c -> 'conversion_rate' -> 'bayesian' AS b
          FROM (SELECT campaign_metrics('v2_test', '{"bayesian": true}') -> 'comparisons' -> 0 AS c) x) y;
-- A proper prior centred on 0 shrinks the effect toward 0 (precision-weighted mean).
SELECT (p.b ->> 'effect')::float8 < (i.b ->> 'effect')::float8 AS shrunk, p.b ->> 'prior' AS prior
  FROM (SELECT campaign_metrics('v2_test', '{"bayesian": true, "prior": {"mean": 0, "variance": 0.0001}}') -> 'comparisons' -> 0 -> 'conversion_rate' -> 'bayesian' AS b) p,
       (SELECT campaign_metrics('v2_test', '{"bayesian": true, "prior": "improper"}') -> 'comparisons' -> 0 -> 'conversion_rate' -> 'bayesian' AS b) i;

-- cuped with a lookback: the covariate is each user's February purchase (converted, revenue) in
-- the 30 days before starts_at; theta = cov(post, pre)/var(pre) pooled over both arms.
CREATE VIEW regress.v2_pre AS
  SELECT u.user_id, u.arm, u.conv, u.revenue,
         (count(e.*) FILTER (WHERE e.event = 'conversion') > 0)::int::float8 AS pre_conv,
         COALESCE(sum(e.value) FILTER (WHERE e.event = 'conversion'), 0)::float8 AS pre_revenue
    FROM regress.v2_per_user u
    LEFT JOIN regress.v2_events e ON e.user_id = u.user_id
         AND e.occurred_at >= '2026-03-01'::timestamptz - interval '30 days' AND e.occurred_at < '2026-03-01'
   GROUP BY 1, 2, 3, 4;
WITH r AS (SELECT campaign_metrics('v2_test', '{"cuped": {"lookback_days": 30}}') AS r),
     h AS (SELECT covar_samp(conv, pre_conv) / (avg(pre_conv) * (1 - avg(pre_conv))) AS theta_conv,
                  covar_samp(revenue, pre_revenue) / var_samp(pre_revenue) AS theta_rev FROM regress.v2_pre)
SELECT abs((r -> 'comparisons' -> 0 -> 'conversion_rate' -> 'cuped' ->> 'theta')::float8 - theta_conv) < 1e-9 AS theta_conversion,
       abs((r -> 'comparisons' -> 0 -> 'revenue_per_user' -> 'cuped' ->> 'theta')::float8 - theta_rev) < 1e-9 AS theta_revenue,
       round((r -> 'comparisons' -> 0 -> 'conversion_rate' -> 'cuped' ->> 'theta')::numeric, 4) AS theta,
       (r -> 'comparisons' -> 0 -> 'conversion_rate' -> 'cuped' -> 'ci' ->> 'high')::float8
         - (r -> 'comparisons' -> 0 -> 'conversion_rate' -> 'cuped' -> 'ci' ->> 'low')::float8
       < (r -> 'comparisons' -> 0 -> 'conversion_rate' -> 'absolute_lift_ci' ->> 'high')::float8
         - (r -> 'comparisons' -> 0 -> 'conversion_rate' -> 'absolute_lift_ci' ->> 'low')::float8 AS narrower,
       r -> 'comparisons' -> 0 -> 'ctr' -> 'cuped' ->> 'undefined' AS ctr_cuped,
       jsonb_pretty(r -> 'analysis' -> 'cuped') AS summary
  FROM r, h;
-- With cuped, sequential and Bayesian results are computed on the adjusted statistics.
SELECT c -> 'conversion_rate' -> 'sequential' ->> 'cuped' AS sequential_adjusted,
       c -> 'conversion_rate' -> 'bayesian' ->> 'cuped' AS bayesian_adjusted
  FROM (SELECT campaign_metrics('v2_test', '{"cuped": {"lookback_days": 30}, "sequential": true, "bayesian": true}') -> 'comparisons' -> 0 AS c) m;
-- cuped from the app's own relation: users without a value (every tenth) take the mean of those
-- with one, and the report says how many.
WITH r AS (SELECT campaign_metrics('v2_test', '{"cuped": {"relation": "regress.v2_users", "column": "last_year_spend"}}') AS r)
SELECT r -> 'analysis' -> 'cuped' ->> 'users_without_covariate' AS without,
       abs((r -> 'analysis' -> 'cuped' ->> 'imputed_value')::float8 - (SELECT avg(last_year_spend) FROM regress.v2_users)) < 1e-9 AS imputed_is_mean,
       (r -> 'comparisons' -> 0 -> 'revenue_per_user' -> 'cuped' ->> 'theta') IS NOT NULL AS has_theta
  FROM r;

-- capping: the whale (50,000) is capped at the 99th percentile of exposed users' revenue; the
-- revenue statistics use min(revenue, cap), the arm's total revenue stays as it is.
WITH r AS (SELECT campaign_metrics('v2_test', '{"capping": {"type": "percentile", "value": 0.99}}') AS r),
     h AS (SELECT percentile_cont(0.99) WITHIN GROUP (ORDER BY revenue) AS cap FROM regress.v2_per_user)
SELECT abs((r -> 'analysis' -> 'capping' ->> 'cap')::float8 - h.cap) < 1e-9 AS cap_matches,
       abs((r -> 'arms' -> 0 ->> 'revenue_per_user')::float8
           - (SELECT avg(LEAST(revenue, h.cap)) FROM regress.v2_per_user WHERE arm = 'control')) < 1e-9 AS capped_mean,
       (r -> 'arms' -> 0 ->> 'revenue')::float8 = (SELECT sum(revenue) FROM regress.v2_per_user WHERE arm = 'control') AS total_uncapped,
       r -> 'analysis' -> 'capping' -> 'users_capped' AS users_capped
  FROM r, h;
SELECT r -> 'analysis' -> 'capping' ->> 'cap' AS cap,
       (r -> 'arms' -> 0 ->> 'revenue_per_user')::float8
       < (campaign_metrics('v2_test') -> 'arms' -> 0 ->> 'revenue_per_user')::float8 AS lower_mean
  FROM (SELECT campaign_metrics('v2_test', '{"capping": {"type": "absolute", "value": 100}}') AS r) m;

-- correction: every p-value gains its adjusted value (Holm: never smaller); families by kind.
WITH r AS (SELECT campaign_metrics('v2_test', '{"correction": "holm", "sequential": true}') AS r)
SELECT m.key AS metric, (m.value ->> 'p_adjusted')::float8 >= (m.value ->> 'p_value')::float8 AS not_smaller,
       (m.value -> 'sequential' ->> 'p_adjusted')::float8 >= (m.value -> 'sequential' ->> 'p_value')::float8 AS sequential_not_smaller,
       r -> 'analysis' -> 'correction' ->> 'method' AS method
  FROM r, jsonb_each(r -> 'comparisons' -> 0) m WHERE jsonb_typeof(m.value) = 'object' ORDER BY 1;
-- One comparison of three metrics: Holm multiplies the smallest p-value by 3 (capped at 1).
SELECT round(least(1, 3 * least((c -> 'conversion_rate' ->> 'p_value')::float8, (c -> 'ctr' ->> 'p_value')::float8,
                                (c -> 'revenue_per_user' ->> 'p_value')::float8))::numeric, 9)
       = round(least((c -> 'conversion_rate' ->> 'p_adjusted')::float8, (c -> 'ctr' ->> 'p_adjusted')::float8,
                     (c -> 'revenue_per_user' ->> 'p_adjusted')::float8)::numeric, 9) AS holm_smallest
  FROM (SELECT campaign_metrics('v2_test', '{"correction": "holm"}') -> 'comparisons' -> 0 AS c) m;

-- segments: the largest max segments, the rest as (other), each with its own report and SRM
-- check; users add up to the campaign's.
WITH r AS (SELECT campaign_metrics('v2_test', '{"segments": {"relation": "regress.v2_users", "column": "country", "max": 3}}') AS r)
SELECT g ->> 'segment' AS segment, g ->> 'users' AS users, g ->> 'values' AS "values",
       (SELECT sum((a ->> 'users_exposed')::int) FROM jsonb_array_elements(g -> 'arms') a) AS arm_users,
       g -> 'srm' ->> 'p_value' IS NOT NULL AS has_srm, jsonb_array_length(g -> 'comparisons') AS comparisons
  FROM r, jsonb_array_elements(r -> 'segments' -> 'groups') g;
SELECT (SELECT sum((g ->> 'users')::int) FROM jsonb_array_elements(r -> 'segments' -> 'groups') g)
       = (SELECT count(*) FROM regress.v2_users) AS users_add_up,
       r -> 'segments' ->> 'distinct_values' AS distinct_values
  FROM (SELECT campaign_metrics('v2_test', '{"segments": {"relation": "regress.v2_users", "column": "country", "max": 3}}') AS r) m;
-- A segment with one user, and users absent from the segment relation: (none).
CREATE TABLE regress.v2_tiny_segments AS SELECT 1::bigint AS user_id, 'solo'::text AS tier
  UNION ALL SELECT u, 'many' FROM generate_series(2, 3000) u;
SELECT g ->> 'segment' AS segment, g ->> 'users' AS users, jsonb_array_length(g -> 'arms') AS arms,
       g -> 'comparisons' -> 0 -> 'conversion_rate' ->> 'p_value' AS p_value
  FROM jsonb_array_elements(campaign_metrics('v2_test', '{"segments": {"relation": "regress.v2_tiny_segments", "column": "tier"}}') -> 'segments' -> 'groups') g;
-- 100,000 distinct values are capped to max.
CREATE TABLE regress.v2_unique AS SELECT u::bigint AS user_id, 'segment ' || u AS label FROM generate_series(1, 100000) u;
INSERT INTO regress.v2_events
  SELECT 'wide', u, CASE WHEN u % 2 = 0 THEN 'treatment' ELSE 'control' END, 'exposure', NULL, '2026-03-02'
    FROM generate_series(1, 100000) u;
INSERT INTO persona.campaigns (campaign, events) VALUES ('wide', 'regress.v2_events');
SELECT jsonb_array_length(r -> 'segments' -> 'groups') AS groups, r -> 'segments' ->> 'distinct_values' AS distinct_values,
       r -> 'segments' -> 'groups' -> 5 ->> 'segment' AS last, r -> 'segments' -> 'groups' -> 5 ->> 'values' AS merged
  FROM (SELECT campaign_metrics('wide', '{"segments": {"relation": "regress.v2_unique", "column": "label", "max": 5}}') AS r) m;

-- Degenerate data: a control without conversions gives no relative effect (gbstats refuses a
-- zero baseline), with the reason; an arm without variance likewise.
INSERT INTO regress.v2_events
  SELECT 'zero', u, CASE WHEN u % 2 = 0 THEN 'treatment' ELSE 'control' END, 'exposure', NULL, '2026-03-02'
    FROM generate_series(1, 200) u;
INSERT INTO regress.v2_events
  SELECT 'zero', u, 'treatment', 'conversion', 10, '2026-03-03' FROM generate_series(2, 40, 2) u;
INSERT INTO persona.campaigns (campaign, events) VALUES ('zero', 'regress.v2_events');
SELECT m.key AS metric, m.value -> 'effect' ->> 'effect' AS effect, m.value -> 'effect' ->> 'undefined' AS undefined,
       m.value -> 'bayesian' ->> 'undefined' AS bayesian
  FROM jsonb_each(campaign_metrics('zero', '{"difference": "relative", "bayesian": true}') -> 'comparisons' -> 0) m
 WHERE jsonb_typeof(m.value) = 'object' ORDER BY 1;

-- Bad input: a 22023 error naming the problem, for each.
SELECT regress.error_of($$SELECT campaign_metrics('v2_test', '{"cupped": true}')$$);
SELECT regress.error_of($$SELECT campaign_metrics('v2_test', '[1]')$$);
SELECT regress.error_of($$SELECT campaign_metrics('v2_test', '{"difference": "ratio"}')$$);
SELECT regress.error_of($$SELECT campaign_metrics('v2_test', '{"sequential": "yes"}')$$);
SELECT regress.error_of($$SELECT campaign_metrics('v2_test', '{"sequential_tuning": 100}')$$);
SELECT regress.error_of($$SELECT campaign_metrics('v2_test', '{"sequential": true, "sequential_tuning": -1}')$$);
SELECT regress.error_of($$SELECT campaign_metrics('v2_test', '{"prior": {"mean": 0, "variance": 1}}')$$);
SELECT regress.error_of($$SELECT campaign_metrics('v2_test', '{"bayesian": true, "prior": {"mean": 0, "variance": 0}}')$$);
SELECT regress.error_of($$SELECT campaign_metrics('v2_test', '{"bayesian": true, "prior": {"mean": 0}}')$$);
SELECT regress.error_of($$SELECT campaign_metrics('v2_test', '{"capping": {"type": "percentile", "value": 1.5}}')$$);
SELECT regress.error_of($$SELECT campaign_metrics('v2_test', '{"capping": {"type": "absolute", "value": -3}}')$$);
SELECT regress.error_of($$SELECT campaign_metrics('v2_test', '{"capping": {"type": "winsor", "value": 3}}')$$);
SELECT regress.error_of($$SELECT campaign_metrics('v2_test', '{"capping": 0.99}')$$);
SELECT regress.error_of($$SELECT campaign_metrics('v2_test', '{"correction": "bonferroni"}')$$);
SELECT regress.error_of($$SELECT campaign_metrics('v2_test', '{"cuped": {"lookback_days": 0}}')$$);
SELECT regress.error_of($$SELECT campaign_metrics('v2_test', '{"cuped": {"days": 30}}')$$);
SELECT regress.error_of($$SELECT campaign_metrics('v2_test', '{"cuped": {}}')$$);
SELECT regress.error_of($$SELECT campaign_metrics('zero', '{"cuped": {"lookback_days": 30}}')$$);
SELECT regress.error_of($$SELECT campaign_metrics('v2_test', '{"cuped": {"relation": "regress.v2_users", "column": "country"}}')$$);
SELECT regress.error_of($$SELECT campaign_metrics('v2_test', '{"cuped": {"relation": "regress.no_such", "column": "x"}}')$$);
SELECT regress.error_of($$SELECT campaign_metrics('v2_test', '{"cuped": {"relation": "regress.v2_users"}}')$$);
SELECT regress.error_of($$SELECT campaign_metrics('v2_test', '{"segments": {"relation": "regress.v2_users", "column": "nope"}}')$$);
SELECT regress.error_of($$SELECT campaign_metrics('v2_test', '{"segments": {"relation": "regress.v2_users", "column": "country", "max": 0}}')$$);
SELECT campaign_metrics('v2_test', NULL) IS NULL AS null_options;

-- campaign_power: users per arm for a rate and a mean, the other direction, and its errors.
SELECT p ->> 'users_per_arm' AS users_per_arm, round((p ->> 'effect_size')::numeric, 6) AS h, p ->> 'total_users' AS total
  FROM (SELECT campaign_power(0.05, mde => 0.01) AS p) x;
SELECT p ->> 'users_per_arm' AS users_per_arm, p ->> 'alpha_per_comparison' AS alpha_each
  FROM (SELECT campaign_power(0.05, mde => 0.2, relative => true, arms => 3) AS p) x;
SELECT p ->> 'users_per_arm' AS users_per_arm FROM (SELECT campaign_power(20, sd => 45, mde => 2) AS p) x;
SELECT round((p ->> 'mde')::numeric, 6) AS mde, round((p ->> 'mde_relative')::numeric, 4) AS mde_relative
  FROM (SELECT campaign_power(0.05, users_per_arm => 8000) AS p) x;
-- Both directions agree: the users for the MDE of 8000 users are 8000.
SELECT (campaign_power(0.05, mde => (campaign_power(0.05, users_per_arm => 8000) ->> 'mde')::float8) ->> 'users_per_arm')::int AS round_trip;
SELECT regress.error_of($$SELECT campaign_power(0.05)$$);
SELECT regress.error_of($$SELECT campaign_power(0.05, mde => 0.01, users_per_arm => 100)$$);
SELECT regress.error_of($$SELECT campaign_power(1.5, mde => 0.01)$$);
SELECT regress.error_of($$SELECT campaign_power(0.05, mde => 0.01, power => 1)$$);
SELECT regress.error_of($$SELECT campaign_power(0.05, mde => 0.01, arms => 1)$$);
SELECT regress.error_of($$SELECT campaign_power(0.05, users_per_arm => 3, power => 0.99)$$);
SELECT regress.error_of($$SELECT campaign_power(NULL, mde => 0.01)$$);

-- campaign_report: one self-contained page (no script, nothing fetched), with every section;
-- the scores relation adds the Qini curve. (scripts/report_check.sh renders it in Chromium.)
CREATE TABLE regress.v2_scores AS SELECT user_id, propensity AS score FROM regress.v2_users;
SELECT left(r, 15) AS doctype, r LIKE '%</html>%' AS closed, r !~* '<script|src=|href=|@import|url\(' AS self_contained,
       r LIKE '%Cumulative lift with its sequential band%' AS has_band, r LIKE '%Qini curve%' AS has_qini,
       r LIKE '%Arms%treatment%' AS has_arms
  FROM (SELECT campaign_report('v2_test', '{"scores": "regress.v2_scores", "cuped": {"lookback_days": 30}}') AS r) x;
-- Arm and campaign names are escaped.
INSERT INTO regress.v2_events VALUES ('<b>html</b>', 1, '<i>a</i>', 'exposure', NULL, '2026-03-02'),
  ('<b>html</b>', 2, 'control', 'exposure', NULL, '2026-03-03');
INSERT INTO persona.campaigns (campaign, events) VALUES ('<b>html</b>', 'regress.v2_events');
SELECT r LIKE '%&lt;b&gt;html&lt;/b&gt;%' AS name_escaped, r NOT LIKE '%<i>a</i>%' AS arm_escaped
  FROM (SELECT campaign_report('<b>html</b>') AS r) x;
SELECT regress.error_of($$SELECT campaign_report('v2_test', '{"scores": 3}')$$);
SELECT regress.error_of($$SELECT campaign_report('v2_test', '{"scores": "regress.no_such"}')$$);
SELECT regress.error_of($$SELECT campaign_report('v2_test', '{"nonsense": 1}')$$);
SELECT regress.error_of($$SELECT campaign_report('no_such_campaign')$$);

DELETE FROM persona.campaigns WHERE campaign IN ('v2_test', 'wide', 'zero', '<b>html</b>');
