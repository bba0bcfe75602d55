#!/bin/bash
# End-to-end throughput of muxserved on the GPU machine: one Llama-2-7B-shaped synthetic model
# (random bf16 weights, 13.5 GB) on the CUDA backend, loaded by e2e_load.py through
# `muxserve generate` clients (128-token prompts, 128 output tokens, --ignore-eos).
# Bundle here:
#   ../shared/device/bundle.sh build/src/apps/muxserved build/src/apps/muxserve .devbundle
# On the GPU machine, from the repository root:
#   benchmarks/cuda_e2e_run.sh make-model DIR     # writes the model (CPU, a few minutes)
#   benchmarks/cuda_e2e_run.sh serve DIR OUTDIR   # starts the daemon on DIR, loads it, stops it
# make-model needs no GPU, so it can run in the background while other GPU work goes on.
set -uo pipefail
export LD_LIBRARY_PATH=$PWD/.devbundle/lib:/usr/local/cuda/lib64
readonly model_name=llama-2-7b-shape

case ${1:-} in
  make-model)
    dir=${2:?usage: cuda_e2e_run.sh make-model DIR}
    start=$(date +%s)
    .devbundle/muxserve make-model --out "$dir/model" --layers 32 --hidden 4096 --heads 32 \
      --kv-heads 32 --intermediate 11008 --vocab 32000 --max-position 4096 --seed 1
    rc=$?
    echo "make-model exit $rc in $(($(date +%s) - start)) s"
    exit $rc
    ;;
  serve)
    dir=${2:?usage: cuda_e2e_run.sh serve DIR OUTDIR}
    out=${3:?usage: cuda_e2e_run.sh serve DIR OUTDIR}
    ;;
  *)
    echo "usage: cuda_e2e_run.sh make-model DIR | serve DIR OUTDIR" >&2
    exit 2
    ;;
esac

mkdir -p "$out"
cat > "$dir/serve.yaml" <<EOF
server:
  grpc_address: 127.0.0.1:50051
  metrics_address: 127.0.0.1:9400
  shutdown_grace_seconds: 5
  max_queued_requests: 4096
runtime:
  backend: cuda
kv_cache:
  memory: 40GiB
  block_bytes: 16KiB
scheduler:
  mode: muxserve
  max_prefill_tokens: 4096
  max_batch_size: 256
models:
  - name: $model_name
    path: $dir/model
    dtype: bfloat16
    max_context: 2048
EOF
cp "$dir/serve.yaml" "$out/serve.yaml"

# The daemon and the clients get disjoint cores (clients would run elsewhere in production, and
# the daemon's OpenMP staging of block tables stalls on a core shared with a busy client).
ncpu=$(nproc)
daemon_cpus=0-$((ncpu - 5))
client_cpus=$((ncpu - 4))-$((ncpu - 1))
start=$(date +%s)
taskset -c "$daemon_cpus" .devbundle/muxserved --config "$dir/serve.yaml" \
  > "$out/muxserved.log" 2>&1 &
daemon=$!
# The endpoint answers before the weights are loaded ("still loading"): wait for one generation.
until .devbundle/muxserve generate --model "$model_name" --token-ids 1,2,3 --max-tokens 2 \
    --ignore-eos > /dev/null 2>&1; do
  if ! kill -0 "$daemon" 2>/dev/null || (($(date +%s) - start > 300)); then
    echo "muxserved did not become ready"; tail -n 30 "$out/muxserved.log"; kill "$daemon"
    exit 1
  fi
  sleep 1
done
echo "muxserved serving in $(($(date +%s) - start)) s (daemon on CPUs $daemon_cpus," \
  "clients on $client_cpus)"
nvidia-smi --query-gpu=memory.used --format=csv,noheader | sed 's/^/GPU memory used: /'

# Repeated values: the first round of a size warms up (the first sight of a batch shape runs
# eagerly and tunes its GEMMs; the second captures its graph).
taskset -c "$client_cpus" python3 benchmarks/e2e_load.py --cli .devbundle/muxserve \
  --addr 127.0.0.1:50051 --model "$model_name" --concurrency 1 1 1 8 8 32 32 64 128 128 256 256 \
  --out "$out/e2e_load.json"
load_rc=$?
.devbundle/muxserve stats --addr 127.0.0.1:50051 > "$out/stats.txt" 2>&1
curl -s 127.0.0.1:9400/metrics > "$out/metrics.txt" 2>/dev/null
kill "$daemon"
wait "$daemon"
echo "muxserved exit $?, load exit $load_rc"
tail -n 5 "$out/muxserved.log"
exit $load_rc
