#!/usr/bin/env bash
# Loads MovieLens files into schema "movielens" of a database:
#   ml-100k:          u.data (user item rating timestamp, tab-separated), u.item (Latin-1, '|')
#   ml-latest-small:  ratings.csv, movies.csv
# Usage: scripts/load_movielens.sh DIR [DATABASE]. MovieLens may not be redistributed: read it by path.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/pg.sh"
DIR=$(realpath "$1"); DB=${2:-persona_demo}
psql_pg() { runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -d "$DB" "$@"; }
tmp=$(mktemp -d); chmod 755 "$tmp"; trap 'rm -rf "$tmp"' EXIT
psql_pg -c "DROP SCHEMA IF EXISTS movielens CASCADE" -c "CREATE SCHEMA movielens" \
  -c "CREATE TABLE movielens.ratings (user_id bigint, item_id bigint, rating real, rated_at timestamptz)" \
  -c "CREATE TABLE movielens.items (item_id bigint PRIMARY KEY, title text, genres text)"
if [[ -f "$DIR/u.data" ]]; then
  awk -F'\t' 'BEGIN{OFS="\t"} {print $1,$2,$3,$4}' "$DIR/u.data" > "$tmp/r.tsv"
  iconv -f latin1 -t utf-8 "$DIR/u.item" | awk -F'|' 'BEGIN{OFS="\t"; split("unknown Action Adventure Animation Children Comedy Crime Documentary Drama Fantasy Film-Noir Horror Musical Mystery Romance Sci-Fi Thriller War Western", g, " ")}
    { gs=""; for (k=6; k<=24; k++) if ($k==1) gs = gs (gs==""?"":"|") g[k-5]; gsub(/\\/, "", $2); print $1, $2, gs }' > "$tmp/i.tsv"
  psql_pg -c "CREATE TEMP TABLE r (u bigint, i bigint, r real, t bigint)" \
    -c "\\copy r FROM '$tmp/r.tsv'" \
    -c "INSERT INTO movielens.ratings SELECT u, i, r, to_timestamp(t) FROM r" \
    -c "\\copy movielens.items FROM '$tmp/i.tsv'"
elif [[ -f "$DIR/ratings.csv" ]]; then
  psql_pg -c "CREATE TEMP TABLE r (u bigint, i bigint, r real, t bigint)" \
    -c "\\copy r FROM '$DIR/ratings.csv' WITH (FORMAT csv, HEADER true)" \
    -c "INSERT INTO movielens.ratings SELECT u, i, r, to_timestamp(t) FROM r" \
    -c "\\copy movielens.items FROM '$DIR/movies.csv' WITH (FORMAT csv, HEADER true)"
else
  echo "no u.data or ratings.csv in $DIR" >&2; exit 1
fi
psql_pg -c "ANALYZE movielens.ratings" -c "SELECT count(*) AS movielens_ratings FROM movielens.ratings"
