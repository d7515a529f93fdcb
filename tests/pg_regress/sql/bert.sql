-- Text models: the ONNX Runtime library, devices, registration from bytes and files, scoring,
-- embedding, batching, training, and every bad input (each an ERROR with a SQLSTATE and a hint,
-- after which the backend still works). The tiny graphs are persona-core's test fixtures,
-- copied into data/ by scripts/regress.sh. Floats are rounded.
\getenv abs_srcdir PG_ABS_SRCDIR
\set datadir :abs_srcdir '/data'
LOAD 'pg_persona';
CREATE FUNCTION regress.masked(query text) RETURNS text LANGUAGE sql AS $$
  SELECT replace(regress.error_of(query), current_setting('regress.datadir'), '<data>') $$;
SELECT set_config('regress.datadir', :'datadir', false) IS NOT NULL AS datadir_set;

-- ONNX Runtime is loaded on first use. A missing or too old library is an ERROR, and a failed
-- attempt leaves nothing behind: the right library still loads afterwards in this backend.
-- (These library and device checks are of a backend running its own sessions; the shared
-- inference worker's: inference.sql.)
SET persona.inference = backend;
SET persona.onnxruntime_library = '/nonexistent/libonnxruntime.so';
SELECT regress.error_of($$SELECT bert_embed('hello')$$);
SELECT set_config('persona.onnxruntime_library', :'datadir' || '/libonnxruntime_old.so', false) IS NOT NULL AS set;
SELECT regress.masked($$SELECT bert_embed('hello')$$);
SET persona.onnxruntime_library = 'libonnxruntime.so';
SELECT regress.error_of($$SELECT bert_embed('hello')$$);
RESET persona.onnxruntime_library;

-- Devices: cuda without the CUDA execution provider is an ERROR; auto falls back to the CPU with
-- one NOTICE per backend.
SET persona.device = 'cuda';
SELECT regress.error_of($$SELECT bert_embed('hello')$$);
SET persona.device = 'auto';
SELECT array_length(bert_embed('hello'), 1) AS dims_auto;
SELECT array_length(bert_embed('hello again'), 1) AS dims_auto_again;
RESET persona.device;
RESET persona.inference;

-- The default models, registered by CREATE EXTENSION.
SELECT name, task, encoder, dim, labels, positive_label, pooling, max_length, has_head, onnx_bytes > 20000000 AS big, builtin
  FROM persona.bert_models ORDER BY name;
SELECT bert_register_defaults();
-- Re-registering them from the files keeps sentiment, which is trained on minilm.
SELECT key, value::text LIKE '"registered version %' AS registered FROM jsonb_each(bert_register_defaults(replace => true));

-- minilm: 384 dimensions, unit length, any script; the empty text is [CLS] [SEP].
SELECT t AS text, array_length(e, 1) AS dims, round((SELECT sqrt(sum(x::float8 * x)) FROM unnest(e) x)::numeric, 5) AS norm
  FROM (VALUES ('The movie was great'), (''), ('日本語のテキスト'), ('مرحبا بالعالم'), ('🎉🎉')) v(t),
       LATERAL (SELECT bert_embed(t) AS e) x;
-- Cosine similarity is a dot product of the unit vectors: paraphrases are closer.
SELECT round((SELECT sum(a::float8 * b) FROM unnest(bert_embed('a cheap laptop for students'), bert_embed('an inexpensive notebook computer for pupils')) u(a, b))::numeric, 2) >
       round((SELECT sum(a::float8 * b) FROM unnest(bert_embed('a cheap laptop for students'), bert_embed('the weather is rainy in Paris')) u(a, b))::numeric, 2) AS paraphrase_closer;

-- sentiment: obviously positive sentences score above obviously negative ones.
SELECT t AS text, bert_score(t) > 0.5 AS positive
  FROM (VALUES ('This is a wonderful, moving film with superb acting.'),
               ('I loved every minute of it, a delight.'),
               ('A dull, boring mess. I want my money back.'),
               ('Terrible service and the food was awful.')) v(t);
SELECT min(bert_score(p)) > max(bert_score(n)) AS separated
  FROM (VALUES ('great, fantastic, I love it'), ('a beautiful and touching story'), ('best purchase I ever made')) a(p),
       (VALUES ('awful, I hate it'), ('a waste of time and money'), ('the worst film of the year')) b(n);
SELECT c ->> 'label' AS label, (c -> 'scores') ?& ARRAY['negative', 'positive'] AS all_scores,
       round(((c -> 'scores' ->> 'negative')::numeric + (c -> 'scores' ->> 'positive')::numeric), 4) AS total
  FROM (SELECT bert_classify('An absolute triumph, funny and warm.') AS c) x;

-- NULL in, NULL out; NULL elements of a batch stay NULL; empty arrays give empty results.
SELECT bert_score(NULL::text) IS NULL AS null_score, bert_embed(NULL::text) IS NULL AS null_embed,
       bert_classify(NULL) IS NULL AS null_classify, bert_score('good', NULL) IS NULL AS null_model;
SELECT array_length(s, 1) AS n, s[2] IS NULL AS second_null, s[1] IS NOT NULL AND s[3] IS NOT NULL AS others
  FROM (SELECT bert_score(ARRAY['good', NULL, '']) AS s) x;
SELECT bert_score(ARRAY[]::text[]) AS empty_scores;
SELECT count(*) AS empty_embeddings FROM bert_embed(ARRAY[]::text[]);
SELECT ord, embedding IS NULL AS null_embedding FROM bert_embed(ARRAY['a', NULL, 'b']);

-- A batch scores exactly like the texts one by one (texts of different lengths, sorted and padded
-- inside the batch), for the array forms and for any batch size.
CREATE TABLE regress.reviews AS
SELECT i, (ARRAY['good', 'A long and winding review of a film that was, on the whole, rather good but slow.',
                 'bad', '', 'The acting was superb; the plot, however, made no sense at all.',
                 'ok ok ok', 'I would not recommend this product to anyone.'])[1 + i % 7] || repeat(' really', i % 5) AS body
  FROM generate_series(1, 40) i;
SELECT max(abs(b.s - bert_score(r.body)))::numeric < 1e-5 AS batch_equals_single
  FROM regress.reviews r
  JOIN (SELECT unnest(bert_score(array_agg(body ORDER BY i))) AS s, unnest(array_agg(i ORDER BY i)) AS i FROM regress.reviews) b USING (i);
SET persona.batch_size = 3;
SET persona.max_batch_tokens = 40;
SELECT max(abs(b.s - bert_score(r.body)))::numeric < 1e-5 AS small_batches_equal_single
  FROM regress.reviews r
  JOIN (SELECT unnest(bert_score(array_agg(body ORDER BY i))) AS s, unnest(array_agg(i ORDER BY i)) AS i FROM regress.reviews) b USING (i);
RESET persona.batch_size;
RESET persona.max_batch_tokens;
SELECT max(abs(x - y))::numeric < 1e-5 AS embed_batch_equals_single
  FROM (SELECT e.ord, e.embedding FROM bert_embed(ARRAY['good', 'a much longer sentence about the film', '']) e) b,
       LATERAL unnest(b.embedding, bert_embed((ARRAY['good', 'a much longer sentence about the film', ''])[b.ord])) u(x, y);

-- Registering the tiny test graphs from bytes: an encoder (input_ids, attention_mask,
-- token_type_ids -> last_hidden_state) and a DistilBERT-shaped classifier (no token_type_ids ->
-- logits, three labels).
SELECT r - 'version' AS registered
  FROM bert_register_model('tiny', pg_read_binary_file(:'datadir' || '/encoder.onnx'),
                           pg_read_file(:'datadir' || '/tokenizer.json'), 'embedding', '{"max_length": 16}') r;
SELECT r - 'version' AS registered
  FROM bert_register_model('tiny_cls', pg_read_binary_file(:'datadir' || '/classifier.onnx'),
                           pg_read_file(:'datadir' || '/tokenizer.json'), 'classification',
                           '{"max_length": 16, "labels": ["neg", "neutral", "pos"], "positive_label": "pos"}') r;
SELECT name, task, encoder, dim, labels, positive_label, pooling, max_length, has_head, onnx_bytes, builtin
  FROM persona.bert_models WHERE name LIKE 'tiny%' ORDER BY name;

-- Parity with Python onnxruntime + tokenizers (reference.json, written by scripts/make_test_onnx.py):
-- embeddings and logits-derived scores agree to 1e-4.
CREATE TABLE regress.reference AS
SELECT c ->> 'text' AS text, c -> 'embedding' AS embedding, c -> 'classifier_logits' AS logits
  FROM jsonb_array_elements(pg_read_file(:'datadir' || '/reference.json')::jsonb -> 'cases') c;
SELECT count(*) AS cases,
       max((SELECT max(abs(x - y::float8)) FROM unnest(bert_embed(r.text, 'tiny'), ARRAY(SELECT jsonb_array_elements_text(r.embedding)::float8)) u(x, y))) < 1e-4 AS embeddings_match
  FROM regress.reference r;
SELECT max(abs(bert_score(r.text, 'tiny_cls') - p.pos)) < 1e-4 AS scores_match
  FROM regress.reference r,
       LATERAL (SELECT exp((r.logits ->> 2)::float8) / (exp((r.logits ->> 0)::float8) + exp((r.logits ->> 1)::float8) + exp((r.logits ->> 2)::float8)) AS pos) p;
SELECT (c - 'score' - 'scores') AS top, jsonb_object_keys(c -> 'scores') AS label
  FROM (SELECT bert_classify('good', 'tiny_cls') AS c) x ORDER BY 2;

-- Truncation: texts longer than max_length tokens (16 here, special tokens included) are cut at
-- the end, so anything past the 14th word does not matter; persona.max_sequence_length lowers it.
SELECT bert_embed(repeat('good ', 14) || 'bad', 'tiny') = bert_embed(repeat('good ', 14) || 'terrible', 'tiny') AS truncated_at_16,
       bert_embed(repeat('good ', 13) || 'bad', 'tiny') = bert_embed(repeat('good ', 13) || 'terrible', 'tiny') AS distinct_before;
SELECT array_length(bert_embed(repeat('good ', 100000), 'tiny'), 1) AS very_long_text;
SET persona.max_sequence_length = 8;
SELECT bert_embed(repeat('good ', 6) || 'bad', 'tiny') = bert_embed(repeat('good ', 6) || 'terrible', 'tiny') AS truncated_at_8;
RESET persona.max_sequence_length;

-- A new version of a model is seen at once by this backend's cache (and by others at their next
-- transaction): replacing tiny_cls with "neg" as the positive label turns P(pos) into P(neg).
SELECT round(bert_score('good', 'tiny_cls')::numeric, 4) AS p_pos,
       round(((bert_classify('good', 'tiny_cls') -> 'scores' ->> 'neg')::numeric), 4) AS p_neg;
SELECT (bert_register_model('tiny_cls', pg_read_binary_file(:'datadir' || '/classifier.onnx'),
                            pg_read_file(:'datadir' || '/tokenizer.json'), 'classification',
                            '{"max_length": 16, "labels": ["neg", "neutral", "pos"], "positive_label": 0, "replace": true}')) ->> 'positive_label' AS replaced;
SELECT round(bert_score('good', 'tiny_cls')::numeric, 4) AS p_now_neg;

-- Training a head on the tiny encoder: held-out split, metrics, registration, scoring; then a
-- choice of settings on a validation relation.
CREATE TABLE regress.labelled AS
SELECT t AS text, CASE WHEN t ~ '(good|great|love|happy)' THEN 'yes' ELSE 'no' END AS label
  FROM (SELECT w1 || ' ' || w2 || ' ' || w3 AS t
          FROM unnest(ARRAY['good', 'great', 'love', 'happy', 'bad', 'terrible', 'hate', 'sad']) w1,
               unnest(ARRAY['movie', 'film', 'product', 'service']) w2,
               unnest(ARRAY['!', '.', 'again']) w3) s;
SELECT label, count(*) FROM regress.labelled GROUP BY 1 ORDER BY 1;
SELECT s ->> 'model' AS model, s ->> 'encoder' AS encoder, s -> 'labels' AS labels, s ->> 'positive_label' AS positive,
       s -> 'class_counts' AS counts, s -> 'train_rows' AS train_rows, s -> 'holdout_rows' AS holdout_rows,
       round((s -> 'holdout' ->> 'accuracy')::numeric, 2) AS holdout_accuracy, s -> 'holdout' ? 'roc_auc' AS has_auc,
       s -> 'holdout' ? 'macro_f1' AS has_f1, (s ->> 'rows_per_second')::float8 > 0 AS measured
  FROM bert_train_classifier('tiny_yes', 'regress.labelled', 'tiny', '{"seed": 7, "l2": 0.001}') s;
SELECT bert_score('great film !', 'tiny_yes') > 0.5 AS great_is_yes, bert_score('terrible film !', 'tiny_yes') < 0.5 AS terrible_is_no;
SELECT name, task, encoder, dim, labels, positive_label, has_head, holdout_metrics ->> 'n' AS holdout_n
  FROM persona.bert_models WHERE name = 'tiny_yes';
-- A direct UPDATE of a stored model takes a new version, and this backend's cached model
-- follows at its next statement: flipping the positive label flips the score.
UPDATE persona.bert_model_store SET spec = spec || '{"positive_label": 0}', positive_label = 'no' WHERE name = 'tiny_yes';
SELECT bert_score('great film !', 'tiny_yes') < 0.5 AS now_scores_no;
UPDATE persona.bert_model_store SET spec = spec || '{"positive_label": 1}', positive_label = 'yes' WHERE name = 'tiny_yes';
SELECT bert_score('great film !', 'tiny_yes') > 0.5 AS scores_yes_again;
CREATE VIEW regress.labelled_valid AS SELECT text || ' ok' AS text, label FROM regress.labelled;
SET client_min_messages = warning; -- one NOTICE per setting, with metrics to 4 digits
SELECT s -> 'l2' AS chosen_l2, jsonb_array_length(s -> 'candidates') AS candidates, s -> 'holdout' AS holdout,
       (s -> 'validation_metrics' ->> 'n')::int AS validation_n
  FROM bert_train_classifier('tiny_yes', 'regress.labelled', 'tiny',
         '{"holdout_fraction": 0, "validation": "regress.labelled_valid", "l2": [0.0001, 0.01], "balanced": [false, true], "replace": true}') s;
RESET client_min_messages;
-- Poolings: "mean+cls" puts the mean and the [CLS] state side by side (twice the encoder's
-- width, unit length); a list compares poolings from one inference pass.
SELECT s ->> 'pooling' AS pooling, (s -> 'holdout' ->> 'accuracy')::float8 > 0.5 AS learned
  FROM bert_train_classifier('tiny_both', 'regress.labelled', 'tiny', '{"seed": 7, "pooling": "mean+cls"}') s;
SELECT m.dim = 2 * e.dim AS twice_the_width, m.pooling,
       array_length(bert_embed('good', 'tiny_both'), 1) = m.dim AS embeds_pooled,
       abs((SELECT sum(v * v) FROM unnest(bert_embed('good', 'tiny_both')) v) - 1) < 1e-5 AS unit_length,
       bert_score('great film !', 'tiny_both') > 0.5 AS great_is_yes
  FROM persona.bert_models m, persona.bert_models e WHERE m.name = 'tiny_both' AND e.name = 'tiny';
SET client_min_messages = warning;
SELECT (SELECT jsonb_agg(DISTINCT c -> 'pooling') FROM jsonb_array_elements(s -> 'candidates') c) AS compared,
       s -> 'pooling' IN ('"mean"', '"cls"', '"mean+cls"') AS chose_one,
       (SELECT max((c ->> 'accuracy')::float8) FROM jsonb_array_elements(s -> 'candidates') c)
         = (s -> 'holdout' ->> 'accuracy')::float8 AS chose_the_best
  FROM bert_train_classifier('tiny_both', 'regress.labelled', 'tiny',
         '{"seed": 7, "pooling": ["mean", "cls", "mean+cls", "mean"], "replace": true}') s;
RESET client_min_messages;
SELECT regress.error_of($$SELECT bert_train_classifier('c1', 'regress.labelled', 'tiny', '{"pooling": "max"}')$$);
SELECT regress.error_of($$SELECT bert_train_classifier('c1', 'regress.labelled', 'tiny', '{"pooling": []}')$$);
SELECT bert_drop_model('tiny_both') AS dropped;
-- Integer labels work too, ordered as numbers (9 before 10); with two labels the second is positive.
CREATE VIEW regress.labelled_int AS SELECT text, CASE label WHEN 'yes' THEN 10 ELSE 9 END AS label FROM regress.labelled;
SELECT s -> 'labels' AS labels, s ->> 'positive_label' AS positive
  FROM bert_train_classifier('tiny_int', 'regress.labelled_int', 'tiny') s;

-- Registering from files: only under persona.model_dir, never through "..", never through a
-- symbolic link out of it; only superusers and members of pg_read_server_files.
SELECT set_config('persona.model_dir', :'datadir' || '/models', false) IS NOT NULL AS set;
SELECT r ->> 'name' AS name, r ->> 'dim' AS dim, r -> 'inputs' AS inputs, r ->> 'output' AS output
  FROM bert_register_model_file('tiny_file', 'tiny', 'embedding', '{"max_length": 16}') r;
SELECT bert_embed('good', 'tiny_file') = bert_embed('good', 'tiny') AS same_as_bytes;
SELECT regress.masked($$SELECT bert_register_model_file('x', '../outside', 'embedding', '{"max_length": 16}')$$);
SELECT regress.masked($$SELECT bert_register_model_file('x', 'escape', 'embedding', '{"max_length": 16}')$$);
SELECT regress.masked($$SELECT bert_register_model_file('x', 'linked', 'embedding', '{"max_length": 16}')$$);
SELECT regress.masked($$SELECT bert_register_model_file('x', '/etc', 'embedding')$$);
SELECT regress.masked($$SELECT bert_register_model_file('x', 'nothing_here', 'embedding')$$);
CREATE ROLE regress_bert_user;
GRANT USAGE ON SCHEMA regress TO regress_bert_user;
SET ROLE regress_bert_user;
SELECT regress.masked($$SELECT bert_register_model_file('x', 'tiny', 'embedding', '{"max_length": 16}')$$);
-- Any role may use the built-in models; the others are their owner's until granted
-- (privileges.sql); storing needs INSERT on the table.
SELECT bert_score('good') IS NOT NULL AS user_scores, array_length(bert_embed('good'), 1) AS user_embeds;
SELECT regress.error_of($$SELECT bert_score('good', 'tiny_yes')$$);
SELECT regress.error_of($$SELECT bert_drop_model('tiny_file')$$);
SELECT regress.error_of($$SELECT bert_train_classifier('c1', 'regress.labelled', 'tiny')$$);
-- The settings that bound a backend's memory are not an ordinary role's to raise.
SELECT regress.error_of($$SET persona.batch_size = 4096$$);
SELECT regress.error_of($$SET persona.max_batch_tokens = 16777216$$);
SELECT regress.error_of($$SET persona.max_training_memory = '2TB'$$);
SELECT regress.error_of($$SET persona.max_inference_memory = '64GB'$$);
SELECT regress.error_of($$SELECT set_config('persona.max_batch_tokens', '16777216', false)$$);
SELECT current_setting('persona.batch_size') AS batch_size, current_setting('persona.max_batch_tokens') AS max_batch_tokens;
RESET ROLE;
REVOKE USAGE ON SCHEMA regress FROM regress_bert_user;
DROP ROLE regress_bert_user;
RESET persona.model_dir;

-- Each inference run's memory is estimated before it runs, and batches are cut to fit
-- persona.max_inference_memory (512 MB by default): even with the other bounds lifted, 128 texts
-- of 256 tokens take a fresh backend running its own sessions less than 600 MB above where it
-- started (one batch of them took 2.7 GB before; 1,024 took the backend past the machine's
-- memory and the OOM killer restarted the server). The inference worker's side: inference.sql.
CREATE EXTENSION dblink;
SELECT dblink_connect('mem', 'dbname=' || current_database()) AS connected;
SELECT dblink_exec('mem', 'SET persona.inference = backend') AS set;
SELECT dblink_exec('mem', 'SET persona.batch_size = 4096') AS set, dblink_exec('mem', 'SET persona.max_batch_tokens = 16777216') AS set;
SELECT n AS warmed FROM dblink('mem', $$SELECT count(*) FROM bert_embed(ARRAY['warm up'])$$) AS t(n bigint);
CREATE TEMP TABLE rss AS SELECT kb AS before_kb FROM dblink('mem',
  $$SELECT (regexp_match(pg_read_file('/proc/' || pg_backend_pid() || '/status'), 'VmRSS:\s+(\d+)'))[1]::bigint$$) AS t(kb bigint);
SELECT n AS embedded FROM dblink('mem',
  $$SELECT count(*) FROM bert_embed((SELECT array_agg(repeat('word ', 254) || i) FROM generate_series(1, 128) i))$$) AS t(n bigint);
SELECT (peak_kb - before_kb) / 1024 < 600 AS within_bound
  FROM rss, dblink('mem', $$SELECT (regexp_match(pg_read_file('/proc/' || pg_backend_pid() || '/status'), 'VmHWM:\s+(\d+)'))[1]::bigint$$)
       AS t(peak_kb bigint);
SELECT dblink_disconnect('mem') AS disconnected;
DROP EXTENSION dblink;
-- A text too large to run alone within the bound is refused before anything runs.
SET persona.max_inference_memory = '100MB';
SELECT array_length(bert_embed('a short text'), 1) AS short_text_runs;
SELECT regress.error_of($$SELECT bert_embed(repeat('word ', 300))$$);
RESET persona.max_inference_memory;

-- Bad models and inputs: each an ERROR with a SQLSTATE and a hint; the backend survives.
SELECT regress.error_of($$SELECT bert_score('good', 'no_such_model')$$);
SELECT regress.error_of($$SELECT bert_score('good', 'minilm')$$);
SELECT regress.error_of($$SELECT bert_embed('good', 'tiny_cls')$$);
SELECT regress.error_of($$SELECT bert_register_model('bad', '\x00010203'::bytea, '{}', 'embedding')$$);
SELECT regress.error_of(format('SELECT bert_register_model(%L, substring(pg_read_binary_file(%L) for 1000), pg_read_file(%L))',
                               'bad', :'datadir' || '/encoder.onnx', :'datadir' || '/tokenizer.json'));
SELECT regress.error_of(format('SELECT bert_register_model(%L, pg_read_binary_file(%L), pg_read_file(%L))',
                               'bad', :'datadir' || '/unexpected_input.onnx', :'datadir' || '/tokenizer.json'));
SELECT regress.error_of(format('SELECT bert_register_model(%L, pg_read_binary_file(%L), pg_read_file(%L))',
                               'bad', :'datadir' || '/unexpected_output.onnx', :'datadir' || '/tokenizer.json'));
SELECT regress.error_of(format('SELECT bert_register_model(%L, pg_read_binary_file(%L), pg_read_file(%L))',
                               'bad', :'datadir' || '/wrong_dtype.onnx', :'datadir' || '/tokenizer.json'));
SELECT regress.error_of(format('SELECT bert_register_model(%L, pg_read_binary_file(%L), pg_read_file(%L), %L)',
                               'bad', :'datadir' || '/encoder.onnx', :'datadir' || '/tokenizer.json', 'classification'));
SELECT regress.error_of(format('SELECT bert_register_model(%L, pg_read_binary_file(%L), pg_read_file(%L), %L, %L)',
                               'bad', :'datadir' || '/encoder.onnx', :'datadir' || '/tokenizer_big.json', 'embedding', '{"max_length": 16}'));
SELECT regress.error_of(format('SELECT bert_register_model(%L, pg_read_binary_file(%L), %L)',
                               'bad', :'datadir' || '/encoder.onnx', '{not json'));
SELECT regress.error_of(format('SELECT bert_register_model(%L, pg_read_binary_file(%L), pg_read_file(%L), %L, %L)',
                               'bad', :'datadir' || '/encoder.onnx', :'datadir' || '/tokenizer.json', 'embedding', '{"max_length": 64}'));
SELECT regress.error_of(format('SELECT bert_register_model(%L, pg_read_binary_file(%L), pg_read_file(%L), %L)',
                               'bad', :'datadir' || '/encoder.onnx', :'datadir' || '/tokenizer.json', 'regression'));
SELECT regress.error_of(format('SELECT bert_register_model(%L, pg_read_binary_file(%L), pg_read_file(%L), %L, %L)',
                               'bad', :'datadir' || '/encoder.onnx', :'datadir' || '/tokenizer.json', 'embedding', '{"max_lenght": 16}'));
SELECT regress.error_of(format('SELECT bert_register_model(%L, pg_read_binary_file(%L), pg_read_file(%L), %L, %L)',
                               'tiny', :'datadir' || '/encoder.onnx', :'datadir' || '/tokenizer.json', 'embedding', '{"max_length": 16}'));
SELECT regress.error_of($$SELECT bert_register_model('bad name!', '\x00'::bytea, '{}')$$);
SELECT regress.error_of($$SELECT bert_register_model('bad', NULL::bytea, '{}')$$);
SELECT count(*) AS bad_models_stored FROM persona.bert_model_store WHERE name IN ('bad', 'x');
-- Training errors: one class, missing columns, unknown validation relation, bad options.
CREATE VIEW regress.one_class AS SELECT text, 'yes'::text AS label FROM regress.labelled;
SELECT regress.error_of($$SELECT bert_train_classifier('c1', 'regress.one_class', 'tiny')$$);
SELECT regress.error_of($$SELECT bert_train_classifier('c1', 'regress.labelled', 'tiny', '{"label_column": "stars"}')$$);
SELECT regress.error_of($$SELECT bert_train_classifier('c1', 'regress.labelled', 'tiny', '{"validation": "regress.nope"}')$$);
SELECT regress.error_of($$SELECT bert_train_classifier('c1', 'regress.labelled', 'tiny', '{"l2": [0.1, 1], "holdout_fraction": 0}')$$);
SELECT regress.error_of($$SELECT bert_train_classifier('c1', 'regress.labelled', 'tiny', '{"l2": -1}')$$);
SELECT regress.error_of($$SELECT bert_train_classifier('c1', 'regress.labelled', 'tiny_cls')$$);
SELECT regress.error_of($$SELECT bert_train_classifier('tiny_yes', 'regress.labelled', 'tiny')$$);
SELECT regress.error_of($$SELECT bert_train_classifier('c1', 'regress.labelled', 'tiny', '{"positive_label": "maybe"}')$$);
-- Dropping: models trained on an encoder keep it, unless cascade.
SELECT regress.error_of($$SELECT bert_drop_model('tiny')$$);
SELECT regress.error_of($$SELECT bert_drop_model('nope')$$);
SELECT bert_drop_model('tiny', cascade => true) AS dropped;
SELECT bert_drop_model('tiny_cls') AS dropped;
SELECT bert_drop_model('tiny_file') AS dropped;
SELECT regress.error_of($$SELECT bert_score('good', 'tiny_yes')$$);
-- Still alive after every error.
SELECT round(bert_score('a lovely film')::numeric, 1) > 0.5 AS alive;

-- Parallel query: the functions are PARALLEL SAFE; workers load ONNX Runtime and the model
-- themselves and give the same scores.
CREATE TABLE regress.many AS SELECT i, 'review number ' || i || CASE WHEN i % 2 = 0 THEN ' was great' ELSE ' was awful' END AS body
  FROM generate_series(1, 200) i;
ANALYZE regress.many;
SET parallel_setup_cost = 0;
SET parallel_tuple_cost = 0;
SET min_parallel_table_scan_size = 0;
SET max_parallel_workers_per_gather = 2;
EXPLAIN (COSTS OFF) SELECT sum(bert_score(body)::float8) FROM regress.many;
SELECT sum(bert_score(body)::float8) AS parallel_sum FROM regress.many \gset
RESET max_parallel_workers_per_gather;
RESET parallel_setup_cost;
RESET parallel_tuple_cost;
RESET min_parallel_table_scan_size;
SET max_parallel_workers_per_gather = 0;
SELECT abs(sum(bert_score(body)::float8) - :parallel_sum) < 1e-3 AS same_without_workers FROM regress.many;
RESET max_parallel_workers_per_gather;
