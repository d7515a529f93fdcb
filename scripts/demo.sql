-- pg_persona demo: every SQL function on the bundled demo data. Run by `make demo`.
\pset footer off
\echo '== CREATE EXTENSION pg_persona'
CREATE EXTENSION pg_persona;
SELECT extversion FROM pg_extension WHERE extname = 'pg_persona';

\echo '== persona.load_demo(): deterministic users, items, ratings, a campaign and feedback'
SELECT jsonb_pretty(persona.load_demo());

\echo '== cf_train(): the default algorithm (SVD++) on persona.ratings, 10% held out'
SELECT jsonb_pretty(cf_train() - 'params');

\echo '== cf_train(algorithm => ...): every algorithm, each as its own model'
SELECT a.algorithm, r ->> 'version' AS version, r -> 'holdout' ->> 'rmse' AS rmse,
       r -> 'holdout' -> 'ranking' ->> 'ndcg_at_k' AS ndcg_at_10, r ->> 'train_seconds' AS train_seconds
  FROM unnest(ARRAY['baseline', 'svd', 'knn_user', 'knn_item', 'als']) AS a(algorithm),
       LATERAL cf_train(algorithm => a.algorithm, model => 'demo_' || a.algorithm) AS r;

\echo '== persona.cf_models: stored models, one active version each'
SELECT model, active_version, algorithm, n_users, n_items, n_ratings, bytes, versions FROM persona.cf_models ORDER BY model;

\echo '== cf_predict(user, item)'
SELECT u AS user_id, i AS item_id, round(cf_predict(u, i)::numeric, 3) AS predicted
  FROM (VALUES (1, 1), (1, 2), (2, 3), (999999, 1)) v(u, i);

\echo '== cf_recommend(user, k): top 5 unseen items for user 1'
SELECT r.rank, r.item_id, i.title, i.category, round(r.score::numeric, 3) AS score
  FROM cf_recommend(1, 5) r JOIN persona.items i USING (item_id) ORDER BY r.rank;

\echo '== cf_recommend_explained(user, k): the same list, each item with the rating that contributes most to it'
SELECT r.rank, i.title, round(r.score::numeric, 3) AS score, b.title AS because_you_rated,
       round(r.reason_share::numeric, 2) AS share
  FROM cf_recommend_explained(1, 5) r JOIN persona.items i USING (item_id)
  LEFT JOIN persona.items b ON b.item_id = r.reason_id ORDER BY r.rank;

\echo '== cf_explain(user, item, model, k): why the top item, with the item-based k-NN model'
SELECT e.rank, i.title, e.rating, round(e.weight::numeric, 3) AS similarity,
       round(e.contribution::numeric, 3) AS contribution, round(e.share::numeric, 2) AS share
  FROM cf_explain(1, (SELECT item_id FROM cf_recommend(1, 1, 'demo_knn_item')), 'demo_knn_item', 3) e
  JOIN persona.items i ON i.item_id = e.reason_id ORDER BY e.rank;

\echo '== fold-in: a user who signed up after training, recommended from three ratings (no retraining)'
SELECT r.rank, i.title, i.category, round(r.score::numeric, 3) AS score
  FROM cf_recommend_for(jsonb_build_object(
         (SELECT min(item_id) FROM persona.items WHERE category = 'outdoor'), 5,
         (SELECT max(item_id) FROM persona.items WHERE category = 'outdoor'), 5,
         (SELECT min(item_id) FROM persona.items WHERE category = 'books'), 1), 5) r
  JOIN persona.items i USING (item_id) ORDER BY r.rank;
\echo '   ... and, once their ratings are rows in persona.ratings, cf_recommend folds them in itself'
INSERT INTO persona.ratings (user_id, item_id, rating)
  SELECT 100001, item_id, 5 FROM persona.items WHERE category = 'outdoor' ORDER BY item_id LIMIT 3;
SELECT r.rank, i.title, i.category FROM cf_recommend(100001, 3) r JOIN persona.items i USING (item_id) ORDER BY r.rank;
DELETE FROM persona.ratings WHERE user_id = 100001;

\echo '== cold-start items: two new products nobody has rated, placed by their text (MiniLM embeddings)'
INSERT INTO persona.items (item_id, title, category, description) VALUES
  (1001, 'Dark fantasy novel', 'books', 'An epic book of dragons, kings and betrayal.'),
  (1002, 'Ultralight hiking tent', 'outdoor', 'A two-person tent for backpacking and camping.');
SELECT cf_train(algorithm => 'als', model => 'demo_cold', options =>
  '{"test_fraction": 0, "item_text": {"relation": "persona.items", "text_columns": ["title", "description", "category"]}}')
  -> 'cold_start' AS cold_start;
\echo '   ... where each new item ranks for the most bookish and the most outdoorsy user (of 122 items)'
WITH fans AS (
  SELECT DISTINCT ON (i.category) i.category, r.user_id FROM persona.ratings r JOIN persona.items i USING (item_id)
   WHERE i.category IN ('books', 'outdoor') GROUP BY i.category, r.user_id ORDER BY i.category, count(*) DESC, r.user_id)
SELECT f.category AS user_likes, f.user_id, i.title, r.rank
  FROM fans f CROSS JOIN LATERAL cf_recommend(f.user_id, 200, 'demo_cold') r JOIN persona.items i USING (item_id)
 WHERE r.item_id IN (1001, 1002) ORDER BY f.category, r.rank;

\echo '== cf_similar_items(item, k) with the item-based k-NN model'
SELECT s.rank, s.item_id, i.title, round(s.similarity::numeric, 3) AS similarity
  FROM cf_similar_items(1, 5, 'demo_knn_item') s JOIN persona.items i USING (item_id) ORDER BY s.rank;

\echo '== cf_similar_users(user, k)'
SELECT * FROM cf_similar_users(1, 5);

\echo '== cf_evaluate(): per-user 25% split, implicit ALS, top-10 ranking'
SELECT jsonb_pretty(cf_evaluate(algorithm => 'als', options => '{"split": "user", "test_fraction": 0.25}') - 'params');

\echo '== cf_deploy(model, version): roll back to version 1'
SELECT cf_train(algorithm => 'svd') ->> 'version' AS new_version;
SELECT cf_deploy('default', 1);

\echo '== campaign_metrics(campaign)'
SELECT jsonb_pretty(campaign_metrics('spring_outdoor'));

\echo '== campaign_metrics(campaign, options): can we look every day, use last month, how sure are we?'
\echo '   sequential: an always-valid interval; cuped: last month''s purchases (the 30 days before'
\echo '   starts_at) as covariate; bayesian: chance to win and the risk of each choice. With cuped on,'
\echo '   the sequential and Bayesian results use the adjusted statistics (the CTR, a ratio, has no CUPED).'
SELECT m.key AS metric,
       round((m.value -> 'sequential' ->> 'effect')::numeric, 4) AS adjusted_lift,
       format('[%s, %s]', round((m.value -> 'sequential' -> 'ci' ->> 'low')::numeric, 4),
              round((m.value -> 'sequential' -> 'ci' ->> 'high')::numeric, 4)) AS sequential_ci,
       round((m.value -> 'cuped' ->> 'theta')::numeric, 3) AS cuped_theta,
       CASE WHEN m.value -> 'cuped' ->> 'effect' IS NULL THEN 'n/a'
            ELSE format('[%s, %s]', round((m.value -> 'cuped' -> 'ci' ->> 'low')::numeric, 4),
                        round((m.value -> 'cuped' -> 'ci' ->> 'high')::numeric, 4)) END AS cuped_ci,
       round((m.value -> 'bayesian' ->> 'chance_to_win')::numeric, 3) AS chance_to_win,
       round((m.value -> 'bayesian' -> 'risk' ->> 'treatment')::numeric, 5) AS risk_of_treatment
  FROM jsonb_each(campaign_metrics('spring_outdoor', '{"sequential": true, "bayesian": true,
         "cuped": {"lookback_days": 30}, "correction": "holm"}') -> 'comparisons' -> 0) m
 WHERE jsonb_typeof(m.value) = 'object' ORDER BY 1;

\echo '== campaign_metrics by country (segments), revenue capped at its 99th percentile'
SELECT g ->> 'segment' AS country, g ->> 'users' AS users,
       round((g -> 'comparisons' -> 0 -> 'conversion_rate' ->> 'absolute_lift')::numeric, 4) AS lift,
       g -> 'srm' ->> 'mismatch' AS srm_mismatch
  FROM jsonb_array_elements(campaign_metrics('spring_outdoor', '{"segments": {"relation": "persona.users",
         "column": "country", "max": 4}, "capping": {"type": "percentile", "value": 0.99}}') -> 'segments' -> 'groups') g;

\echo '== campaign_power: users per arm to detect a conversion rate of 22% -> 25%, and what 200 users per arm can detect'
SELECT (campaign_power(0.22, mde => 0.03) ->> 'users_per_arm') AS users_per_arm,
       round((campaign_power(0.22, users_per_arm => 200) ->> 'mde')::numeric, 4) AS mde_with_200;

\echo '== campaign_report(campaign): the report as a self-contained HTML page, written to' :'report'
\set QUIET on
\pset tuples_only on
\pset format unaligned
\o :report
SELECT campaign_report('spring_outdoor');
\o
\pset format aligned
\pset tuples_only off
\set QUIET off

\echo '== campaign_metrics_daily(campaign)'
SELECT day, arm, users_exposed, exposures, clicks, conversions, revenue, round(ctr::numeric, 4) AS ctr
  FROM campaign_metrics_daily('spring_outdoor') LIMIT 6;

\echo '== campaign_audience(campaign, k): unexposed users with the highest affinity for the campaign items'
SELECT * FROM campaign_audience('spring_outdoor', 5);

\echo '== campaign_uplift(campaign): does cf affinity find the users the campaign moved?'
SELECT jsonb_pretty(campaign_uplift('spring_outdoor'));

\echo '== user_profile(user)'
SELECT jsonb_pretty(user_profile(1, as_of => '2026-05-01'));

\echo '== profile_train(): lifetime models (BG/NBD, Gamma-Gamma) and RFM quintiles fitted on persona.orders'
SELECT jsonb_pretty(profile_train(options => '{"as_of": "2026-04-15"}') - 'rfm_quintiles' - 'orders_skipped');
\echo '   (taste clusters: k-means on the default cf model''s user factors, k by silhouette, named by category)'

\echo '== user_profile(user): the lifetime, rfm and taste_cluster sections of the customer with the most purchase days'
SELECT jsonb_pretty(p -> 'lifetime') AS lifetime, p -> 'rfm' AS rfm, jsonb_pretty(p -> 'taste_cluster') AS taste_cluster
  FROM (SELECT user_id FROM persona.orders GROUP BY 1
         ORDER BY count(DISTINCT occurred_at::date) DESC, 1 LIMIT 1) u,
       LATERAL user_profile(u.user_id, as_of => '2026-04-15') p;

\echo '== churn prevention: customers likely to have lapsed but worth the most, the audience of a win-back campaign'
SELECT user_id, (profile -> 'lifetime' ->> 'churn_risk')::numeric AS churn_risk,
       (profile -> 'lifetime' ->> 'clv_12_months')::numeric AS clv_12_months,
       profile -> 'rfm' ->> 'segment' AS rfm_segment
  FROM user_profiles(as_of => '2026-04-15')
 WHERE (profile -> 'lifetime' ->> 'churn_risk')::numeric >= 0.5
 ORDER BY clv_12_months DESC, user_id LIMIT 5;

\echo '== persona.bert_models: text models registered by CREATE EXTENSION'
SELECT * FROM persona.bert_models;

\echo '== bert_score(text) and bert_classify(text): the default sentiment model'
SELECT body, round(bert_score(body)::numeric, 3) AS positive FROM persona.feedback ORDER BY feedback_id LIMIT 5;
SELECT bert_classify('The tent leaked on the first night. Very disappointed.');

\echo '== bert_score(text[]): one batched call'
SELECT bert_score(ARRAY['I love it', 'Terrible, it broke', NULL, '']);

\echo '== bert_embed(text) and bert_embed(text[]): 384-dimensional unit vectors'
SELECT array_length(bert_embed('waterproof hiking boots'), 1) AS dims,
       round(sqrt((SELECT sum(x::float8 * x) FROM unnest(bert_embed($$waterproof hiking boots$$)) x))::numeric, 4) AS norm;
SELECT ord, array_length(embedding, 1) AS dims FROM bert_embed(ARRAY['tent', 'novel']);

\echo '== bert_train_classifier(): a category classifier on the item descriptions, in SQL'
CREATE TABLE item_text AS SELECT description AS text, category AS label FROM persona.items;
SELECT jsonb_pretty(bert_train_classifier('item_category', 'item_text', options => '{"holdout_fraction": 0.25}') #- '{train,confusion}' #- '{holdout,confusion}');
SELECT bert_classify('A compact camping stove for outdoor lovers.', 'item_category') ->> 'label' AS predicted_category;

\echo '== bert_register_model_file(...) from persona.model_dir, bert_register_model(...) from bytes, bert_drop_model(...)'
SELECT bert_register_model_file('minilm_copy', 'minilm', 'embedding') ->> 'name' AS registered;
SELECT bert_register_model('minilm_bytes', (SELECT onnx FROM persona.bert_model_store WHERE name = 'minilm'),
                           (SELECT tokenizer FROM persona.bert_model_store WHERE name = 'minilm'), 'embedding') ->> 'name' AS registered;
SELECT bert_embed('same model, same vector', 'minilm_bytes') = bert_embed('same model, same vector') AS identical;
SELECT bert_drop_model('minilm_copy'), bert_drop_model('minilm_bytes'), bert_drop_model('item_category');
SELECT bert_register_defaults(replace => false);
