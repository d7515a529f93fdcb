#!/usr/bin/env bash
# Retrains the head of the default `sentiment` text model and writes models/sentiment_head.json
# (compiled into the extension; rebuild and reinstall afterwards: bash scripts/install.sh).
#
#   bash scripts/train_sentiment.sh [SST2_TRAIN_DIR] [SST2_DEV_TSV]
#
# Data (defaults relative to the repository root):
#   SST2_TRAIN_DIR  ../shared/data/sst2-train: train.tsv (60,614 phrases, trains the head) and
#                   valid.tsv (6,735, chooses every setting); together GLUE's SST-2 train split.
#   SST2_DEV_TSV    ../shared/data/sst2-dev/dev.tsv (872 sentences): measured once, at the end,
#                   on the chosen model only. Never used for training or choosing.
#   Stanford Sentiment Treebank: Socher et al., EMNLP 2013.
#
# The head is trained by the same SQL function users run, bert_train_classifier, on the default
# encoder minilm, in a scratch database ($PERSONA_TRAIN_DB, default persona_sentiment) of the
# local cluster with the installed extension. Each pooling is one call (one embedding pass over
# the data); within a call, every l2 x balanced combination is trained on the same embeddings
# and the best on valid.tsv is kept. The best call on valid.tsv wins.
#
# Environment: POOLINGS (default "mean cls"), L2S (JSON list), BALANCED (JSON list),
# PERSONA_TRAIN_DB, KEEP_DB=1 to keep the scratch database.
# Takes ~10 minutes on 2 cores (embedding dominates); progress comes as NOTICEs.
set -euo pipefail
cd "$(dirname "$0")/.."

TRAIN_DIR=${1:-../shared/data/sst2-train}
DEV=${2:-$(dirname "$TRAIN_DIR")/sst2-dev/dev.tsv}
DB=${PERSONA_TRAIN_DB:-persona_sentiment}
POOLINGS=${POOLINGS:-"mean cls"}
L2S=${L2S:-"[0.00001, 0.0001, 0.001]"}
BALANCED=${BALANCED:-"[false, true]"}
OUT=models/sentiment_head.json

for f in "$TRAIN_DIR/train.tsv" "$TRAIN_DIR/valid.tsv" "$DEV"; do
  [[ -r "$f" ]] || { echo "[train_sentiment] cannot read $f" >&2; exit 1; }
done
say() { printf '\033[1m[train_sentiment]\033[0m %s\n' "$*" >&2; }
psql_db() { runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -d "$DB" "$@"; }

bash scripts/cluster.sh start >/dev/null
runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -d postgres \
  -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB"
psql_db -c "CREATE EXTENSION pg_persona"

# sentence<TAB>label with a header line; no quoting in these files, so CSV mode with an unused
# quote character reads every byte as it is (text mode would treat backslashes as escapes).
load() { # table file
  psql_db -c "CREATE TABLE $1 (text text NOT NULL, label smallint NOT NULL)"
  psql_db -c "COPY $1 FROM STDIN WITH (FORMAT csv, DELIMITER E'\t', HEADER true, QUOTE E'\x01')" < "$2"
  psql_db -c "CREATE VIEW ${1}_v AS SELECT text, CASE label WHEN 1 THEN 'positive' ELSE 'negative' END AS label FROM $1"
}
load sst2_train "$TRAIN_DIR/train.tsv"
load sst2_valid "$TRAIN_DIR/valid.tsv"
load sst2_dev "$DEV"
psql_db -At -c "SELECT 'rows: train ' || (SELECT count(*) FROM sst2_train) || ', valid ' || (SELECT count(*) FROM sst2_valid) || ', dev ' || (SELECT count(*) FROM sst2_dev)" >&2

psql_db -c "CREATE TABLE runs (pooling text PRIMARY KEY, model text NOT NULL, summary jsonb NOT NULL)"
for pooling in $POOLINGS; do
  say "training on train.tsv with $pooling pooling, l2 in $L2S, balanced in $BALANCED (settings chosen on valid.tsv)"
  psql_db <<SQL
INSERT INTO runs
SELECT '$pooling', 'sst2_$pooling',
       bert_train_classifier('sst2_$pooling', 'sst2_train_v', 'minilm',
         jsonb_build_object('holdout_fraction', 0, 'validation', 'sst2_valid_v',
                            'pooling', '$pooling', 'l2', '$L2S'::jsonb, 'balanced', '$BALANCED'::jsonb,
                            'positive_label', 'positive'));
SQL
  psql_db -At -c "SELECT format('%s pooling: %s rows embedded at %s rows/s; chosen l2 %s, balanced %s: valid accuracy %s; candidates %s',
                         pooling, summary->'rows_used', summary->'rows_per_second', summary->'l2', summary->'balanced',
                         summary->'validation_metrics'->'accuracy', summary->'candidates')
                  FROM runs WHERE pooling = '$pooling'" >&2
done

# The model with the best accuracy on valid.tsv, measured once on SST-2 dev.
best=$(psql_db -At -c "SELECT model FROM runs ORDER BY (summary->'validation_metrics'->>'accuracy')::float8 DESC, (summary->'validation_metrics'->>'log_loss')::float8 LIMIT 1")
say "chosen on valid.tsv: $best; measuring it once on SST-2 dev"
psql_db <<SQL
CREATE TABLE dev_result AS
WITH s AS (
  SELECT label, score
    FROM (SELECT array_agg(text ORDER BY ctid) AS texts, array_agg(label ORDER BY ctid) AS labels FROM sst2_dev) d,
         unnest(d.labels, bert_score(d.texts, '$best')) AS u(label, score)
)
SELECT count(*) AS n,
       round(avg(((score > 0.5)::int = label)::int), 4) AS accuracy
  FROM s;
SQL
psql_db -At -c "SELECT format('SST-2 dev: %s sentences, accuracy %s', n, accuracy) FROM dev_result" >&2

# The head as a ModelSpec, with its provenance under "about".
psql_db -At > "$OUT.tmp" <<SQL
SELECT jsonb_pretty(
  (SELECT spec FROM persona.bert_model_store WHERE name = '$best')
  || jsonb_build_object('about', jsonb_build_object(
       'model', 'minilm (all-MiniLM-L6-v2, int8 ONNX) + a softmax head trained by bert_train_classifier',
       'trained_on', 'SST-2 train phrases (train.tsv, 60,614 rows): Socher et al., EMNLP 2013',
       'settings_chosen_on', 'valid.tsv (6,735 rows), disjoint from SST-2 dev',
       'script', 'scripts/train_sentiment.sh',
       'pooling', r.summary->'pooling',
       'l2', r.summary->'l2',
       'balanced', r.summary->'balanced',
       'valid_accuracy', r.summary->'validation_metrics'->'accuracy',
       'runs', (SELECT jsonb_object_agg(pooling, jsonb_build_object(
                    'valid_accuracy', summary->'validation_metrics'->'accuracy',
                    'rows_per_second', summary->'rows_per_second',
                    'candidates', summary->'candidates')) FROM runs),
       'sst2_dev_accuracy', (SELECT accuracy FROM dev_result),
       'sst2_dev_sentences', (SELECT n FROM dev_result))))
  FROM runs r WHERE r.model = '$best';
SQL
# Weights one per line are long to read; keep numbers of an array on one line.
python3 - "$OUT.tmp" "$OUT" <<'PY'
import json, sys
spec = json.load(open(sys.argv[1]))
def dump(v, indent=0):
    pad = "  " * indent
    if isinstance(v, dict):
        items = [f'{pad}  {json.dumps(k)}: {dump(x, indent + 1).lstrip()}' for k, x in v.items()]
        return pad + "{\n" + ",\n".join(items) + "\n" + pad + "}"
    return pad + json.dumps(v, separators=(", ", ": "))
open(sys.argv[2], "w").write(dump(spec) + "\n")
PY
rm -f "$OUT.tmp"
say "wrote $OUT ($(wc -c < "$OUT") bytes); rebuild and reinstall the extension to ship it: bash scripts/install.sh"
if [[ "${KEEP_DB:-0}" != 1 ]]; then
  runuser -u postgres -- psql -X -q -d postgres -c "DROP DATABASE $DB"
fi
