-- Long computations stop within about a second of a cancel, including the phases that run on
-- Rust threads (k-NN similarities, ALS half-steps, baseline sweeps): the backend's thread polls
-- for the cancel and tells the workers to stop. Each case would run for 10 s or more uncancelled
-- on a 2-core machine; statement_timeout fires after reading the data, in the parallel phase.
-- cf_evaluate needs no write privilege, so any role with SELECT on a table can start these.
CREATE TABLE regress.big AS
  SELECT u AS user_id, i AS item_id, (1 + (u + i) % 5)::real AS rating
    FROM generate_series(1, 12000) u, generate_series(1, 300) i
   WHERE (u * 7 + i * 13) % 10 < 3;
SELECT count(*) AS ratings FROM regress.big;

-- k-NN similarities (cosine, no baselines: the similarity walk itself).
SELECT pg_catalog.clock_timestamp() AS t0 \gset
SET statement_timeout = '3s';
SELECT cf_evaluate('regress.big', 'knn_user', '{"similarity": "cosine", "max_neighbors": 200}');
RESET statement_timeout;
SELECT pg_catalog.clock_timestamp() - :'t0'::timestamptz < interval '5 s' AS knn_stopped_in_time;

-- ALS with many factors: each half-step is long.
SELECT pg_catalog.clock_timestamp() AS t0 \gset
SET statement_timeout = '3s';
SELECT cf_evaluate('regress.big', 'als', '{"factors": 128, "iterations": 1000}');
RESET statement_timeout;
SELECT pg_catalog.clock_timestamp() - :'t0'::timestamptz < interval '5 s' AS als_stopped_in_time;

-- The single-threaded SGD trainers (SVD, SVD++) check every 16,384 ratings, not only between
-- epochs (seconds each here): cf_train stops too, and stores nothing.
CREATE TEMP TABLE timings (what text, seconds float8);
SELECT pg_catalog.clock_timestamp() AS t0 \gset
SET statement_timeout = '3s';
SELECT cf_train('regress.big', 'svdpp', 'cancelled_svdpp', '{"epochs": 1000}');
RESET statement_timeout;
INSERT INTO timings SELECT 'svdpp', extract(epoch FROM pg_catalog.clock_timestamp() - :'t0'::timestamptz);
SELECT pg_catalog.clock_timestamp() AS t0 \gset
SET statement_timeout = '3s';
SELECT cf_train('regress.big', 'svd', 'cancelled_svd', '{"epochs": 1000, "factors": 200}');
RESET statement_timeout;
INSERT INTO timings SELECT 'svd', extract(epoch FROM pg_catalog.clock_timestamp() - :'t0'::timestamptz);
SELECT what, seconds < 5 AS stopped_in_time FROM timings ORDER BY what;
SELECT pg_catalog.count(*) AS stored FROM persona.cf_model_versions WHERE model LIKE 'cancelled%';

-- pg_cancel_backend from another session, during the k-NN walk of a cf_evaluate (which needs
-- only SELECT on the source).
CREATE EXTENSION dblink;
SELECT dblink_connect('bg', 'dbname=' || pg_catalog.current_database()) AS connected;
SELECT dblink_exec('bg', 'SET application_name = persona_cancel_probe') AS configured;
SELECT dblink_send_query('bg', $$SELECT cf_evaluate('regress.big', 'knn_user', '{"similarity": "cosine", "max_neighbors": 200}')$$) AS sent;
-- Reading the 1.08M rows takes about a second; the walk then runs for 10 s or more.
SELECT pg_catalog.pg_sleep(2.5);
SELECT pg_catalog.clock_timestamp() AS t0 \gset
SELECT pg_catalog.pg_cancel_backend(pid) AS cancel_sent FROM pg_catalog.pg_stat_activity
 WHERE application_name = 'persona_cancel_probe';
SELECT pg_catalog.count(*) AS rows_returned FROM dblink_get_result('bg', false) AS t(r jsonb);
SELECT pg_catalog.clock_timestamp() - :'t0'::timestamptz < interval '2 s' AS cancelled_in_time,
       dblink_error_message('bg') ~ 'canceling statement due to user request' AS cancelled;
SELECT dblink_disconnect('bg') AS disconnected;
DROP EXTENSION dblink;

-- Text models check between inference batches: scoring 40,000 texts in one call (minutes on
-- two cores) and training a classifier on them stop at the timeout.
CREATE TABLE regress.many_texts AS
  SELECT 'review number ' || i || ' says the product was ' ||
         CASE WHEN i % 2 = 0 THEN 'great and worth every cent' ELSE 'poor and broke at once' END AS text,
         i % 2 = 0 AS label
    FROM generate_series(1, 40000) i;
SELECT pg_catalog.clock_timestamp() AS t0 \gset
SET statement_timeout = '2s';
SELECT pg_catalog.array_length(bert_score(pg_catalog.array_agg(text)), 1) FROM regress.many_texts;
RESET statement_timeout;
SELECT pg_catalog.clock_timestamp() - :'t0'::timestamptz < interval '4 s' AS scoring_stopped_in_time;
SELECT pg_catalog.clock_timestamp() AS t0 \gset
SET statement_timeout = '2s';
SELECT bert_train_classifier('cancelled_classifier', 'regress.many_texts');
RESET statement_timeout;
SELECT pg_catalog.clock_timestamp() - :'t0'::timestamptz < interval '4 s' AS training_stopped_in_time;
SELECT pg_catalog.count(*) AS stored FROM persona.bert_model_store WHERE name = 'cancelled_classifier';
-- Scoring a table row by row stops between rows.
SELECT pg_catalog.clock_timestamp() AS t0 \gset
SET statement_timeout = '2s';
SELECT pg_catalog.sum(bert_score(text)) FROM regress.many_texts;
RESET statement_timeout;
SELECT pg_catalog.clock_timestamp() - :'t0'::timestamptz < interval '4 s' AS row_scoring_stopped_in_time;
DROP TABLE regress.many_texts;

-- Campaign statistics over 3 million events stop in their aggregation.
CREATE TABLE regress.big_events AS
  SELECT 'big'::text AS campaign, (g % 300000)::bigint AS user_id, CASE WHEN g % 2 = 0 THEN 'control' ELSE 'treatment' END AS arm,
         CASE WHEN g % 7 = 0 THEN 'conversion' ELSE 'exposure' END AS event, (g % 50)::numeric AS value,
         timestamptz '2026-01-01' + (g % 30) * interval '1 day' AS occurred_at
    FROM generate_series(1, 3000000) g;
INSERT INTO persona.campaigns (campaign, events) VALUES ('big', 'regress.big_events');
SELECT pg_catalog.clock_timestamp() AS t0 \gset
SET statement_timeout = '1s';
SELECT campaign_metrics('big');
RESET statement_timeout;
SELECT pg_catalog.clock_timestamp() - :'t0'::timestamptz < interval '3 s' AS campaign_stopped_in_time;
DELETE FROM persona.campaigns WHERE campaign = 'big';
DROP TABLE regress.big_events;

-- The baseline: at most 1000 sweeps (each checks for a cancel).
SELECT regress.error_of($$SELECT cf_evaluate('regress.big', 'baseline', '{"epochs": 100000}')$$);
-- The backend works on.
SELECT cf_predict(1, 1) IS NOT NULL AS still_predicts;
DROP TABLE regress.big;
