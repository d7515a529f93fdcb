-- DROP EXTENSION leaves nothing behind (after the tests' own objects that use its tables are gone).
SET client_min_messages = warning;
DROP SCHEMA regress CASCADE;
RESET client_min_messages;
DROP EXTENSION pg_persona;
SELECT count(*) AS persona_schema FROM pg_namespace WHERE nspname = 'persona';
SELECT count(*) AS functions_left FROM pg_proc WHERE proname LIKE 'cf\_%' OR proname LIKE 'campaign\_%' OR proname LIKE 'bert\_%' OR proname = 'user_profile';
-- And it installs again.
CREATE EXTENSION pg_persona;
SELECT count(*) AS models FROM persona.cf_models;
SELECT name, builtin FROM persona.bert_models ORDER BY name;
DROP EXTENSION pg_persona;
