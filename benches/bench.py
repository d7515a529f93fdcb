"""pg_persona benchmarks against their references, in one run on one machine. See benches/run.sh."""
import json
import os
import platform
import statistics
import threading
import time

import psycopg

ML = os.environ.get("ML100K", "")
SCALE = float(os.environ.get("BENCH_SCALE", "1"))
conn = psycopg.connect(dbname="persona_bench", autocommit=True)
conn.execute("CREATE EXTENSION IF NOT EXISTS pg_persona")
conn.execute("SET max_parallel_workers_per_gather = 0")
results = {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}"}
# BENCH_ONLY=cf,recommend,campaign,text,foldin,beyond,implicit runs some sections; run.sh merges them into results.json.
# "scale" (synthetic 1M/5M/25M ratings, ~1 hour), "scale_catalogue" (the same with 25M's users and items at
# every size, ~20 minutes) and "portraits" (~15 minutes) run only when asked.
ONLY = set(os.environ.get("BENCH_ONLY", "cf,recommend,campaign,campaign_v2,text,foldin,beyond,implicit,coldstart").split(","))


def best(fn, repeat=5):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times), statistics.median(times)


def q(sql, *args):
    cur = conn.execute(sql, args or None)
    return cur.fetchall() if cur.description else []


def section(name):
    print(f"\n== {name}", flush=True)


def load_u1():
    """ml-100k's u1.base and u1.test as tables u1_base and u1_test (once per run)."""
    if q("SELECT to_regclass('u1_base')")[0][0]:
        return
    q("CREATE TABLE u1_base (user_id int, item_id int, rating real, ts bigint)")
    q("CREATE TABLE u1_test (user_id int, item_id int, rating real, ts bigint)")
    with conn.cursor() as cur:
        for table, path in (("u1_base", f"{ML}/u1.base"), ("u1_test", f"{ML}/u1.test")):
            with open(path) as f, cur.copy(f"COPY {table} FROM STDIN") as copy:
                for line in f:
                    copy.write(line)
    q("ANALYZE u1_base"); q("ANALYZE u1_test")


# 1. Training on ml-100k u1 against Surprise ------------------------------------------------------
if "cf" in ONLY and os.path.exists(f"{ML}/u1.base"):
    section("CF training on ml-100k u1.base (943 users, 1,682 items, 80,000 ratings), scored on u1.test")
    load_u1()

    from surprise import SVD, SVDpp, Dataset, Reader, accuracy

    reader = Reader(line_format="user item rating timestamp", sep="\t")
    trainset = Dataset.load_from_file(f"{ML}/u1.base", reader).build_full_trainset()
    testset = [tuple(line.split("\t")[:3]) for line in open(f"{ML}/u1.test")]
    testset = [(u, i, float(r)) for u, i, r in testset]

    def surprise(cls, repeat):
        algo = cls(random_state=0)
        t, med = best(lambda: algo.fit(trainset), repeat)
        rmse = accuracy.rmse(algo.test(testset), verbose=False)
        return t, rmse

    def persona(algorithm, repeat=5):
        model = f"bench_{algorithm}"
        sql = f"SELECT cf_train('u1_base', '{algorithm}', '{model}', '{{\"test_fraction\": 0}}')"
        t, med = best(lambda: q(sql), repeat)
        rmse = q(f"SELECT sqrt(avg((cf_predict(user_id, item_id, '{model}') - rating)^2)) FROM u1_test")[0][0]
        return t, rmse

    s_svd = surprise(SVD, 3)
    s_svdpp = surprise(SVDpp, 1)
    p = {a: persona(a) for a in ("svd", "svdpp", "baseline", "knn_item", "knn_user")}
    rows = [
        ("Surprise SVD", *s_svd, None),
        ("Surprise SVDpp", *s_svdpp, None),
        ("pg_persona svd", *p["svd"], s_svd[0] / p["svd"][0]),
        ("pg_persona svdpp (default)", *p["svdpp"], s_svdpp[0] / p["svdpp"][0]),
        ("pg_persona baseline", *p["baseline"], None),
        ("pg_persona knn_item", *p["knn_item"], None),
        ("pg_persona knn_user", *p["knn_user"], None),
    ]
    print(f"{'model':32} {'fit s':>8} {'RMSE u1':>8} {'speed-up':>9}")
    for name, t, rmse, ratio in rows:
        print(f"{name:32} {t:8.3f} {rmse:8.4f} {('%.1fx' % ratio) if ratio else '':>9}")
    results["training"] = {name: {"seconds": t, "rmse_u1": rmse, "speedup": ratio} for name, t, rmse, ratio in rows}
    results["training"]["note"] = "pg_persona times are SELECT cf_train(...) end to end: reading the table, training, storing the model"

    # 2. cf_predict over 100,000 rows ------------------------------------------------------------
    section("SELECT cf_predict(user_id, item_id) over 100,000 rows vs a trivial expression")
    q("CREATE TABLE pairs AS SELECT user_id, item_id FROM u1_base UNION ALL SELECT user_id, item_id FROM u1_test")
    q("ANALYZE pairs")
    n = q("SELECT count(*) FROM pairs")[0][0]
    q("SELECT sum(cf_predict(user_id, item_id, 'bench_svdpp')) FROM pairs")  # warm the model cache
    t_base, _ = best(lambda: q("SELECT sum(user_id * 0.5::real + item_id) FROM pairs"), 7)
    t_pred, _ = best(lambda: q("SELECT sum(cf_predict(user_id, item_id, 'bench_svdpp')) FROM pairs"), 7)
    t_pred_default, _ = best(lambda: q("SELECT sum(cf_predict(user_id, item_id)) FROM pairs"), 1) if q("SELECT 1 FROM persona.cf_active WHERE model='default'") else (None, None)
    print(f"rows {n}: trivial expression {t_base*1000:.1f} ms, cf_predict {t_pred*1000:.1f} ms, ratio {t_pred/t_base:.2f}x")
    results["predict_100k"] = {"rows": n, "trivial_ms": t_base * 1000, "cf_predict_ms": t_pred * 1000, "ratio": t_pred / t_base}
elif "cf" in ONLY:
    print(f"SKIPPED: ml-100k not found at '{ML}' (MovieLens is read from ../shared/data; set ML100K)")

# 3. cf_recommend over a 100,000-item catalogue at 64 factors -----------------------------------------
if "recommend" in ONLY:
    section("cf_recommend(user, 10) over a 100,000-item catalogue, 64 factors")
    users = int(20000 * SCALE)
    q(f"""CREATE TABLE big_ratings AS
          SELECT u AS user_id, ((u * 7919 + k * 104729) % 100000) + 1 AS item_id, 1 + ((u + k) % 5)::real AS rating
            FROM generate_series(1, {users}) u, generate_series(1, 20) k""")
    q(f"INSERT INTO big_ratings SELECT 1 + i % {users}, i, 3 FROM generate_series(1, 100000) i")  # every item rated at least once
    items = q("SELECT count(DISTINCT item_id) FROM big_ratings")[0][0]
    summary = q("""SELECT cf_train('big_ratings', 'svd', 'catalogue', '{"factors": 64, "epochs": 3, "test_fraction": 0}')""")[0][0]
    q("SELECT * FROM cf_recommend(1, 10, 'catalogue')")  # load the model into the backend cache
    calls = 200
    t, med = best(lambda: q(f"SELECT count(*) FROM generate_series(1, {calls}) u, LATERAL cf_recommend(u, 10, 'catalogue')"), 3)
    one, _ = best(lambda: q("SELECT * FROM cf_recommend(42, 10, 'catalogue')"), 20)
    print(f"catalogue {items} items, {summary['users']} users: {t/calls*1000:.2f} ms per call inside one query, {one*1000:.2f} ms per single-statement call (client round trip included)")
    results["recommend_100k_items"] = {"items": items, "ms_per_call": t / calls * 1000, "ms_single_statement": one * 1000}

# 4. campaign_metrics over 10 million events -----------------------------------------------------------
if "campaign" in ONLY:
    section("campaign_metrics over 10 million events vs the equivalent hand-written GROUP BY")
    n_events = int(10_000_000 * SCALE)
    q("INSERT INTO persona.campaigns (campaign, cost, planned_split) VALUES ('big', 50000, '{\"treatment\": 0.5, \"control\": 0.5}')")
    q(f"""INSERT INTO persona.campaign_events (campaign, user_id, arm, event, value, occurred_at)
          SELECT 'big', u, CASE WHEN u % 2 = 0 THEN 'treatment' ELSE 'control' END,
                 CASE WHEN g % 20 = 0 THEN 'click' WHEN g % 97 = 0 THEN 'conversion' ELSE 'exposure' END,
                 CASE WHEN g % 97 = 0 THEN (g % 50)::numeric END,
                 timestamptz '2026-03-01' + (g % 1209600) * interval '1 second'
            FROM generate_series(1, {n_events}) g, LATERAL (SELECT (g * 2654435761::bigint) % {n_events // 5} AS u) x""")
    q("VACUUM ANALYZE persona.campaign_events")
    q("RESET max_parallel_workers_per_gather")
    hand = """
    WITH per_user AS (
      SELECT COALESCE(arm, '') AS arm, user_id,
             count(*) FILTER (WHERE event = 'exposure') AS exposures, count(*) FILTER (WHERE event = 'click') AS clicks,
             count(*) FILTER (WHERE event = 'conversion') AS conversions,
             COALESCE(sum(value) FILTER (WHERE event = 'conversion'), 0)::float8 AS revenue,
             min(occurred_at) AS first_at, max(occurred_at) AS last_at
        FROM persona.campaign_events WHERE campaign = 'big' GROUP BY 1, 2)
    SELECT arm, count(*) FILTER (WHERE exposures > 0), sum(exposures), sum(clicks), count(*) FILTER (WHERE clicks > 0),
           sum(conversions), count(*) FILTER (WHERE conversions > 0), sum(revenue),
           sum(revenue * revenue) FILTER (WHERE exposures > 0), min(first_at), max(last_at),
           count(*) FILTER (WHERE exposures > 0 OR clicks > 0), sum(clicks::float8 * clicks),
           sum(exposures::float8 * exposures), sum(clicks::float8 * exposures)
      FROM per_user GROUP BY arm"""
    t_hand, _ = best(lambda: q(hand), 3)
    t_fn, _ = best(lambda: q("SELECT campaign_metrics('big')"), 3)
    print(f"events {n_events}: hand-written GROUP BY {t_hand:.2f} s, campaign_metrics {t_fn:.2f} s, ratio {t_fn/t_hand:.2f}x")
    results["campaign_10m"] = {"events": n_events, "group_by_s": t_hand, "campaign_metrics_s": t_fn, "ratio": t_fn / t_hand}

# 4b. campaign_metrics with options (CUPED from a relation, segments) over the same events -----------------
if "campaign_v2" in ONLY:
    section("campaign_metrics with cuped + segments over 10 million events vs the same aggregation hand-written")
    n_events = int(10_000_000 * SCALE)
    n_users = n_events // 5
    if not q("SELECT 1 FROM persona.campaigns WHERE campaign = 'big'"):
        q("INSERT INTO persona.campaigns (campaign, cost, planned_split) VALUES ('big', 50000, '{\"treatment\": 0.5, \"control\": 0.5}')")
        q(f"""INSERT INTO persona.campaign_events (campaign, user_id, arm, event, value, occurred_at)
              SELECT 'big', u, CASE WHEN u % 2 = 0 THEN 'treatment' ELSE 'control' END,
                     CASE WHEN g % 20 = 0 THEN 'click' WHEN g % 97 = 0 THEN 'conversion' ELSE 'exposure' END,
                     CASE WHEN g % 97 = 0 THEN (g % 50)::numeric END,
                     timestamptz '2026-03-01' + (g % 1209600) * interval '1 second'
                FROM generate_series(1, {n_events}) g, LATERAL (SELECT (g * 2654435761::bigint) % {n_users} AS u) x""")
        q("VACUUM ANALYZE persona.campaign_events")
    # The app's users: a country (30 values, skewed) and last year's spend (missing for 1 in 10).
    q("DROP TABLE IF EXISTS bench_users")
    q(f"""CREATE TABLE bench_users AS
          SELECT u AS user_id, 'c' || ((u * 7) % 30 * (u % 3)) % 30 AS country,
                 CASE WHEN u % 10 = 0 THEN NULL ELSE (u % 500)::float8 END AS spend
            FROM generate_series(0, {n_users}) u""")
    q("ALTER TABLE bench_users ADD PRIMARY KEY (user_id)")
    q("VACUUM ANALYZE bench_users")
    q("RESET max_parallel_workers_per_gather")
    hand = """
    WITH per_user AS (
      SELECT COALESCE(arm, '') AS arm, user_id,
             count(*) FILTER (WHERE event = 'exposure') AS exposures, count(*) FILTER (WHERE event = 'click') AS clicks,
             count(*) FILTER (WHERE event = 'conversion') AS conversions,
             COALESCE(sum(value) FILTER (WHERE event = 'conversion'), 0)::float8 AS revenue,
             min(occurred_at) AS first_at, max(occurred_at) AS last_at
        FROM persona.campaign_events WHERE campaign = 'big' GROUP BY 1, 2),
    u AS (SELECT p.*, (p.conversions > 0)::int::float8 AS conv01, b.spend AS x, b.country AS segment
            FROM per_user p LEFT JOIN bench_users b ON b.user_id = p.user_id)
    SELECT segment, arm, count(*) FILTER (WHERE exposures > 0), sum(exposures), sum(clicks), count(*) FILTER (WHERE clicks > 0),
           sum(conversions), count(*) FILTER (WHERE conversions > 0), sum(revenue),
           sum(revenue * revenue) FILTER (WHERE exposures > 0), min(first_at), max(last_at),
           count(*) FILTER (WHERE exposures > 0 OR clicks > 0), sum(clicks::float8 * clicks),
           sum(exposures::float8 * exposures), sum(clicks::float8 * exposures),
           count(*) FILTER (WHERE exposures > 0 AND x IS NOT NULL), sum(x) FILTER (WHERE exposures > 0),
           sum(x * x) FILTER (WHERE exposures > 0), sum(conv01 * x) FILTER (WHERE exposures > 0),
           sum(conv01) FILTER (WHERE exposures > 0 AND x IS NOT NULL), sum(revenue * x) FILTER (WHERE exposures > 0),
           sum(revenue) FILTER (WHERE exposures > 0 AND x IS NOT NULL)
      FROM u GROUP BY segment, arm"""
    options = ('{"cuped": {"relation": "bench_users", "column": "spend"}, '
               '"segments": {"relation": "bench_users", "column": "country", "max": 20}}')
    everything = ('{"cuped": {"relation": "bench_users", "column": "spend"}, '
                  '"segments": {"relation": "bench_users", "column": "country", "max": 20}, '
                  '"sequential": true, "bayesian": true, "difference": "relative", "correction": "holm", '
                  '"capping": {"type": "percentile", "value": 0.99}}')
    t_hand, _ = best(lambda: q(hand), 3)
    t_fn, _ = best(lambda: q("SELECT campaign_metrics('big', %s::jsonb)", options), 3)
    t_all, _ = best(lambda: q("SELECT campaign_metrics('big', %s::jsonb)", everything), 3)
    t_plain, _ = best(lambda: q("SELECT campaign_metrics('big')"), 3)
    print(f"events {n_events}, users {n_users}: hand-written with the two joins {t_hand:.2f} s, "
          f"campaign_metrics with cuped + segments {t_fn:.2f} s, ratio {t_fn/t_hand:.2f}x; "
          f"every option (incl. percentile capping) {t_all:.2f} s; no options {t_plain:.2f} s")
    results["campaign_v2_10m"] = {"events": n_events, "users": n_users, "hand_written_s": t_hand,
                                  "cuped_segments_s": t_fn, "ratio": t_fn / t_hand,
                                  "all_options_s": t_all, "no_options_s": t_plain}

# 4c. Portraits: user_profile latency, user_profiles and profile_train at scale ---------------------------
if "portraits" in ONLY:
    section("portraits: user_profile p50/p99 (ml-100k-sized + 100k orders), user_profiles for 100,000 users, profile_train on 1M orders")
    import random
    rng = random.Random(7)

    def orders(n_users, n_orders, heavy_user=None):
        """Synthetic purchases over 2025: each user a rate, values from a per-user mean."""
        q("TRUNCATE persona.orders")
        q(f"""INSERT INTO persona.orders (user_id, occurred_at, value)
              SELECT 1 + (g * 7919) % {n_users},
                     timestamptz '2025-01-01' + ((g * 104729) % 365) * interval '1 day' + (g % 86400) * interval '1 second',
                     round((5 + (g * 31) % 200)::numeric, 2)
                FROM generate_series(1::bigint, {n_orders}) g""")
        if heavy_user is not None:
            q(f"""INSERT INTO persona.orders (user_id, occurred_at, value)
                  SELECT {heavy_user}, timestamptz '2025-01-01' + (g % 365) * interval '1 day', 20
                    FROM generate_series(1, 1000) g""")
        q("ANALYZE persona.orders")

    # ml-100k-sized: 943 users, 1,682 items; user 1 also gets 1,000 orders.
    q("SELECT persona.load_demo(users => 943, items => 1682, seed => 5, replace => true)")
    orders(943, 100_000, heavy_user=1)
    q("SELECT cf_train(algorithm => 'svd', options => '{\"seed\": 1, \"test_fraction\": 0}')")
    q("SELECT profile_train(options => '{\"as_of\": \"2026-01-01\"}')")
    users = [r[0] for r in q("SELECT user_id FROM persona.users ORDER BY 1")]
    for u in users[:20]:
        q("SELECT user_profile(%s, as_of => '2026-01-01')", u)  # warm the caches
    times = []
    for u in users:
        t = time.perf_counter()
        q("SELECT user_profile(%s, as_of => '2026-01-01')", u)
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    p50, p99 = times[len(times) // 2], times[int(len(times) * 0.99)]
    t = time.perf_counter(); q("SELECT user_profile(1, as_of => '2026-01-01')"); heavy = (time.perf_counter() - t) * 1000
    print(f"user_profile over {len(users)} users, 100k orders: p50 {p50:.2f} ms, p99 {p99:.2f} ms, max {times[-1]:.2f} ms; the 1,000-order user {heavy:.2f} ms (client round trip included)")
    # 100,000 users and 1M orders.
    t = time.perf_counter()
    q("SELECT persona.load_demo(users => 100000, seed => 5, replace => true)")
    load_s = time.perf_counter() - t
    orders(100_000, 1_000_000)
    q("SELECT cf_train(algorithm => 'svd', options => '{\"seed\": 1, \"test_fraction\": 0}')")
    train_s, _ = best(lambda: q("SELECT profile_train(options => '{\"as_of\": \"2026-01-01\"}')"), 2)
    ratings = q("SELECT count(*) FROM persona.ratings")[0][0]
    many_s, _ = best(lambda: q("SELECT count(*) FROM user_profiles(as_of => '2026-01-01')"), 2)
    n = q("SELECT count(*) FROM user_profiles(as_of => '2026-01-01')")[0][0]
    print(f"profile_train on 1,000,000 orders of 100,000 users (clusters on {ratings} ratings' svd factors): {train_s:.2f} s; "
          f"user_profiles for {n} users: {many_s:.2f} s")
    results["portraits"] = {"user_profile_p50_ms": p50, "user_profile_p99_ms": p99, "user_profile_max_ms": times[-1],
                            "heavy_user_ms": heavy, "users": len(users), "orders": 100_000,
                            "profile_train_1m_orders_s": train_s, "user_profiles_100k_s": many_s,
                            "user_profiles_rows": n, "ratings_100k_users": ratings}

# 5. Text scoring against Python onnxruntime + tokenizers ------------------------------------------------
section("bert_score on 10,000 sentences vs Python onnxruntime + tokenizers (same model, batches of 64, 2 threads)")
SST2 = os.environ.get("SST2", "")
MODELS = os.environ.get("PERSONA_MODELS", "/usr/share/postgresql/15/extension/pg_persona/models")
if "text" in ONLY and os.path.exists(f"{MODELS}/minilm/model.onnx") and os.path.exists(SST2):
    import numpy as np
    import onnxruntime as ort
    from tokenizers import Tokenizer

    texts = []
    for line in open(SST2, encoding="utf-8").read().split("\n")[1:]:
        t = line.split("\t")[0].strip()
        if len(t.split()) >= 5:
            texts.append(t)
        if len(texts) == 10_000:
            break
    spec = json.load(open(os.environ["SENTIMENT_HEAD"]))
    head, pooling = spec["head"], spec.get("pooling", "mean")
    W = np.array(head["weights"], dtype=np.float32).reshape(len(head["labels"]), -1)
    b = np.array(head["bias"], dtype=np.float32)
    pos = head["labels"].index("positive")

    tok = Tokenizer.from_file(f"{MODELS}/minilm/tokenizer.json")
    tok.enable_truncation(256)
    tok.enable_padding()  # pad to the longest text of each batch (tokenizer.json pads to 128)
    # Lengths for sorting come from a tokenizer that does not pad: with padding on, every text
    # has the batch's padded length and "sorting" by it leaves the order as it was.
    tok_len = Tokenizer.from_file(f"{MODELS}/minilm/tokenizer.json")
    tok_len.no_padding()
    tok_len.enable_truncation(256)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(f"{MODELS}/minilm/model.onnx", so, providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]

    def python_scores(batch=64, by_length=False):
        # by_length: batches of texts of similar length (what pg_persona and TEI do), the
        # strongest simple Python baseline; else batches in input order.
        order = list(range(len(texts)))
        if by_length:
            lengths = [len(e.ids) for e in tok_len.encode_batch(texts)]
            assert len(set(lengths)) > 1, "unpadded lengths differ"
            order.sort(key=lambda i: lengths[i])
        out = [0.0] * len(texts)
        for k in range(0, len(order), batch):
            idx = order[k:k + batch]
            enc = tok.encode_batch([texts[i] for i in idx])
            ids = np.array([e.ids for e in enc], dtype=np.int64)
            mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
            feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
            h = sess.run(None, {n: feed[n] for n in names})[0]
            m = mask[..., None].astype(np.float32)
            mean = (h * m).sum(1) / np.maximum(m.sum(1), 1e-9)
            mean /= np.linalg.norm(mean, axis=1, keepdims=True)
            cls = h[:, 0] / np.linalg.norm(h[:, 0], axis=1, keepdims=True)
            # The spec's pooling: "mean+cls" is both unit vectors side by side, scaled by 1/sqrt(2).
            e = {"mean": mean, "cls": cls,
                 "mean+cls": np.hstack([mean, cls]) / np.sqrt(2)}[pooling]
            z = e @ W.T + b
            z = np.exp(z - z.max(1, keepdims=True))
            for i, p in zip(idx, (z[:, pos] / z.sum(1)).tolist()):
                out[i] = p
        return out

    t_py, _ = best(python_scores, 2)
    t_py_sorted, _ = best(lambda: python_scores(by_length=True), 2)
    py = python_scores()
    q("CREATE TABLE sentences (id int PRIMARY KEY, body text)")
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO sentences VALUES (%s, %s)", list(enumerate(texts)))
    q("ANALYZE sentences")
    # First call in a new backend: loads ONNX Runtime and creates the session.
    fresh = psycopg.connect(dbname="persona_bench", autocommit=True)
    t0 = time.perf_counter(); fresh.execute("SELECT bert_score('a first sentence')").fetchall(); first = time.perf_counter() - t0
    t0 = time.perf_counter(); fresh.execute("SELECT bert_score('a second sentence')").fetchall(); second = time.perf_counter() - t0
    fresh.close()
    # persona.inference = auto: the shared inference worker when pg_persona is preloaded (as
    # scripts/cluster.sh configures), which runs at persona.worker_threads (0: every core).
    mode = q("SELECT current_setting('persona.inference')")[0][0]
    worker = q("SELECT count(*) FROM persona.text_cache WHERE holder = 'worker'")[0][0] > 0 or \
        q("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_persona inference'")[0][0] > 0
    q("SET persona.inference_threads = 2")
    q("SET persona.batch_size = 64")
    q("SELECT bert_score('warm up')")
    t_arr, _ = best(lambda: q("SELECT bert_score(array_agg(body ORDER BY id)) FROM sentences"), 2)
    t_row, _ = best(lambda: q("SELECT sum(bert_score(body)) FROM sentences"), 1)
    # The same in this backend's own session (persona.inference = backend, the only mode without
    # the worker), with ONNX Runtime's thread spinning off (the default) and on.
    q("SET persona.inference = backend")
    q("SELECT bert_score('warm up')")
    t_arr_backend, _ = best(lambda: q("SELECT bert_score(array_agg(body ORDER BY id)) FROM sentences"), 2)
    q("SET persona.inference_spin = on")
    q("SELECT bert_score('warm up')")
    t_arr_spin, _ = best(lambda: q("SELECT bert_score(array_agg(body ORDER BY id)) FROM sentences"), 2)
    q("RESET persona.inference_spin")
    q("RESET persona.inference")
    sql = q("SELECT bert_score(array_agg(body ORDER BY id)) FROM sentences")[0][0]
    diff = max(abs(a - b) for a, b in zip(sql, py))
    n = len(texts)
    print(f"persona.inference = {mode} (inference worker running: {worker})")
    print(f"{n} sentences: Python {n/t_py:.0f}/s (length-sorted batches {n/t_py_sorted:.0f}/s), "
          f"SQL array form {n/t_arr:.0f}/s ({t_py/t_arr:.2f}x; {t_py_sorted/t_arr:.2f}x the sorted baseline), "
          f"backend's own session {n/t_arr_backend:.0f}/s ({t_py_sorted/t_arr_backend:.2f}x), "
          f"SQL per row {n/t_row:.0f}/s ({t_py/t_row:.2f}x); backend's own session with inference_spin {n/t_arr_spin:.0f}/s "
          f"({t_py_sorted/t_arr_spin:.2f}x the sorted baseline); max |score difference| {diff:.2e}; "
          f"first call in a new backend {first*1000:.0f} ms, second {second*1000:.1f} ms")
    results["bert_10k"] = {"sentences": n, "inference": mode, "worker_running": worker,
                           "python_per_s": n / t_py, "python_sorted_per_s": n / t_py_sorted,
                           "sql_array_backend_per_s": n / t_arr_backend,
                           "array_backend_ratio_vs_sorted": t_py_sorted / t_arr_backend,
                           "array_ratio_vs_sorted": t_py_sorted / t_arr, "row_ratio_vs_sorted": t_py_sorted / t_row,
                           "sql_array_per_s": n / t_arr, "sql_array_spin_per_s": n / t_arr_spin,
                           "array_spin_ratio_vs_sorted": t_py_sorted / t_arr_spin,
                           "sql_row_per_s": n / t_row, "array_ratio": t_py / t_arr, "row_ratio": t_py / t_row,
                           "max_abs_diff_vs_python": diff, "first_call_ms": first * 1000, "second_call_ms": second * 1000}
    q("RESET max_parallel_workers_per_gather")
    q("SET parallel_setup_cost = 0"); q("SET parallel_tuple_cost = 0"); q("SET min_parallel_table_scan_size = 0")
    q("SET persona.inference_threads = 0")
    plan = q("EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) SELECT sum(bert_score(body)) FROM sentences")
    print("\n".join(r[0] for r in plan))
    results["bert_parallel_plan"] = [r[0] for r in plan]
elif "text" in ONLY:
    print(f"SKIPPED: needs the minilm model in {MODELS} and SST-2 phrases at '{SST2}' (set SST2)")

# 5. Fold-in: users the model never saw, against a model retrained with them ---------------------
if "foldin" in ONLY and os.path.exists(f"{ML}/u.data"):
    import math
    import random

    section("Fold-in on ml-100k u.data: 10% of users held out, their first 75% (by time) folded in")
    rows = [tuple(int(x) for x in line.split("\t")) for line in open(f"{ML}/u.data")]
    users = sorted({u for u, _, _, _ in rows})
    held = set(random.Random(int(os.environ.get("FOLDIN_SEED", "7"))).sample(users, len(users) // 10))
    by_user = {}
    for u, i, r, t in rows:
        if u in held:
            by_user.setdefault(u, []).append((t, i, r))
    history, future = {}, {}
    for u, rs in by_user.items():
        rs.sort()
        cut = math.ceil(len(rs) * 0.75)
        history[u] = [(i, r) for _, i, r in rs[:cut]]
        future[u] = [(i, r) for _, i, r in rs[cut:]]
    q("DROP TABLE IF EXISTS fi_train, fi_full")
    q("CREATE TABLE fi_train (user_id int, item_id int, rating real)")
    with conn.cursor() as cur, cur.copy("COPY fi_train FROM STDIN") as copy:
        for u, i, r, _ in rows:
            if u not in held:
                copy.write_row((u, i, r))
    q("CREATE TABLE fi_full AS SELECT * FROM fi_train")
    with conn.cursor() as cur, cur.copy("COPY fi_full FROM STDIN") as copy:
        for u, hs in history.items():
            for i, r in hs:
                copy.write_row((u, i, r))
    q("CREATE INDEX ON fi_train (user_id)"); q("ANALYZE fi_train"); q("ANALYZE fi_full")

    def ndcg(ranked, relevant, k=10):
        dcg = sum(1 / math.log2(n + 2) for n, i in enumerate(ranked[:k]) if i in relevant)
        ideal = sum(1 / math.log2(n + 2) for n in range(min(k, len(relevant))))
        return dcg / ideal

    def as_json(pairs):
        return json.dumps({str(i): r for i, r in pairs})

    fold = {"users_held_out": len(held), "ratings_folded_in": sum(map(len, history.values())),
            "ratings_scored": sum(map(len, future.values())), "algorithms": {}}
    for algo in os.environ.get("FOLDIN_ALGOS", "svd,svdpp,als,knn_item,knn_user,baseline").split(","):
        q("SELECT cf_train('fi_train', %s, %s, '{\"test_fraction\": 0}')", algo, f"fi_{algo}")
        t = time.perf_counter()
        q("SELECT cf_train('fi_full', %s, %s, '{\"test_fraction\": 0}')", algo, f"fi_{algo}_full")
        retrain_s = time.perf_counter() - t
        out = {"retrain_seconds": retrain_s}
        for mode, model in (("fold_in", f"fi_{algo}"), ("retrained", f"fi_{algo}_full")):
            sq, n, nd = 0.0, 0, []
            for u in sorted(held):
                items = [i for i, _ in future[u]]
                if mode == "fold_in":
                    h = as_json(history[u])
                    preds = q("SELECT cf_predict_for(%s::jsonb, i, %s) FROM unnest(%s::int8[]) i", h, model, items)
                    top = [r[0] for r in q("SELECT item_id FROM cf_recommend_for(%s::jsonb, 10, %s)", h, model)]
                else:
                    preds = q("SELECT cf_predict(%s, i, %s) FROM unnest(%s::int8[]) i", u, model, items)
                    top = [r[0] for r in q("SELECT item_id FROM cf_recommend(%s, 10, %s)", u, model)]
                for (p,), (_, r) in zip(preds, future[u]):
                    sq += (p - r) ** 2
                    n += 1
                nd.append(ndcg(top, set(items)))
            out[mode] = {"ndcg_at_10": statistics.mean(nd)}
            if algo != "als":
                out[mode]["rmse"] = math.sqrt(sq / n)
        out["ndcg_ratio"] = out["fold_in"]["ndcg_at_10"] / out["retrained"]["ndcg_at_10"]
        if algo != "als":
            out["rmse_ratio"] = out["fold_in"]["rmse"] / out["retrained"]["rmse"]
        # Latency of folding in a 100-rating user and ranking the catalogue: held-out users'
        # first 100 ratings when they have that many, else training users' (warm model).
        hundred = [as_json(history[u][:100]) for u in sorted(held) if len(history[u]) >= 100]
        for u, in q("SELECT user_id FROM fi_train GROUP BY user_id HAVING count(*) >= 100 ORDER BY user_id LIMIT 40"):
            hundred.append(as_json([(i, r) for i, r in q("SELECT item_id, rating FROM fi_train WHERE user_id = %s LIMIT 100", u)]))
        q("SELECT count(*) FROM cf_recommend_for(%s::jsonb, 10, %s)", hundred[0], f"fi_{algo}")
        lat = []
        for _ in range(5):
            for h in hundred:
                t = time.perf_counter()
                q("SELECT count(*) FROM cf_recommend_for(%s::jsonb, 10, %s)", h, f"fi_{algo}")
                lat.append((time.perf_counter() - t) * 1000)
        lat.sort()
        out["recommend_100_ratings_ms"] = {"calls": len(lat), "p50": lat[len(lat) // 2], "p99": lat[int(len(lat) * 0.99) - 1]}
        fold["algorithms"][algo] = out
        print(f"{algo:9s} NDCG@10 fold-in {out['fold_in']['ndcg_at_10']:.4f} retrained {out['retrained']['ndcg_at_10']:.4f} "
              f"({out['ndcg_ratio']:.3f}x)" + (f"  RMSE {out['fold_in']['rmse']:.4f} vs {out['retrained']['rmse']:.4f} ({out['rmse_ratio']:.3f}x)" if algo != "als" else "")
              + f"  100-rating fold-in + top-10 p50 {out['recommend_100_ratings_ms']['p50']:.2f} ms p99 {out['recommend_100_ratings_ms']['p99']:.2f} ms", flush=True)
    # From the source: cf_recommend for users who are not in the model, their rows in fi_train.
    q("INSERT INTO fi_train SELECT user_id, item_id, rating FROM fi_full WHERE user_id = ANY(%s)", sorted(held))
    lat = []
    for u in sorted(held):
        t = time.perf_counter()
        q("SELECT count(*) FROM cf_recommend(%s, 10, 'fi_svdpp')", u)
        lat.append((time.perf_counter() - t) * 1000)
    lat.sort()
    fold["cf_recommend_from_source_svdpp_ms"] = {"calls": len(lat), "p50": lat[len(lat) // 2], "p99": lat[int(len(lat) * 0.99) - 1]}
    print(f"cf_recommend(unknown user) folding in from the source (svdpp): p50 {lat[len(lat) // 2]:.2f} ms, max {lat[-1]:.2f} ms")
    results["fold_in"] = fold
elif "foldin" in ONLY:
    print(f"SKIPPED: fold-in needs ml-100k at '{ML}' (set ML100K)")

# 6. Beyond-accuracy metrics on ml-100k u1, against Microsoft Recommenders on the same lists --------
if "beyond" in ONLY and os.path.exists(f"{ML}/u1.base"):
    import warnings

    import pandas as pd
    from recommenders.evaluation import python_evaluation as pe

    warnings.simplefilter("ignore", FutureWarning)  # Recommenders 1.2.1 under pandas 2.3

    section("Beyond accuracy: cf_evaluate on ml-100k u1.base, scored on u1.test (top 10), and "
            "Microsoft Recommenders 1.2.1 on the same lists")
    load_u1()
    train_df = pd.DataFrame(q("SELECT user_id::bigint, item_id::bigint FROM u1_base"), columns=["userID", "itemID"])
    test_users = [u for (u,) in q("SELECT DISTINCT user_id FROM u1_test ORDER BY 1")]
    beyond = {}
    metrics = ["diversity", "novelty", "serendipity", "catalog_coverage", "distributional_coverage"]
    for algo in ["svd", "svdpp", "als", "knn_item", "knn_user", "baseline"]:
        t = time.perf_counter()
        ev = q(f"SELECT cf_evaluate('u1_base', '{algo}', '{{}}', 'u1_test')")[0][0]
        seconds = time.perf_counter() - t
        ours = ev["holdout"]["beyond_accuracy"]
        # The same model (same rows, options and seed) through cf_train, its lists through cf_recommend.
        q(f"SELECT cf_train('u1_base', '{algo}', 'ba_{algo}', '{{\"test_fraction\": 0}}')")
        reco = q(f"SELECT u::bigint, r.item_id FROM unnest(%s::int[]) u, cf_recommend(u, 10, 'ba_{algo}') r", test_users)
        reco_df = pd.DataFrame(reco, columns=["userID", "itemID"])
        ref = {"diversity": pe.diversity(train_df, reco_df), "novelty": pe.novelty(train_df, reco_df),
               "serendipity": pe.serendipity(train_df, reco_df),
               "catalog_coverage": pe.catalog_coverage(train_df, reco_df),
               "distributional_coverage": pe.distributional_coverage(train_df, reco_df)}
        worst = max(abs(ours[m] - ref[m]) for m in metrics)
        beyond[algo] = {**{m: ours[m] for m in metrics}, "ndcg_at_10": ev["holdout"]["ranking"]["ndcg_at_k"],
                        "recommenders": ref, "largest_difference": worst, "cf_evaluate_seconds": seconds}
        print(f"{algo:9s} " + "  ".join(f"{m} {ours[m]:.4f}" for m in metrics)
              + f"  NDCG@10 {ev['holdout']['ranking']['ndcg_at_k']:.4f}  |ours - Recommenders| <= {worst:.1e}"
              + f"  ({seconds:.2f} s)", flush=True)
    results["beyond_accuracy"] = beyond
elif "beyond" in ONLY:
    print(f"SKIPPED: beyond-accuracy metrics need ml-100k at '{ML}' (set ML100K)")

# 7. ALS against implicit on ml-100k, per-user 75/25 split ------------------------------------------
if "implicit" in ONLY and os.path.exists(f"{ML}/u.data"):
    import math
    import random

    import numpy as np
    import scipy.sparse as sp
    from implicit.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    section("ALS vs implicit 0.7.2 on ml-100k u.data, per-user 75/25 split (seed 7), 64 factors, "
            "15 iterations, reg 1, alpha 2, 2 threads, NDCG@10 over the whole catalogue")
    rng = random.Random(7)
    rows = [tuple(int(x) for x in line.split("\t")[:3]) for line in open(f"{ML}/u.data")]
    by_user = {}
    for u, i, r in rows:
        by_user.setdefault(u, []).append((i, r))
    train, test = [], {}
    for u in sorted(by_user):
        items = sorted(by_user[u])
        rng.shuffle(items)
        cut = math.ceil(len(items) * 0.75)
        train += [(u, i, r) for i, r in items[:cut]]
        test[u] = {i for i, _ in items[cut:]}
    q("DROP TABLE IF EXISTS als_train")
    q("CREATE TABLE als_train (user_id int, item_id int, rating real)")
    with conn.cursor() as cur, cur.copy("COPY als_train FROM STDIN") as copy:
        for row in train:
            copy.write_row(row)
    q("ANALYZE als_train")

    def ndcg10(recommend):
        total = 0.0
        for u, rel in test.items():
            recs = recommend(u)[:10]
            dcg = sum(1 / math.log2(n + 2) for n, i in enumerate(recs) if i in rel)
            ideal = sum(1 / math.log2(n + 2) for n in range(min(10, len(rel))))
            total += dcg / ideal
        return total / len(test)

    users = sorted(by_user)
    items = sorted({i for _, i, _ in rows})
    uix = {u: n for n, u in enumerate(users)}
    iix = {i: n for n, i in enumerate(items)}
    ui = sp.csr_matrix(([1.0] * len(train), ([uix[u] for u, _, _ in train], [iix[i] for _, i, _ in train])),
                       shape=(len(users), len(items)), dtype=np.float32)
    out = {}
    seeds = list(range(1, 11))
    # implicit: its CPU solver (conjugate gradient, 3 steps), BLAS single-threaded as it asks.
    # Its confidence is alpha * r; pg_persona's is 1 + alpha * r (Hu et al.), so implicit's
    # alpha 2 on binary data is pg_persona's alpha 1: the same confidence, 2.
    with threadpool_limits(limits=1, user_api="blas"):
        times, ndcgs = [], []
        for seed in seeds:
            model = AlternatingLeastSquares(factors=64, iterations=15, regularization=1.0, alpha=2.0,
                                            num_threads=2, random_state=seed, use_gpu=False)
            t = time.perf_counter()
            model.fit(ui, show_progress=False)
            times.append(time.perf_counter() - t)
            ids, _ = model.recommend(np.arange(len(users)), ui, N=10, filter_already_liked_items=True)
            ndcgs.append(ndcg10(lambda u: [items[j] for j in ids[uix[u]]]))
    out["implicit"] = {"fit_seconds_median": statistics.median(times), "fit_seconds_best": min(times),
                       "ndcg_at_10_mean": statistics.mean(ndcgs), "ndcg_at_10_stdev": statistics.stdev(ndcgs),
                       "seeds": len(seeds), "solver": "cg, 3 steps", "confidence": "alpha * r, alpha 2"}
    print(f"implicit            fit median {statistics.median(times):.3f} s  NDCG@10 mean of {len(seeds)} seeds "
          f"{statistics.mean(ndcgs):.4f} (sd {statistics.stdev(ndcgs):.4f})", flush=True)
    q("SET persona.training_threads = 2")
    for solver in ["cg", "cholesky"]:
        times, train_times, ndcgs = [], [], []
        for seed in seeds if solver == "cg" else seeds[:3]:
            options = ('{"factors": 64, "iterations": 15, "reg": 1, "alpha": 1, "test_fraction": 0, '
                       f'"solver": "{solver}", "seed": {seed}}}')
            t = time.perf_counter()
            r = q(f"SELECT cf_train('als_train', 'als', 'als_{solver}', %s)", options)[0][0]
            times.append(time.perf_counter() - t)
            train_times.append(r["train_seconds"])
            recs = dict(q(f"SELECT u, (SELECT array_agg(item_id ORDER BY rank) FROM cf_recommend(u, 10, 'als_{solver}')) "
                          "FROM unnest(%s::int[]) u", sorted(test)))
            ndcgs.append(ndcg10(lambda u: recs[u]))
        ratio = statistics.median(times) / out["implicit"]["fit_seconds_median"]
        out[f"pg_persona_{solver}"] = {"cf_train_seconds_median": statistics.median(times),
                                       "train_seconds_median": statistics.median(train_times),
                                       "ndcg_at_10_mean": statistics.mean(ndcgs), "seeds": len(ndcgs),
                                       "time_ratio_to_implicit": ratio, "confidence": "1 + alpha * r, alpha 1"}
        print(f"pg_persona {solver:8s} cf_train median {statistics.median(times):.3f} s (training alone "
              f"{statistics.median(train_times):.3f} s)  NDCG@10 mean of {len(ndcgs)} seeds {statistics.mean(ndcgs):.4f}"
              f"  time {ratio:.2f}x implicit's fit", flush=True)
    q("RESET persona.training_threads")
    results["als_vs_implicit"] = out
elif "implicit" in ONLY:
    print(f"SKIPPED: ALS vs implicit needs ml-100k at '{ML}' (set ML100K)")

# 8. Training at scale: synthetic long-tail ratings, 1M / 5M / 25M ----------------------------------
# "scale_catalogue" is the same with the users and items fixed at 25M's at every size: the factor
# tables then keep their size and only the ratings grow, which separates a trainer's own growth from
# its tables outgrowing a cache level (examples/scale's CATALOGUE argument, in SQL).
def scale_section(key, catalogue):
    section("cf_train on synthetic ratings with a long tail (MovieLens 25M's shape: 162k users x 59k "
            "items at 25M; " + ("users and items in proportion at smaller sizes" if catalogue is None
                               else f"users and items fixed at {catalogue:,} ratings' at every size") +
            "), 2 training threads")
    sizes = [int(x) for x in os.environ.get("SCALE_SIZES", "1000000,5000000,25000000").split(",")]
    algos = os.environ.get("SCALE_ALGOS", "svd,svdpp,als,knn_item").split(",")
    scale = {"sizes": {}, "algorithms": algos, "catalogue_of": catalogue}
    for n in sizes:
        shape = n if catalogue is None else catalogue
        users, items = max(100, round(162_541 * shape / 25_000_000)), max(50, round(59_047 * shape / 25_000_000))
        q("DROP TABLE IF EXISTS scale_ratings")
        # Power laws fitted to MovieLens 25M's extremes: its most active user has ~0.13% of the
        # ratings (u = U * r^1.8), its most rated item ~0.3% (i = I * r^1.9). Ratings 1-5 with a
        # per-user and per-item tendency. Duplicate pairs are drawn and dropped to leave n.
        t = time.perf_counter()
        q("SELECT setseed(0.42)")
        q(f"""CREATE UNLOGGED TABLE scale_ratings AS
              SELECT DISTINCT ON (user_id, item_id) user_id, item_id, rating FROM (
                SELECT 1 + floor({users} * power(random(), 1.8))::int AS user_id,
                       1 + floor({items} * power(random(), 1.9))::int AS item_id,
                       least(5, greatest(1, round(3.5 + random() * 2 - 1 + (g % 7 - 3) * 0.2)))::real AS rating
                  FROM generate_series(1, {int(n * 1.35)}) g) r
              LIMIT {n}""")
        got = q("SELECT count(*) FROM scale_ratings")[0][0]
        q("VACUUM ANALYZE scale_ratings")
        gen = time.perf_counter() - t
        print(f"{n:>10,} requested: {got:,} ratings, {users:,} users x {items:,} items (generated in {gen:.0f} s)", flush=True)
        per = {"ratings": got, "users": users, "items": items}
        for algo in algos:
            # A fresh backend per training, so its peak RSS (VmHWM) is this training's.
            with psycopg.connect(dbname="persona_bench", autocommit=True) as c:
                c.execute("SET persona.training_threads = 2")
                c.execute("SET persona.max_training_memory = '16GB'")
                pid = c.execute("SELECT pg_backend_pid()").fetchone()[0]
                c.execute("LOAD 'pg_persona'")

                def status_kb(key):
                    status = open(f"/proc/{pid}/status").read()
                    return int(next(l for l in status.splitlines() if l.startswith(key)).split()[1])

                # Peak anonymous memory (the backend's own heap, not shared buffers), sampled
                # every 20 ms while the training runs.
                anon_base, peak = status_kb("RssAnon"), [0]
                done = threading.Event()

                def sample():
                    while not done.is_set():
                        try:
                            peak[0] = max(peak[0], status_kb("RssAnon"))
                        except (OSError, StopIteration):
                            pass
                        done.wait(0.02)

                sampler = threading.Thread(target=sample)
                sampler.start()
                t = time.perf_counter()
                try:
                    r = c.execute("SELECT cf_train('scale_ratings', %s, %s, '{\"test_fraction\": 0}')",
                                  (algo, f"scale_{algo}")).fetchone()[0]
                finally:
                    done.set()
                    sampler.join()
                seconds = time.perf_counter() - t
                hwm_kb = status_kb("VmHWM")
                anon_mb = (peak[0] - anon_base) / 1024
                nbytes = c.execute("SELECT bytes FROM persona.cf_models WHERE model = %s", (f"scale_{algo}",)).fetchone()[0]
                # What persona.max_training_memory is checked against (the training's estimate,
                # which includes the rows read), and that a bound below it is refused quickly.
                estimate_mb = r.get("memory_estimate_mb")
                c.execute(f"SET persona.max_training_memory = '{max(1, int(estimate_mb * 0.9))}MB'")
                t = time.perf_counter()
                try:
                    c.execute("SELECT cf_train('scale_ratings', %s, 'scale_refused', '{\"test_fraction\": 0}')", (algo,))
                    refused = None
                except psycopg.errors.ProgramLimitExceeded as e:
                    refused = {"seconds": time.perf_counter() - t, "message": str(e).splitlines()[0]}
            per[algo] = {"cf_train_seconds": seconds, "read_seconds": r.get("read_seconds"), "train_seconds": r.get("train_seconds"),
                         "peak_rss_mb": hwm_kb / 1024, "peak_anon_growth_mb": anon_mb, "model_bytes": nbytes,
                         "estimate_mb": estimate_mb, "refused_below_estimate": refused}
            print(f"  {algo:9s} cf_train {seconds:7.1f} s (train {r.get('train_seconds', 0):.1f})  "
                  f"peak RSS {hwm_kb / 1024:6.0f} MB, of it the training's own memory {anon_mb:6.0f} MB "
                  f"(estimate {estimate_mb} MB; refused at 0.9x in {refused['seconds'] if refused else float('nan'):.1f} s)  "
                  f"model {nbytes / 2**20:7.1f} MB", flush=True)
            q("DELETE FROM persona.cf_active WHERE model = %s", f"scale_{algo}")
            q("DELETE FROM persona.cf_model_versions WHERE model = %s", f"scale_{algo}")
        scale["sizes"][str(n)] = per
    results[key] = scale
    q("DROP TABLE IF EXISTS scale_ratings")


if "scale" in ONLY:
    scale_section("scale", None)
if "scale_catalogue" in ONLY:
    scale_section("scale_catalogue", 25_000_000)


# 9. Cold-start items on ml-100k: 10% of items held out entirely, factors from title + genres ---------
if "coldstart" in ONLY and os.path.exists(f"{ML}/u.item"):
    import math
    import random

    section("Cold-start items on ml-100k u.data: 10% of items (seed 7) held out entirely; their factors "
            "predicted from MiniLM embeddings of title + genres")
    genres = [line.split("|")[0] for line in open(f"{ML}/u.genre", encoding="latin-1") if line.strip()]
    item_rows = []
    for line in open(f"{ML}/u.item", encoding="latin-1"):
        f = line.rstrip("\n").split("|")
        item_rows.append((int(f[0]), f[1], ", ".join(g for g, flag in zip(genres, f[5:]) if flag == "1")))
    rows = [tuple(int(x) for x in line.split("\t")[:3]) for line in open(f"{ML}/u.data")]
    all_items = sorted({i for _, i, _ in rows})
    cold = set(random.Random(7).sample(all_items, len(all_items) // 10))
    q("DROP TABLE IF EXISTS cs_train, cs_items")
    q("CREATE TABLE cs_train (user_id int, item_id int, rating real)")
    q("CREATE TABLE cs_items (item_id int PRIMARY KEY, title text, genres text)")
    with conn.cursor() as cur:
        with cur.copy("COPY cs_train FROM STDIN") as copy:
            for u, i, r in rows:
                if i not in cold:
                    copy.write_row((u, i, r))
        with cur.copy("COPY cs_items FROM STDIN") as copy:
            for row in item_rows:
                copy.write_row(row)
    held = [(u, i, r) for u, i, r in rows if i in cold]
    by_user = {}
    for u, i, r in held:
        by_user.setdefault(u, set()).add(i)
    cold_list = sorted(cold)

    def ndcg_cold(score):
        """NDCG@10 of each user's ranking of the cold items (relevant: those the user rated)."""
        total = 0.0
        for u, rel in by_user.items():
            ranked = sorted(cold_list, key=lambda i: (-score(u, i), i))[:10]
            dcg = sum(1 / math.log2(n + 2) for n, i in enumerate(ranked) if i in rel)
            total += dcg / sum(1 / math.log2(n + 2) for n in range(min(10, len(rel))))
        return total / len(by_user)

    rng = random.Random(1)
    shuffles = []
    for _ in range(20):
        order = {i: rng.random() for i in cold_list}
        shuffles.append(ndcg_cold(lambda u, i: order[i]))
    random_ndcg = statistics.mean(shuffles)
    coldres = {"items": len(all_items), "cold_items": len(cold), "held_ratings": len(held),
               "users_with_cold_ratings": len(by_user), "random_ndcg_at_10": random_ndcg}
    print(f"{len(cold)} cold items, {len(held):,} of their ratings, {len(by_user)} users; random ranking of the "
          f"cold items NDCG@10 {random_ndcg:.4f}", flush=True)
    item_text = '{"relation": "cs_items", "text_columns": ["title", "genres"]}'
    for algo in ["svd", "svdpp", "als"]:
        t = time.perf_counter()
        r = q(f"SELECT cf_train('cs_train', '{algo}', 'cs_{algo}', %s)",
              '{"test_fraction": 0, "item_text": ' + item_text + '}')[0][0]
        seconds = time.perf_counter() - t
        q(f"SELECT cf_train('cs_train', '{algo}', 'nocs_{algo}', '{{\"test_fraction\": 0}}')")
        scores = {}
        for u, i, s_ in q(f"SELECT u, i, cf_predict(u, i, 'cs_{algo}') FROM unnest(%s::int[]) u, unnest(%s::int[]) i",
                         sorted(by_user), cold_list):
            scores[(u, i)] = s_
        nd = ndcg_cold(lambda u, i: scores[(u, i)])
        out = {"cold_start": r["cold_start"], "cf_train_seconds": seconds, "ndcg_at_10_cold_only": nd}
        if algo != "als":
            pred = dict(((u, i), p) for u, i, p in q(
                f"SELECT user_id, item_id, cf_predict(user_id, item_id, 'cs_{algo}') FROM unnest(%s::int[], %s::int[]) t(user_id, item_id)",
                [u for u, _, _ in held], [i for _, i, _ in held]))
            base = dict(((u, i), p) for u, i, p in q(
                f"SELECT user_id, item_id, cf_predict(user_id, item_id, 'nocs_{algo}') FROM unnest(%s::int[], %s::int[]) t(user_id, item_id)",
                [u for u, _, _ in held], [i for _, i, _ in held]))
            rmse = math.sqrt(sum((pred[(u, i)] - r_) ** 2 for u, i, r_ in held) / len(held))
            rmse_base = math.sqrt(sum((base[(u, i)] - r_) ** 2 for u, i, r_ in held) / len(held))
            out.update({"rmse_cold": rmse, "rmse_global_mean_plus_user_bias": rmse_base})
        # Mixed into the whole catalogue: how often cold items reach users' top 10, and how often
        # those are items the user went on to rate.
        top = q(f"SELECT u, r.item_id FROM unnest(%s::int[]) u, cf_recommend(u, 10, 'cs_{algo}') r", sorted(by_user))
        in_top = [(u, i) for u, i in top if i in cold]
        out.update({"cold_share_of_top10": len(in_top) / len(top),
                    "cold_hits_in_top10": sum(1 for u, i in in_top if i in by_user[u])})
        coldres[algo] = out
        cs = r["cold_start"]
        print(f"{algo:6s} fitted on {cs['fitted_on']} items, added {cs['added']}, lambda {cs['lambda']}, CV R2 {cs['cv_r2']:.3f}"
              f"  NDCG@10 of the cold items {nd:.4f} (random {random_ndcg:.4f})"
              + (f"  RMSE {out['rmse_cold']:.4f} vs mean + user bias {out['rmse_global_mean_plus_user_bias']:.4f}" if algo != "als" else "")
              + f"  cold share of top 10 {out['cold_share_of_top10']:.3f} ({out['cold_hits_in_top10']} hits)"
              + f"  cf_train {seconds:.1f} s", flush=True)
    results["cold_start"] = coldres
elif "coldstart" in ONLY:
    print(f"SKIPPED: cold-start items need ml-100k at '{ML}' (set ML100K)")

with open("/tmp/persona-bench-results.json", "w") as f:
    json.dump(results, f, indent=2, default=float)
print("\n" + json.dumps(results, indent=2, default=float))
