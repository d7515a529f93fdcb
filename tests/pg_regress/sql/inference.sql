-- The shared inference worker (pg_persona in shared_preload_libraries, as scripts/cluster.sh
-- configures the test cluster): one session per graph for the whole server, every backend's
-- batches run there. Checked here: it runs, gives what a backend's own session gives, is never
-- served a replaced graph, survives a corrupt or half-written cache file, restarts after it
-- exits (failing the backends that waited on it with a clear error), and lets a waiting caller
-- be cancelled at once.
\getenv abs_srcdir PG_ABS_SRCDIR
\set datadir :abs_srcdir '/data'
CREATE EXTENSION dblink;
CREATE FUNCTION regress.worker_pid() RETURNS int LANGUAGE sql AS
  $$SELECT pid FROM pg_catalog.pg_stat_activity WHERE backend_type = 'pg_persona inference'$$;
-- Waits (up to 20 s) for a worker other than `old` to run.
CREATE FUNCTION regress.wait_for_worker(old int) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
  FOR i IN 1..200 LOOP
    PERFORM pg_catalog.pg_stat_clear_snapshot();
    IF regress.worker_pid() IS NOT NULL AND regress.worker_pid() IS DISTINCT FROM old THEN
      RETURN true;
    END IF;
    PERFORM pg_catalog.pg_sleep(0.1);
  END LOOP;
  RETURN false;
END $$;
SELECT regress.worker_pid() IS NOT NULL AS worker_running,
       current_setting('persona.inference') AS mode;

-- Worker and backend sessions agree: per text and in arrays, scores and embeddings (the worker
-- may pad a caller's batch together with another's, which changes nothing beyond float noise).
CREATE TABLE regress.texts AS
SELECT i, w1 || ' ' || w2 || repeat(' and more', i % 7) AS t
  FROM generate_series(1, 60) i,
       LATERAL (SELECT (ARRAY['good', 'awful', 'lovely', 'boring', 'fine', 'broken'])[1 + i % 6] AS w1,
                       (ARRAY['film', 'tent', 'service', 'boots', 'jacket'])[1 + i % 5] AS w2) w;
CREATE TEMP TABLE by_worker AS
SELECT i, bert_score(t) AS score, bert_embed(t) AS embedding FROM regress.texts;
CREATE TEMP TABLE by_worker_array AS
SELECT unnest(bert_score(array_agg(t ORDER BY i))) AS score,
       generate_series(1, 60) AS i FROM regress.texts;
SET persona.inference = backend;
CREATE TEMP TABLE by_backend AS
SELECT i, bert_score(t) AS score, bert_embed(t) AS embedding FROM regress.texts;
RESET persona.inference;
SELECT count(*) AS texts,
       max(abs(w.score - b.score)) < 1e-5 AS scores_equal,
       max(abs(a.score - b.score)) < 1e-5 AS array_scores_equal,
       max((SELECT max(abs(x - y)) FROM unnest(w.embedding, b.embedding) u(x, y))) < 1e-5 AS embeddings_equal
  FROM by_worker w JOIN by_backend b USING (i) JOIN by_worker_array a USING (i);

-- What holds the graph: the worker (for both models on it), the file cache, and this backend's
-- own session from persona.inference = backend above.
SELECT holder, models, task, bytes > 0 AS has_bytes
  FROM persona.text_cache WHERE 'sentiment' = ANY (models) ORDER BY holder;
SELECT w.bytes < 400 * 1024 * 1024 AS worker_session_under_400mb
  FROM persona.text_cache w WHERE holder = 'worker' AND 'sentiment' = ANY (models);

-- A replaced graph is never served stale: another connection replaces w_swap (the tiny test
-- encoder) by MiniLM's graph; this backend, and the worker, serve the new one at this backend's
-- next transaction.
SELECT (bert_register_model('w_swap', pg_read_binary_file(:'datadir' || '/encoder.onnx'),
                            pg_read_file(:'datadir' || '/tokenizer.json'), 'embedding',
                            '{"max_length": 16}')) ->> 'dim' AS tiny_dim;
SELECT array_length(bert_embed('good film', 'w_swap'), 1) AS dim_before;
SELECT dblink_connect('other', 'dbname=' || current_database()) AS connected;
SELECT r ->> 'dim' AS replaced_dim FROM dblink('other',
  $$SELECT bert_register_model('w_swap', onnx, tokenizer, 'embedding', '{"replace": true}')
      FROM persona.bert_model_store WHERE name = 'minilm'$$) AS t(r jsonb);
SELECT array_length(bert_embed('good film', 'w_swap'), 1) AS dim_after,
       bert_embed('good film', 'w_swap') = bert_embed('good film', 'minilm') AS serves_new_graph;

-- A corrupt cache file (a crash half-way through a copy that was not atomic, an edit) is never
-- used: the worker checks each file against its name (SHA-256) when it loads a graph, removes a
-- file that does not match, and the backend writes it again from the database. A leftover
-- temporary file of an interrupted write is removed when the worker starts.
SELECT (bert_register_model('w_tiny2', pg_read_binary_file(:'datadir' || '/encoder.onnx'),
                            pg_read_file(:'datadir' || '/tokenizer.json'), 'embedding',
                            '{"max_length": 16}')) ->> 'name' AS registered;
CREATE TEMP TABLE tiny_before AS SELECT bert_embed('good film', 'w_tiny2') AS e;
SELECT encode(pg_catalog.sha256(pg_read_binary_file(:'datadir' || '/encoder.onnx')), 'hex') AS tiny_hash,
       current_setting('data_directory') || '/pg_persona/graphs/' AS graphs \gset
\set tiny_file :graphs :tiny_hash '.onnx'
\set temp_file :graphs :tiny_hash '.4242.tmp'
SELECT (pg_stat_file(:'tiny_file')).size = length(pg_read_binary_file(:'datadir' || '/encoder.onnx')) AS file_whole;
COPY (SELECT 'not an onnx graph') TO :'tiny_file';
COPY (SELECT 'half a graph') TO :'temp_file';
SELECT regress.worker_pid() AS old_pid \gset
SELECT pg_terminate_backend(:old_pid) AS worker_stopped;
SELECT regress.wait_for_worker(:old_pid) AS worker_restarted;
SELECT (SELECT e FROM tiny_before) = bert_embed('good film', 'w_tiny2') AS same_embedding_after_corruption;
SELECT (pg_stat_file(:'tiny_file')).size = length(pg_read_binary_file(:'datadir' || '/encoder.onnx')) AS file_rewritten,
       pg_stat_file(:'temp_file', true) IS NULL AS temporary_file_removed;

-- The worker exits while backends wait on it (here pg_terminate_backend; a crash inside it, an
-- ERROR, ends it the same way): it finishes the run in progress, a request still queued behind
-- it fails with an error that says so, the postmaster starts a new worker within about a
-- second, and the next call is served. The caller whose run was in progress carries on with the
-- new worker. (One run of 64 texts of 256 tokens, bounds lifted: seconds on two cores.)
SELECT dblink_connect('third', 'dbname=' || current_database()) AS connected;
SELECT s > 0.5 AS third_warmed FROM dblink('third', $$SELECT bert_score('warm up, a lovely day')$$) AS t(s real);
SELECT dblink_exec('other', 'SET persona.batch_size = 4096') AS set,
       dblink_exec('other', 'SET persona.max_batch_tokens = 16777216') AS set,
       dblink_exec('other', 'SET persona.max_inference_memory = ''4GB''') AS set;
SELECT dblink_send_query('other',
  $$SELECT count(*) FROM bert_embed((SELECT array_agg(repeat('word ', 254) || i) FROM generate_series(1, 64) i))$$) AS sent;
SELECT pg_sleep(1);
SELECT dblink_send_query('third', $$SELECT bert_score('queued behind the long run')$$) AS sent;
SELECT pg_sleep(0.3);
SELECT regress.worker_pid() AS old_pid \gset
SELECT pg_terminate_backend(:old_pid) AS worker_stopped;
SELECT regress.error_of($$SELECT * FROM dblink_get_result('third') AS t(s real)$$) AS queued_caller;
SELECT * FROM dblink_get_result('third') AS t(s real);
SELECT n AS long_run_finished FROM dblink_get_result('other') AS t(n bigint);
SELECT * FROM dblink_get_result('other') AS t(n bigint);
SELECT regress.wait_for_worker(:old_pid) AS worker_restarted;
SELECT round(bert_score('a lovely film')::numeric, 2) AS served_again;
SELECT dblink_exec('other', 'RESET persona.max_inference_memory') AS reset;
CREATE TABLE regress.worker_texts AS SELECT t || ' ' || g AS t FROM regress.texts, generate_series(1, 100) g;

-- pg_cancel_backend (here statement_timeout) of a caller waiting on the worker returns within a
-- second; the request it abandoned does not block its next one.
SELECT pg_catalog.clock_timestamp() AS t0 \gset
SET statement_timeout = '1s';
SELECT count(*) FROM unnest(bert_score(ARRAY(SELECT t FROM regress.worker_texts)));
RESET statement_timeout;
SELECT pg_catalog.clock_timestamp() - :'t0'::timestamptz < interval '2 s' AS cancelled_in_time;
SELECT round(bert_score('a lovely film')::numeric, 2) AS served_after_cancel;

-- The worker's memory per run is bounded like a backend's: with the caller's bounds lifted,
-- 128 texts of 256 tokens (2.7 GB in one batch) take the worker less than 600 MB above where
-- it was.
CREATE TEMP TABLE worker_rss AS SELECT
  (regexp_match(pg_read_file('/proc/' || regress.worker_pid() || '/status'), 'VmRSS:\s+(\d+)'))[1]::bigint AS before_kb;
SELECT n AS embedded FROM dblink('other',
  $$SELECT count(*) FROM bert_embed((SELECT array_agg(repeat('word ', 254) || i) FROM generate_series(1, 128) i))$$) AS t(n bigint);
SELECT ((regexp_match(pg_read_file('/proc/' || regress.worker_pid() || '/status'), 'VmHWM:\s+(\d+)'))[1]::bigint - before_kb) / 1024 < 600 AS worker_within_bound
  FROM worker_rss;

-- persona.inference = worker without the worker is an error naming the fix; backend mode
-- bounds a backend's own sessions (persona.max_backend_text_memory, least recently used first).
SET persona.inference = backend;
SELECT array_length(bert_embed('good', 'minilm'), 1) AS minilm_dim;
SELECT 'minilm' = ANY (models) AS minilm_held FROM persona.text_cache WHERE holder = 'backend' AND pid = pg_backend_pid();
SET persona.max_backend_text_memory = '1MB';
SELECT array_length(bert_embed('good', 'w_tiny2'), 1) AS tiny_dim;
SELECT count(*) FILTER (WHERE 'minilm' = ANY (models)) AS minilm_still_held
  FROM persona.text_cache WHERE holder = 'backend' AND pid = pg_backend_pid();
RESET persona.max_backend_text_memory;
RESET persona.inference;
SELECT regress.error_of($$SET persona.inference = 'gpu'$$);

SELECT dblink_disconnect('other') AS disconnected, dblink_disconnect('third') AS disconnected;
DROP EXTENSION dblink;
SELECT bert_drop_model('w_swap') AS dropped, bert_drop_model('w_tiny2') AS dropped;
-- A dropped graph's cache file goes with its last row in this database (it is a cache: another
-- database that uses the same graph writes it again).
SELECT EXISTS (SELECT FROM persona.bert_model_store WHERE onnx_sha256 = decode(:'tiny_hash', 'hex')) AS tiny_graph_still_stored,
       pg_stat_file(:'tiny_file', true) IS NOT NULL AS tiny_file_present;
SELECT count(*) FILTER (WHERE 'minilm' = ANY (models)) AS minilm_file
  FROM persona.text_cache WHERE holder = 'file';
-- The worker's counters: it started more than once here (two exits above), and every batch it
-- ran was a caller's (several may share a run).
SELECT starts >= 3 AS restarted, runs > 0 AND batches >= runs AS batches_counted, texts >= batches AS texts_counted
  FROM persona.inference_worker;
