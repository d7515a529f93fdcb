#!/usr/bin/env bash
# The whole GPU measurement of the shared inference worker, in one run, on a machine with an
# NVIDIA GPU (it cannot run on the 2-vCPU development VM):
#   1. installs what is missing (scripts/setup.sh), builds and installs the extension (make
#      install), and ONNX Runtime's GPU build (PyPI onnxruntime-gpu, the same version as the CPU
#      library, with the CUDA and cuDNN wheels it loads) into $(pg_config --pkglibdir)/pg_persona/gpu
#   2. points the cluster at it (persona.onnxruntime_library, persona.device = cuda, the CUDA
#      wheels' directories in the server's LD_LIBRARY_PATH) and restarts it
#   3. checks the design: with 8 clients scoring at once, exactly one process holds a CUDA
#      context (the inference worker), against one per client with persona.inference = backend;
#      GPU memory in use in each case (nvidia-smi)
#   4. runs benches/inference.sh (worker against backend: memory, pgbench throughput and p99,
#      array and per-row throughput, first call) on the GPU
# Results: benches/gpu-results.txt and benches/inference-results.json. Restores the CPU
# configuration at the end (RESTORE=0 keeps the GPU one).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/pg.sh
command -v nvidia-smi >/dev/null || { echo "gpu.sh: no nvidia-smi: this machine has no NVIDIA GPU" >&2; exit 1; }
OUT=benches/gpu-results.txt
exec > >(tee "$OUT") 2>&1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader

bash scripts/setup.sh
make install
# The newest onnxruntime-gpu on PyPI (checked 2026-12-02: 1.31.1, CUDA 13 and cuDNN 9 wheels
# through the [cuda,cudnn] extras; there is no 1.32.0 GPU build yet).
ORT_VERSION=${ORT_GPU_VERSION:-1.31.1}
GPU_DIR=$("$PG_CONFIG" --pkglibdir)/pg_persona/gpu
VENV=.cache/gpu-venv
if [[ ! -x $VENV/bin/python ]]; then
  python3 -m venv "$VENV"
fi
# onnxruntime-gpu pulls the CUDA runtime, cuBLAS, cuDNN ... wheels it was built against.
"$VENV/bin/pip" install --quiet --disable-pip-version-check "onnxruntime-gpu[cuda,cudnn]==$ORT_VERSION"
site=$("$VENV/bin/python" -c 'import onnxruntime, os; print(os.path.dirname(onnxruntime.__file__))')
mkdir -p "$GPU_DIR"
cp "$site"/capi/libonnxruntime*.so* "$GPU_DIR"/
lib=$(ls "$GPU_DIR"/libonnxruntime.so.* | head -1)
ln -sf "$(basename "$lib")" "$GPU_DIR/libonnxruntime.so"
chmod -R a+rX "$GPU_DIR" "$VENV"
# Every directory of the NVIDIA wheels that holds a shared library (their layout differs between
# CUDA 12 and 13 wheels).
nvidia_dirs=$(find "$(dirname "$site")/nvidia" -name '*.so*' -printf '%h\n' | sort -u | tr '\n' ':')

conf=/etc/postgresql/$PG_MAJOR/main/conf.d/pg_persona_gpu.conf
envfile=/etc/postgresql/$PG_MAJOR/main/environment
cp "$envfile" "$envfile.cpu" 2>/dev/null || true
restore() {
  [[ ${RESTORE:-1} == 1 ]] || return 0
  rm -f "$conf"
  [[ -f "$envfile.cpu" ]] && mv "$envfile.cpu" "$envfile"
  bash scripts/cluster.sh stop && bash scripts/cluster.sh start
}
trap restore EXIT
printf "%s\n" "persona.onnxruntime_library = '$GPU_DIR/libonnxruntime.so'" "persona.device = 'cuda'" > "$conf"
echo "LD_LIBRARY_PATH = '$nvidia_dirs$GPU_DIR'" >> "$envfile"
bash scripts/cluster.sh stop
bash scripts/cluster.sh start
PGPORT=$(pg_port)
export PGPORT
psql_() { runuser -u postgres -- env PGPORT="$PGPORT" "$PG_BINDIR/psql" -X -q -At -v ON_ERROR_STOP=1 "$@"; }
psql_ -d postgres -c "DROP DATABASE IF EXISTS persona_gpu" -c "CREATE DATABASE persona_gpu"
psql_ -d persona_gpu -c "CREATE EXTENSION pg_persona"
psql_ -d persona_gpu -c "SELECT bert_score('the GPU is warm')" >/dev/null
grep "inference worker: loaded graph" "$(pg_main_cluster | awk '{print $7}')" | tail -1

# CUDA contexts: the processes nvidia-smi lists while 8 clients score at once.
contexts() {
  local mode=$1
  for _ in $(seq 1 8); do
    PGOPTIONS="-c persona.inference=$mode" psql_ -d persona_gpu \
      -c "SELECT count(bert_score(md5(g::text) || ' a fine film')) FROM generate_series(1, 400) g" \
      -c "SELECT pg_sleep(6)" >/dev/null &
  done
  sleep 5
  echo "persona.inference = $mode: processes with a CUDA context, and their GPU memory (MiB):"
  nvidia-smi --query-compute-apps=pid,process_name,used_memory --format=csv,noheader
  nvidia-smi --query-compute-apps=pid --format=csv,noheader | wc -l | sed 's/^/  processes: /'
  wait
}
contexts worker
contexts backend

bash benches/inference.sh
