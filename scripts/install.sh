#!/usr/bin/env bash
# Builds pg_persona in release mode and installs it into the system PostgreSQL 15, replacing the
# shared library only while the cluster is stopped (a running backend may have it mapped).
set -euo pipefail
cd "$(dirname "$0")/.."
PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config
cargo pgrx package --pg-config "$PG_CONFIG" --out-dir target/pgrx-package >/dev/null
pkg=target/pgrx-package
# pgrx generates the current version's install script; the frozen install scripts of earlier
# versions and the upgrade scripts (pg_persona--OLD--NEW.sql) are hand-written and go beside it.
extdir="$pkg$($PG_CONFIG --sharedir)/extension"
cp sql/pg_persona--*.sql "$extdir"/
bash scripts/cluster.sh stop
cp -a "$pkg"/. /
bash scripts/cluster.sh start
echo "[install] pg_persona $(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1) installed into $($PG_CONFIG --pkglibdir)"
