-- The extension's SQL never uses objects planted on the caller's search_path. A superuser calls
-- every function with a schema ahead of pg_catalog that holds operators, functions, aggregates
-- and types named like the built-in ones; then with the default path and an exact-match
-- operator =(varchar, text) in public, over a campaign whose events table has varchar columns.
-- Every planted object raises an exception when used, so a call that touches one fails.
CREATE SCHEMA evil;
CREATE FUNCTION evil.trap() RETURNS void LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'a planted object was called'; END $$;
CREATE FUNCTION evil.op_text(text, text) RETURNS boolean LANGUAGE plpgsql AS $$ BEGIN PERFORM evil.trap(); RETURN true; END $$;
CREATE FUNCTION evil.op_int8(bigint, bigint) RETURNS boolean LANGUAGE plpgsql AS $$ BEGIN PERFORM evil.trap(); RETURN true; END $$;
CREATE FUNCTION evil.op_int84(bigint, integer) RETURNS boolean LANGUAGE plpgsql AS $$ BEGIN PERFORM evil.trap(); RETURN true; END $$;
CREATE FUNCTION evil.op_int4(integer, integer) RETURNS boolean LANGUAGE plpgsql AS $$ BEGIN PERFORM evil.trap(); RETURN true; END $$;
CREATE FUNCTION evil.op_tstz(timestamptz, timestamptz) RETURNS boolean LANGUAGE plpgsql AS $$ BEGIN PERFORM evil.trap(); RETURN true; END $$;
CREATE FUNCTION evil.mul_f8(float8, float8) RETURNS float8 LANGUAGE plpgsql AS $$ BEGIN PERFORM evil.trap(); RETURN 0; END $$;
CREATE OPERATOR evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.op_text);
CREATE OPERATOR evil.= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = evil.op_int8);
CREATE OPERATOR evil.= (LEFTARG = integer, RIGHTARG = integer, FUNCTION = evil.op_int4);
CREATE OPERATOR evil.> (LEFTARG = bigint, RIGHTARG = integer, FUNCTION = evil.op_int84);
CREATE OPERATOR evil.<= (LEFTARG = timestamptz, RIGHTARG = timestamptz, FUNCTION = evil.op_tstz);
CREATE OPERATOR evil.* (LEFTARG = float8, RIGHTARG = float8, FUNCTION = evil.mul_f8);
CREATE FUNCTION evil.now() RETURNS timestamptz LANGUAGE plpgsql AS $$ BEGIN PERFORM evil.trap(); RETURN NULL; END $$;
CREATE FUNCTION evil.round(numeric, integer) RETURNS numeric LANGUAGE plpgsql AS $$ BEGIN PERFORM evil.trap(); RETURN 0; END $$;
CREATE FUNCTION evil.to_char(timestamp, text) RETURNS text LANGUAGE plpgsql AS $$ BEGIN PERFORM evil.trap(); RETURN ''; END $$;
CREATE FUNCTION evil.agg_step(bigint) RETURNS bigint LANGUAGE plpgsql AS $$ BEGIN PERFORM evil.trap(); RETURN 0; END $$;
CREATE FUNCTION evil.agg_step(bigint, anyelement) RETURNS bigint LANGUAGE plpgsql AS $$ BEGIN PERFORM evil.trap(); RETURN 0; END $$;
CREATE FUNCTION evil.agg_step(bigint, anyelement, text) RETURNS bigint LANGUAGE plpgsql AS $$ BEGIN PERFORM evil.trap(); RETURN 0; END $$;
CREATE AGGREGATE evil.count(*) (SFUNC = evil.agg_step, STYPE = bigint, INITCOND = '0');
CREATE AGGREGATE evil.count(anyelement) (SFUNC = evil.agg_step, STYPE = bigint, INITCOND = '0');
CREATE AGGREGATE evil.sum(anyelement) (SFUNC = evil.agg_step, STYPE = bigint, INITCOND = '0');
CREATE AGGREGATE evil.min(anyelement) (SFUNC = evil.agg_step, STYPE = bigint, INITCOND = '0');
CREATE AGGREGATE evil.max(anyelement) (SFUNC = evil.agg_step, STYPE = bigint, INITCOND = '0');
CREATE AGGREGATE evil.avg(anyelement) (SFUNC = evil.agg_step, STYPE = bigint, INITCOND = '0');
CREATE AGGREGATE evil.bool_or(anyelement) (SFUNC = evil.agg_step, STYPE = bigint, INITCOND = '0');
CREATE AGGREGATE evil.string_agg(anyelement, text) (SFUNC = evil.agg_step, STYPE = bigint, INITCOND = '0');
-- Types named like built-in ones: a cast to "text" or "float8" would land here.
CREATE TYPE evil.text AS (planted integer);
CREATE TYPE evil.float8 AS (planted integer);
CREATE TYPE evil.date AS (planted integer);

SET search_path = evil, pg_catalog, public, regress;
SELECT (cf_train(algorithm => 'svd', model => 'sp_svd', options => '{"factors": 8, "epochs": 5}') ->> 'algorithm') AS trained;
SELECT cf_predict(1, 1, 'sp_svd') IS NOT NULL AS predicts;
SELECT pg_catalog.count(*) AS recommended FROM cf_recommend(1, 5, 'sp_svd');
SELECT pg_catalog.count(*) AS similar_items FROM cf_similar_items(1, 3, 'sp_svd');
SELECT pg_catalog.count(*) AS similar_users FROM cf_similar_users(1, 3, 'sp_svd');
SELECT (cf_evaluate('persona.ratings', 'baseline') -> 'holdout' ->> 'rmse') IS NOT NULL AS evaluated;
SELECT cf_deploy('sp_svd', 1) ->> 'active_version' AS deployed;
SELECT cf_model_grant('sp_svd', 'public') AS granted, cf_model_revoke('sp_svd', 'PUBLIC') AS revoked;
SELECT bert_model_grant('sentiment', current_user) AS granted, bert_model_revoke('sentiment', current_user) AS revoked;
SELECT (campaign_metrics('spring_outdoor') ->> 'campaign') AS metrics;
SELECT pg_catalog.count(*) OPERATOR(pg_catalog.>) 0 AS daily FROM campaign_metrics_daily('spring_outdoor');
SELECT pg_catalog.count(*) AS audience FROM campaign_audience('spring_outdoor', 5, 'sp_svd');
SELECT (campaign_uplift('spring_outdoor', model => 'sp_svd') ->> 'users') IS NOT NULL AS uplift;
SELECT (user_profile(1, 'sp_svd', '2026-05-01') ->> 'segment') IS NOT NULL AS profile;
SELECT bert_score('a wonderful film') IS NOT NULL AS scored,
       pg_catalog.array_length(bert_embed('a wonderful film'), 1) AS embedding_width;
SELECT (bert_classify('a wonderful film') ->> 'label') IS NOT NULL AS classified;
RESET search_path;

-- An exact-match operator for varchar in public, with the default search_path: a campaign whose
-- events table has varchar columns (and integer user ids) is evaluated with pg_catalog's
-- operators, and gives the same report as the original events.
CREATE FUNCTION public.vc_eq(varchar, text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'public.=(varchar, text) was called'; END $$;
CREATE OPERATOR public.= (LEFTARG = varchar, RIGHTARG = text, FUNCTION = public.vc_eq);
CREATE TABLE regress.vc_events (campaign varchar, user_id integer, arm varchar, event varchar,
                                value numeric, occurred_at timestamptz);
INSERT INTO regress.vc_events
  SELECT 'vc', user_id, arm, event, value, occurred_at FROM persona.campaign_events
   WHERE campaign OPERATOR(pg_catalog.=) 'spring_outdoor';
INSERT INTO persona.campaigns (campaign, events, control_arm, planned_split, cost, items, starts_at, ends_at, channel)
  SELECT 'vc', 'regress.vc_events', control_arm, planned_split, cost, items, starts_at, ends_at, channel
    FROM persona.campaigns WHERE campaign OPERATOR(pg_catalog.=) 'spring_outdoor';
SELECT (campaign_metrics('vc') -> 'arms') OPERATOR(pg_catalog.=) (campaign_metrics('spring_outdoor') -> 'arms') AS same_arms,
       (campaign_metrics('vc') -> 'comparisons') OPERATOR(pg_catalog.=) (campaign_metrics('spring_outdoor') -> 'comparisons') AS same_comparisons;
SELECT pg_catalog.count(*) > 0 AS daily FROM campaign_metrics_daily('vc');
SELECT pg_catalog.count(*) AS audience FROM campaign_audience('vc', 5);
SELECT (campaign_uplift('vc') ->> 'users')::pg_catalog.int4 OPERATOR(pg_catalog.>) 0 AS uplift_users;

DELETE FROM persona.campaigns WHERE campaign OPERATOR(pg_catalog.=) 'vc';
DROP TABLE regress.vc_events;
DROP OPERATOR public.= (varchar, text);
DROP FUNCTION public.vc_eq(varchar, text);
DELETE FROM persona.cf_active WHERE model OPERATOR(pg_catalog.=) 'sp_svd';
DELETE FROM persona.cf_model_versions WHERE model OPERATOR(pg_catalog.=) 'sp_svd';
SET client_min_messages = warning;
DROP SCHEMA evil CASCADE;
RESET client_min_messages;
