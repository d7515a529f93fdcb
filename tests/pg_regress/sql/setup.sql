-- Installing the extension, what it creates, and helpers for the other tests.
CREATE EXTENSION pg_persona;
SELECT extname, extversion, extrelocatable FROM pg_extension WHERE extname = 'pg_persona';

-- Every function of the extension: schema, volatility, parallel safety, strictness.
SELECT n.nspname AS schema, p.proname AS name, pg_get_function_identity_arguments(p.oid) AS arguments,
       p.provolatile AS volatility, p.proparallel AS parallel, p.proisstrict AS strict
  FROM pg_proc p
  JOIN pg_namespace n ON n.oid = p.pronamespace
  JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
  JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'pg_persona'
 ORDER BY 1, 2, 3;

-- Tables and views live in schema persona, not in public.
SELECT c.relname, c.relkind
  FROM pg_class c JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e'
  JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'pg_persona'
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'persona' ORDER BY 1;
SELECT count(*) AS extension_relations_in_public
  FROM pg_class c JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e'
  JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public';

-- Settings: all prefixed persona., all described.
LOAD 'pg_persona';
SELECT name, setting, unit, context, vartype FROM pg_settings WHERE name LIKE 'persona.%' ORDER BY name;
SELECT count(*) AS settings_without_description FROM pg_settings WHERE name LIKE 'persona.%' AND coalesce(short_desc, '') = '';
SET persona.no_such_setting = 1;

-- Error helper used by the other tests: SQLSTATE, message and hint of a failing statement.
CREATE SCHEMA regress;
CREATE FUNCTION regress.error_of(query text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE st text; msg text; hint text;
BEGIN
  EXECUTE query;
  RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
  GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, hint = PG_EXCEPTION_HINT;
  RETURN st || ': ' || msg || CASE WHEN hint <> '' THEN E'\nHINT: ' || hint ELSE '' END;
END $$;

-- The demo data set used by the following tests.
SELECT persona.load_demo();
SELECT regress.error_of('SELECT persona.load_demo()');
SELECT persona.load_demo(replace => true) ->> 'ratings' AS ratings_after_reload;
