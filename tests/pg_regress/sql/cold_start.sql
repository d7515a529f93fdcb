-- Cold-start items: cf_train's option item_text embeds the items' texts (minilm) and adds the
-- items nobody rated, with factors predicted from their text; cf_add_items adds items that
-- arrive later with the stored map, as a new version.
CREATE TABLE cold_items AS SELECT item_id, title, description FROM persona.items;
INSERT INTO cold_items VALUES
  (9001, 'Ultralight hiking tent', 'A two-person tent for backpacking and camping outdoors.'),
  (9002, 'Dark fantasy novel', 'An epic book of dragons, kings and betrayal.');
SELECT a AS algorithm, (SELECT array_agg(k ORDER BY k) FROM jsonb_object_keys(t -> 'cold_start') k) AS report_keys,
       t -> 'cold_start' -> 'added' AS added, (t -> 'cold_start' ->> 'fitted_on')::int = (SELECT count(*) FROM persona.items) AS fitted_on_all
  FROM unnest(ARRAY['svd', 'svdpp', 'als']) a
  CROSS JOIN LATERAL cf_train(algorithm => a, model => 'cold_' || a,
    options => '{"test_fraction": 0, "item_text": {"relation": "cold_items", "text_columns": ["title", "description"]}}') t
 ORDER BY a;
-- The new items are items of the model: predictions of their own (not the unknown-item
-- fallback), and they can be recommended.
SELECT bool_and(cf_predict(u, 9001, 'cold_svd') <> cf_predict(u, 424242, 'cold_svd')) AS own_prediction,
       count(DISTINCT cf_predict(u, 9001, 'cold_svd')) > 1 AS personal
  FROM generate_series(1, 20) u;
SELECT count(*) FILTER (WHERE item_id IN (9001, 9002)) AS recommendable
  FROM cf_recommend(1, 1000000, 'cold_als');
SELECT n_items = (SELECT count(*) + 2 FROM persona.items) AS stored_with_them FROM persona.cf_models WHERE model = 'cold_svd';

-- An item arriving after training: cf_add_items gives it factors from the stored map (the same
-- text as item 9001, so the same predictions), as a new version; nothing new, no new version.
INSERT INTO cold_items VALUES (9003, 'Ultralight hiking tent', 'A two-person tent for backpacking and camping outdoors.');
SELECT r -> 'added' AS added, (r ->> 'version')::int = (r ->> 'from_version')::int + 1 AS new_version
  FROM cf_add_items('cold_svd') r;
SELECT bool_and(abs(cf_predict(u, 9003, 'cold_svd') - cf_predict(u, 9001, 'cold_svd')) < 1e-5) AS same_text_same_factors
  FROM generate_series(1, 20) u;
SELECT r -> 'added' AS added, r -> 'version' = r -> 'from_version' AS same_version FROM cf_add_items('cold_svd') r;
SELECT cf_deploy('cold_svd', 1) IS NOT NULL AS rolled_back;
SELECT active_version FROM persona.cf_models WHERE model = 'cold_svd';
SELECT cf_predict(1, 9003, 'cold_svd') = cf_predict(1, 424242, 'cold_svd') AS version_1_does_not_know_it;

-- Bad input.
SELECT regress.error_of($$SELECT cf_train(algorithm => 'knn_item', model => 'cold_bad', options => '{"item_text": {"relation": "cold_items"}}')$$);
SELECT regress.error_of($$SELECT cf_train(algorithm => 'svd', model => 'cold_bad', options => '{"item_text": {"relation": "no_such_items"}}')$$);
SELECT regress.error_of($$SELECT cf_train(algorithm => 'svd', model => 'cold_bad', options => '{"item_text": {"relation": "cold_items", "text_columns": "blurb"}}')$$);
SELECT regress.error_of($$SELECT cf_train(algorithm => 'svd', model => 'cold_bad', options => '{"item_text": {"relation": "cold_items", "colour": 1}}')$$);
SELECT regress.error_of($$SELECT cf_train(algorithm => 'svd', model => 'cold_bad', options => '{"item_text": "cold_items"}')$$);
SELECT left(regress.error_of($$SELECT cf_train(algorithm => 'svd', model => 'cold_bad', options => '{"item_text": {"relation": "cold_items", "encoder": "no_such_encoder"}}')$$), 5) AS no_encoder;
-- A model trained without item texts has no map.
SELECT cf_train(algorithm => 'baseline', model => 'cold_plain') ->> 'version' AS plain;
SELECT regress.error_of($$SELECT cf_add_items('cold_plain')$$);
SELECT count(*) AS nothing_stored FROM persona.cf_model_versions WHERE model = 'cold_bad';

-- Clean up.
DROP TABLE cold_items;
DELETE FROM persona.cf_active WHERE model LIKE 'cold\_%';
DELETE FROM persona.cf_model_versions WHERE model LIKE 'cold\_%';
