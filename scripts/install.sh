#!/usr/bin/env bash
# Builds pg_persona in release mode and installs it into the system PostgreSQL $PG_MAJOR (15 by
# default, see scripts/pg.sh), replacing the shared library only while the cluster is stopped (a
# running backend may have it mapped).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/pg.sh
cargo pgrx package --pg-config "$PG_CONFIG" --no-default-features --features "pg$PG_MAJOR" \
  --out-dir target/pgrx-package >/dev/null
pkg=target/pgrx-package
# pgrx generates the current version's install script; the frozen install scripts of earlier
# versions and the upgrade scripts (pg_persona--OLD--NEW.sql) are hand-written and go beside it.
extdir="$pkg$($PG_CONFIG --sharedir)/extension"
cp sql/pg_persona--*.sql "$extdir"/
bash scripts/cluster.sh stop
cp -a "$pkg"/. /
bash scripts/cluster.sh start
echo "[install] pg_persona $(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1) installed into $($PG_CONFIG --pkglibdir)"
