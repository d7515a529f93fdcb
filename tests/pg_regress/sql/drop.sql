-- DROP EXTENSION leaves nothing behind.
DROP EXTENSION pg_persona;
SELECT count(*) AS persona_schema FROM pg_namespace WHERE nspname = 'persona';
SELECT count(*) AS functions_left FROM pg_proc WHERE proname LIKE 'cf\_%' OR proname LIKE 'campaign\_%' OR proname = 'user_profile';
-- And it installs again.
CREATE EXTENSION pg_persona;
SELECT count(*) AS models FROM persona.cf_models;
DROP EXTENSION pg_persona;
