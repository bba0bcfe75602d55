#!/bin/bash
# Spatial-temporal multiplexing on one GPU (the Multiplexing issue's benchmark): three synthetic
# Llama shapes, 1B, 3B and 7B (weights drawn on the GPU at load), served by muxserved in
# muxserve, temporal and spatial modes on the same request stream (`muxserve experiment`):
# Poisson arrivals, power-law popularity with exponent ALPHA over the models in the order
# 1B, 3B, 7B (the small one most popular, as in the MuxServe paper), the top rate SCALE req/s,
# ShareGPT-like lengths with outputs forced to their drawn length.
# Bundle here:
#   ../shared/device/bundle.sh build/src/apps/muxserved build/src/apps/muxserve .devbundle
# On the GPU machine, from the repository root:
#   benchmarks/multiplex_run.sh ALPHA SCALE DURATION OUTDIR
# Environment: KV (the shared KV pool, default 40GiB), DECODE_SHARE (muxserve mode: the decode
# jobs' share of the SMs while a prefill runs, default 0.4), PARTITIONS (auto|green|none), MODES
# (default muxserve,temporal,spatial).
# Each model's configured rate is its rate in the stream, so spatial mode splits SMs and KV by
# the load it gets (rate x FLOPs per token, rate x KV bytes per token).
set -uo pipefail
export LD_LIBRARY_PATH=$PWD/.devbundle/lib:/usr/local/cuda/lib64
alpha=${1:?usage: multiplex_run.sh ALPHA SCALE DURATION OUTDIR}
scale=${2:?}
duration=${3:?}
out=${4:?}
mkdir -p "$out"
rate() { python3 -c "print(round($scale * $1 ** -$alpha, 4))"; }

cat > "$out/config.yaml" <<YAML
server:
  grpc_address: 127.0.0.1:0
  metrics_address: 127.0.0.1:0
  shutdown_grace_seconds: 2
  max_queued_requests: 100000
  synthetic_dir: $out/synthetic
runtime:
  backend: cuda
  partitions: ${PARTITIONS:-auto}
kv_cache:
  memory: ${KV:-40GiB}
  block_bytes: 16KiB
scheduler:
  mode: muxserve
  max_prefill_tokens: 2048
  max_batch_size: 256
  decode_sm_share: ${DECODE_SHARE:-0.4}
models:
  - name: llama-1b   # Llama-3.2-1B shape: GQA, head size 64
    synthetic: {layers: 16, hidden: 2048, heads: 32, kv_heads: 8, intermediate: 8192,
                vocab: 32000, max_position: 4096, seed: 1, weights: device}
    dtype: bfloat16
    rate: $(rate 1)
    max_context: 2048
  - name: llama-3b   # Llama-3.2-3B shape: GQA, head size 128
    synthetic: {layers: 28, hidden: 3072, heads: 24, kv_heads: 8, intermediate: 8192,
                vocab: 32000, max_position: 4096, seed: 2, weights: device}
    dtype: bfloat16
    rate: $(rate 2)
    max_context: 2048
  - name: llama-7b   # Llama-2-7B shape: MHA, head size 128
    synthetic: {layers: 32, hidden: 4096, heads: 32, kv_heads: 32, intermediate: 11008,
                vocab: 32000, max_position: 4096, seed: 3, weights: device}
    dtype: bfloat16
    rate: $(rate 3)
    max_context: 2048
YAML

.devbundle/muxserve experiment --config "$out/config.yaml" --modes "${MODES:-muxserve,temporal,spatial}" \
  --daemon .devbundle/muxserved --alpha "$alpha" --rate-scale "$scale" --duration "$duration" \
  --lengths sharegpt --drain-timeout 20 --probe-repeats 1 --probe-lengths 64,512 --no-plots \
  --quiet --out "$out/experiment"
rc=$?
rm -rf "$out/synthetic"
exit $rc
