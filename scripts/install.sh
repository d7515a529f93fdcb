#!/usr/bin/env bash
# Builds pg_persona in release mode and installs it into the system PostgreSQL 15, replacing the
# shared library only while the cluster is stopped (a running backend may have it mapped).
set -euo pipefail
cd "$(dirname "$0")/.."
PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config
cargo pgrx package --pg-config "$PG_CONFIG" --out-dir target/pgrx-package >/dev/null
pkg=target/pgrx-package
bash scripts/cluster.sh stop
cp -a "$pkg"/. /
bash scripts/cluster.sh start
echo "[install] pg_persona $(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1) installed into $($PG_CONFIG --pkglibdir)"
