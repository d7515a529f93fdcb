#!/usr/bin/env bash
# Benchmarks, each side by side with its reference in the same run (see README "Performance"):
#   - CF training on ml-100k u1 (read from a table) vs Surprise SVD / SVDpp fits on the same fold
#   - cf_predict over 100,000 rows vs a trivial arithmetic expression on the same columns
#   - cf_recommend(user, 10) over a 100,000-item catalogue at 64 factors
#   - campaign_metrics over 10 million events vs the equivalent hand-written GROUP BY
#   - campaign_metrics with cuped + segments over the same events vs the same aggregation hand-written
#   - portraits (only when named: BENCH_ONLY=portraits): user_profile p50/p99, profile_train on 1M
#     orders and user_profiles for 100,000 users
#   - fold-in of held-out ml-100k users vs a model retrained with them (quality, latency)
#   - ALS (cf_train) vs implicit's fit on a per-user 75/25 ml-100k split: time and NDCG@10
#   - cold-start items: 10% of ml-100k items held out, factors from their title + genres
#   - beyond-accuracy metrics of cf_evaluate on ml-100k u1 vs Microsoft Recommenders' on the same lists
# MovieLens is read from ../shared/data/ml-100k (ML100K=...); without it those parts are skipped
# with a message. Needs the extension installed (make install). Results: benches/results.json
# (BENCH_ONLY=cf,recommend,campaign,campaign_v2,text,foldin,beyond,implicit,coldstart runs
# ; scale, the 1M/5M/25M training table, and scale_catalogue, the same with the catalogue fixed,
# run only when named; naming some sections replaces only theirs).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/pg.sh
bash scripts/cluster.sh start
# The benchmark runs as the postgres OS user (peer authentication), so it uses Debian's Python
# (readable by every user) in a virtual environment of its own.
for p in python3-venv python3-dev; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || \
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$p" >/dev/null; }
done
VENV=.cache/bench-venv
if [[ ! -x $VENV/bin/python ]] || [[ "$(readlink -f $VENV/bin/python)" != /usr/bin/* ]]; then
  rm -rf "$VENV"
  /usr/bin/python3 -m venv "$VENV"
fi
"$VENV/bin/pip" install --quiet --disable-pip-version-check "psycopg[binary]==3.2.*" "numpy<2" "scikit-surprise==1.1.4" "onnxruntime==1.32.0" "tokenizers==0.22.*" "pandas>2,<3" "scikit-learn<2" "implicit==0.7.2"
# Microsoft Recommenders for its evaluation module only (pandas, numpy, scikit-learn); its full
# dependency list brings notebook servers and deep-learning stacks.
"$VENV/bin/pip" install --quiet --disable-pip-version-check --no-deps "recommenders==1.2.1"
runuser -u postgres -- psql -X -q -d postgres -c "DROP DATABASE IF EXISTS persona_bench" -c "CREATE DATABASE persona_bench"
chmod -R a+rX "$VENV"
export ML100K=$(realpath "${ML100K:-../shared/data/ml-100k}" 2>/dev/null || echo /nonexistent)
export SST2=$(realpath "${SST2:-../shared/data/sst2-train/train.tsv}" 2>/dev/null || echo /nonexistent)
export SENTIMENT_HEAD=$PWD/models/sentiment_head.json
# bench.py connects with psycopg (by port, not through Debian's psql wrapper) and reads the
# installed minilm model for its Python reference.
PGPORT=$(pg_port)
PERSONA_MODELS=${PERSONA_MODELS:-$("$PG_CONFIG" --sharedir)/extension/pg_persona/models}
rm -f /tmp/persona-bench-results.json
runuser -u postgres -- env FOLDIN_SEED="${FOLDIN_SEED:-7}" FOLDIN_ALGOS="${FOLDIN_ALGOS:-svd,svdpp,als,knn_item,knn_user,baseline}" ML100K="$ML100K" SST2="$SST2" SENTIMENT_HEAD="$SENTIMENT_HEAD" BENCH_SCALE="${BENCH_SCALE:-1}" \
  PGPORT="$PGPORT" PERSONA_MODELS="$PERSONA_MODELS" \
  BENCH_ONLY="${BENCH_ONLY:-cf,recommend,campaign,campaign_v2,text,foldin,beyond,implicit,coldstart}" "$VENV/bin/python" -u benches/bench.py | tee benches/last-run.txt
# The sections measured replace theirs in benches/results.json; each records when it ran.
python3 - /tmp/persona-bench-results.json benches/results.json <<'PY'
import datetime, json, os, sys
new = json.load(open(sys.argv[1]))
old = json.load(open(sys.argv[2])) if os.path.exists(sys.argv[2]) else {}
today = datetime.date.today().isoformat()
for key, value in new.items():
    old[key] = value
    if isinstance(value, dict):
        value["measured_on"] = today
json.dump(old, open(sys.argv[2], "w"), indent=2)
open(sys.argv[2], "a").write("\n")
PY
