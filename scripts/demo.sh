#!/usr/bin/env bash
# The demo: a database with pg_persona and the bundled demo data, and every SQL function of the
# extension run on it (scripts/demo.sql). Needs the extension installed (make install).
#   DEMO_DB       database to (re)create, default persona_demo
#   DEMO_REPORT   where the HTML campaign report is written, default /tmp/persona_demo_report.html
#   MOVIELENS_DIR also load MovieLens from this directory (ml-100k or ml-latest-small) and train on it
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/pg.sh
DB=${DEMO_DB:-persona_demo}
bash scripts/cluster.sh start
psql_pg() { runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 "$@"; }
psql_pg -d postgres -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB"
# The HTML campaign report is written here (by the postgres user).
REPORT=${DEMO_REPORT:-/tmp/persona_demo_report.html}
runuser -u postgres -- psql -X -v ON_ERROR_STOP=1 -v report="$REPORT" -d "$DB" -f scripts/demo.sql
if [[ -n "${MOVIELENS_DIR:-}" ]]; then
  bash scripts/load_movielens.sh "$MOVIELENS_DIR" "$DB"
  psql_pg -d "$DB" -c "SELECT jsonb_pretty(cf_train('movielens.ratings', model => 'movielens'))"
fi
echo
echo "The demo database is '$DB': runuser -u postgres -- psql $DB"
echo "The campaign report is $REPORT (open it in a browser)."
