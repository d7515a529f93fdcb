-- Model privileges, with two ordinary roles. A model belongs to the role that trained it; only
-- its owner (and members of the owner, and superusers) may use it, replace it, deploy a version
-- of it or share it, until the owner grants its use to a role or to PUBLIC. Nothing a role may
-- not use is visible to it in the model tables, so no role reads through a model what it could
-- not read from the source. The built-in text models stay usable by every role.
CREATE ROLE regress_alice;
CREATE ROLE regress_bob;
CREATE ROLE regress_alice_team;
GRANT regress_alice TO regress_alice_team;
GRANT USAGE ON SCHEMA regress TO regress_alice, regress_bob, regress_alice_team;
CREATE TABLE regress.alice_ratings AS SELECT user_id, item_id, rating FROM persona.ratings;
ALTER TABLE regress.alice_ratings OWNER TO regress_alice;
CREATE TABLE regress.bob_ratings AS SELECT user_id, item_id, rating FROM persona.ratings WHERE user_id % 2 = 0;
ALTER TABLE regress.bob_ratings OWNER TO regress_bob;

-- Creating models needs INSERT on the model table, granted by the extension's owner.
SET ROLE regress_alice;
SELECT regress.error_of($$SELECT cf_train('regress.alice_ratings', 'svd', 'alice_svd')$$);
RESET ROLE;
GRANT INSERT ON persona.cf_model_versions TO regress_alice, regress_bob;
SET ROLE regress_alice;
SELECT cf_train('regress.alice_ratings', 'svd', 'alice_svd', '{"seed": 1}') ->> 'version' AS version;
SELECT cf_train('regress.alice_ratings', 'knn_item', 'alice_knn', '{"test_fraction": 0}') ->> 'version' AS version;
SELECT cf_train('regress.alice_ratings', 'svd', 'alice_svd', '{"seed": 2}') ->> 'version' AS version;
-- Alice sees her models only (the superuser's models of the other tests are not hers).
SELECT model, active_version, owner, usable_by, created_by, versions FROM persona.cf_models ORDER BY model;
SELECT model, version, created_by FROM persona.cf_model_versions ORDER BY 1, 2;
SELECT cf_predict(1, 1, 'alice_svd') > 0 AS alice_predicts, cf_deploy('alice_svd', 1) AS deployed;
RESET ROLE;

-- Bob may not read Alice's ratings, and sees nothing of her models: no rows, no predictions.
SET ROLE regress_bob;
SELECT regress.error_of($$SELECT count(*) FROM regress.alice_ratings$$);
SELECT (SELECT count(*) FROM persona.cf_model_versions) AS versions_seen,
       (SELECT count(*) FROM persona.cf_active) AS active_seen,
       (SELECT count(*) FROM persona.cf_models) AS models_seen;
SELECT regress.error_of($$SELECT cf_predict(1, 1, 'alice_svd')$$);
SELECT regress.error_of($$SELECT * FROM cf_recommend(1, 5, 'alice_knn')$$);
SELECT regress.error_of($$SELECT * FROM cf_similar_items(1, 5, 'alice_svd')$$);
-- Nor change them: replace, deploy, share.
SELECT regress.error_of($$SELECT cf_train('regress.bob_ratings', 'svd', 'alice_svd')$$);
SELECT regress.error_of($$SELECT cf_deploy('alice_svd', 2)$$);
SELECT regress.error_of($$SELECT cf_model_grant('alice_svd', 'regress_bob')$$);
-- Nor the superuser's models (the other tests' 'default').
SELECT regress.error_of($$SELECT cf_train('regress.bob_ratings', 'svd', 'default')$$);
-- Direct writes are refused: no claiming created_by or a name, no emptying the tables.
SELECT regress.error_of($$INSERT INTO persona.cf_model_versions (model, version, algorithm, params, summary,
  n_users, n_items, n_ratings, created_by, data) VALUES ('forged', 1, 'svd', '{}', '{}', 0, 0, 0, 'postgres', '\x00')$$);
SELECT regress.error_of($$INSERT INTO persona.cf_active (model, version, owner) VALUES ('alice_svd', 1, 'regress_bob')$$);
SELECT regress.error_of($$UPDATE persona.cf_active SET version = 1$$);
SELECT regress.error_of($$DELETE FROM persona.cf_model_versions$$);
SELECT regress.error_of($$TRUNCATE persona.cf_model_versions$$);
-- Bob's own model is his, with him as created_by.
SELECT cf_train('regress.bob_ratings', 'svd', 'bob_svd', '{"seed": 1}') ->> 'version' AS version;
SELECT model, owner, usable_by, created_by FROM persona.cf_models ORDER BY model;
RESET ROLE;

-- Nothing changed for Alice: her active versions and the superuser's view of every model.
SELECT model, active_version, owner, created_by, versions FROM persona.cf_models
 WHERE model IN ('alice_svd', 'alice_knn', 'bob_svd', 'default') ORDER BY model;

-- The owner shares: by role, and to PUBLIC. A grantee uses the model but cannot replace, deploy
-- or share it.
SET ROLE regress_alice;
SELECT cf_model_grant('alice_svd', 'regress_bob') AS usable_by;
SELECT regress.error_of($$SELECT cf_model_grant('alice_svd', 'no_such_role')$$);
SELECT regress.error_of($$SELECT cf_model_grant('no_such_model', 'regress_bob')$$);
RESET ROLE;
SET ROLE regress_bob;
SELECT cf_predict(1, 1, 'alice_svd') > 0 AS bob_predicts, (SELECT count(*) FROM cf_recommend(1, 3, 'alice_svd')) AS recommended;
SELECT model, owner, usable_by FROM persona.cf_models ORDER BY model;
SELECT regress.error_of($$SELECT cf_train('regress.bob_ratings', 'svd', 'alice_svd')$$);
SELECT regress.error_of($$SELECT cf_deploy('alice_svd', 2)$$);
SELECT regress.error_of($$SELECT cf_model_grant('alice_svd', 'PUBLIC')$$);
SELECT regress.error_of($$SELECT * FROM cf_recommend(1, 5, 'alice_knn')$$);
RESET ROLE;

-- Caches follow the role: in one transaction, the same backend answers Alice and refuses Bob.
BEGIN;
SET LOCAL ROLE regress_alice;
SELECT cf_predict(1, 1, 'alice_knn') > 0 AS alice_uses_knn;
SET LOCAL ROLE regress_bob;
SELECT regress.error_of($$SELECT cf_predict(1, 1, 'alice_knn')$$);
SET LOCAL ROLE regress_alice;
SELECT cf_predict(1, 1, 'alice_knn') > 0 AS alice_again;
ROLLBACK;

-- Revoking takes effect at once; PUBLIC is every role.
SET ROLE regress_alice;
SELECT cf_model_revoke('alice_svd', 'regress_bob') AS usable_by;
RESET ROLE;
SET ROLE regress_bob;
SELECT regress.error_of($$SELECT cf_predict(1, 1, 'alice_svd')$$);
RESET ROLE;
SET ROLE regress_alice;
SELECT cf_model_grant('alice_svd', 'public') AS usable_by;
RESET ROLE;
SET ROLE regress_bob;
SELECT cf_predict(1, 1, 'alice_svd') > 0 AS bob_predicts_public;
RESET ROLE;
SET ROLE regress_alice;
SELECT cf_model_revoke('alice_svd', 'PUBLIC') AS usable_by;
RESET ROLE;

-- A member of the owner acts as the owner (as for any PostgreSQL object).
SET ROLE regress_alice_team;
SELECT cf_predict(1, 1, 'alice_svd') > 0 AS member_predicts, cf_deploy('alice_svd', 2) AS deployed;
RESET ROLE;

-- Text models: the built-in ones are every role's; a role's own classifier is its own.
GRANT INSERT ON persona.bert_model_store TO regress_bob;
CREATE TABLE regress.bob_labelled AS
  SELECT w1 || ' ' || w2 AS text, CASE WHEN w1 IN ('great', 'lovely') THEN 'yes' ELSE 'no' END AS label
    FROM unnest(ARRAY['great', 'lovely', 'awful', 'broken']) w1, unnest(ARRAY['tent', 'boots', 'jacket']) w2;
ALTER TABLE regress.bob_labelled OWNER TO regress_bob;
CREATE TABLE regress.alice_labelled AS SELECT * FROM regress.bob_labelled;
ALTER TABLE regress.alice_labelled OWNER TO regress_alice;
SET ROLE regress_bob;
SELECT bert_score('a lovely day') > 0.5 AS builtin_sentiment, array_length(bert_embed('hello'), 1) AS builtin_minilm;
SELECT bert_train_classifier('bob_clf', 'regress.bob_labelled', 'minilm', '{"holdout_fraction": 0}') ->> 'model' AS trained;
SELECT name, owner, usable_by, created_by, builtin FROM persona.bert_models ORDER BY name;
SELECT regress.error_of($$SELECT bert_register_defaults(replace => true)$$);
SELECT regress.error_of($$SELECT bert_drop_model('sentiment')$$);
SELECT regress.error_of($$SELECT bert_train_classifier('sentiment', 'regress.bob_labelled', 'minilm')$$);
-- Fine-tuning: as the caller too (bob may not replace sentiment, nor train on alice's table).
SELECT regress.error_of($$SELECT bert_finetune('sentiment', 'regress.bob_labelled', 'minilm', '{"replace": true}')$$);
SELECT regress.error_of($$SELECT bert_finetune('bob_ft', 'regress.alice_labelled', 'minilm')$$);
SET client_min_messages = warning;
SELECT bert_finetune('bob_ft', 'regress.bob_labelled', 'minilm', '{"holdout_fraction": 0, "epochs": 1, "frozen_layers": 5}') ->> 'model' AS fine_tuned;
RESET client_min_messages;
SELECT regress.error_of($$UPDATE persona.bert_model_store SET labels = '{a,b}' WHERE name = 'sentiment'$$);
SELECT regress.error_of($$TRUNCATE persona.bert_model_store CASCADE$$);
RESET ROLE;
SET ROLE regress_alice;
SELECT regress.error_of($$SELECT bert_score('great boots', 'bob_clf')$$);
SELECT regress.error_of($$SELECT bert_score('great boots', 'bob_ft')$$);
SELECT count(*) AS bob_rows_alice_sees FROM persona.bert_model_store WHERE name = 'bob_clf';
RESET ROLE;
SET ROLE regress_bob;
SELECT bert_model_grant('bob_clf', 'regress_alice') AS usable_by;
RESET ROLE;
SET ROLE regress_alice;
SELECT bert_score('great boots', 'bob_clf') > 0.5 AS alice_scores_with_grant;
SELECT regress.error_of($$SELECT bert_drop_model('bob_clf')$$);
RESET ROLE;
SET ROLE regress_bob;
SELECT bert_drop_model('bob_clf') AS dropped, bert_drop_model('bob_ft') AS dropped_fine_tuned;
RESET ROLE;
-- The superuser's sentiment score is what it was (no role replaced it).
SELECT name, owner = quote_ident(current_user) AS owned_by_installer, usable_by, builtin FROM persona.bert_models ORDER BY name;

DROP TABLE regress.alice_ratings, regress.bob_ratings, regress.bob_labelled, regress.alice_labelled;
DELETE FROM persona.cf_active WHERE model IN ('alice_svd', 'alice_knn', 'bob_svd');
DELETE FROM persona.cf_model_versions WHERE model IN ('alice_svd', 'alice_knn', 'bob_svd');
REVOKE INSERT ON persona.cf_model_versions FROM regress_alice, regress_bob;
REVOKE INSERT ON persona.bert_model_store FROM regress_bob;
REVOKE USAGE ON SCHEMA regress FROM regress_alice, regress_bob, regress_alice_team;
DROP ROLE regress_alice_team;
DROP ROLE regress_alice;
DROP ROLE regress_bob;
