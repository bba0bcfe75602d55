#!/bin/bash
# The MuxServe paper's experiments scaled to one GPU (the paper-experiments issue): five synthetic
# Llama shapes of 1B-8B share one GPU and one KV pool, served by muxserved in muxserve, temporal
# and spatial mode on the same request streams (`muxserve experiment`, one daemon per mode
# serving every load in turn).
#
#   benchmarks/paper_run.sh synthetic ALPHA SCALES DURATION OUTDIR
#       Poisson arrivals, power-law popularity with exponent ALPHA over the models in the order
#       below (the smallest most popular), ShareGPT-like lengths with forced output lengths; one
#       load per rate scale in SCALES (comma-separated: the most popular model's req/s).
#   benchmarks/paper_run.sh trace SPEEDUPS OUTDIR
#       A ChatLMSYS-like trace (MuxServe's popularity and daily swing, 640 requests over 40 s
#       of compressed time) replayed compressed by each factor in SPEEDUPS.
#
# Environment: KV (the shared pool, default 48GiB), MODES (default muxserve,temporal,spatial),
# SLO_BASE (a slo_base.json to reuse instead of measuring), DRAIN (seconds after the last send,
# default 10), DECODE_PRIORITY (muxserve mode: none|uniform|by_rate, default by_rate; the first
# runs of 2026-12-03 used uniform, then spelled true), SPATIAL_SPLIT
# (memory|compute, default memory: one engine per model sized by its memory, as operators split a
# shared GPU today).
# Bundle here (see docs/benchmarks.md), then on the GPU machine from the repository root.
set -uo pipefail
export LD_LIBRARY_PATH=$PWD/.devbundle/lib:/usr/local/cuda/lib64
kind=${1:?usage: paper_run.sh synthetic ALPHA SCALES DURATION OUTDIR | trace SPEEDUPS OUTDIR}
shift
if [ "$kind" = synthetic ]; then
  alpha=${1:?}; scales=${2:?}; duration=${3:?}; out=${4:?}
  # The config's rates: the stream's at the middle scale (spatial shares and KV quotas depend
  # only on their ratios).
  middle=$(python3 -c "s=sorted(float(x) for x in '$scales'.split(',')); print(s[len(s)//2])")
  rate() { python3 -c "print(round($middle * $1 ** -$alpha, 4))"; }
  rates=("$(rate 1)" "$(rate 2)" "$(rate 3)" "$(rate 4)" "$(rate 5)")
elif [ "$kind" = trace ]; then
  speedups=${1:?}; out=${2:?}
  rates=(1 1 1 1 1)  # replaced below by the trace's own
else
  echo "unknown kind '$kind'" >&2; exit 2
fi
mkdir -p "$out"
models=(llama-1b tinyllama-1.1b llama-3b llama-7b llama-8b)

write_config() {
  cat > "$out/config.yaml" <<YAML
server:
  grpc_address: 127.0.0.1:0
  metrics_address: 127.0.0.1:0
  shutdown_grace_seconds: 2
  max_queued_requests: 100000
  synthetic_dir: $out/synthetic
runtime:
  backend: cuda
kv_cache:
  memory: ${KV:-48GiB}
  block_bytes: 16KiB
scheduler:
  mode: muxserve
  max_prefill_tokens: 2048
  max_batch_size: 256
  decode_priority: ${DECODE_PRIORITY:-by_rate}
  spatial_split: ${SPATIAL_SPLIT:-memory}
models:
  - name: llama-1b         # Llama-3.2-1B: GQA, head size 64, tied embeddings
    synthetic: {layers: 16, hidden: 2048, heads: 32, kv_heads: 8, intermediate: 8192,
                vocab: 128256, max_position: 4096, tie_embeddings: true, seed: 1, weights: device}
    dtype: bfloat16
    rate: ${rates[0]}
    max_context: 2048
  - name: tinyllama-1.1b   # TinyLlama-1.1B: GQA 32/4, head size 64
    synthetic: {layers: 22, hidden: 2048, heads: 32, kv_heads: 4, intermediate: 5632,
                vocab: 32000, max_position: 4096, seed: 2, weights: device}
    dtype: bfloat16
    rate: ${rates[1]}
    max_context: 2048
  - name: llama-3b         # Llama-3.2-3B: GQA, head size 128, tied embeddings
    synthetic: {layers: 28, hidden: 3072, heads: 24, kv_heads: 8, intermediate: 8192,
                vocab: 128256, max_position: 4096, tie_embeddings: true, seed: 3, weights: device}
    dtype: bfloat16
    rate: ${rates[2]}
    max_context: 2048
  - name: llama-7b         # Llama-2-7B: MHA, head size 128
    synthetic: {layers: 32, hidden: 4096, heads: 32, kv_heads: 32, intermediate: 11008,
                vocab: 32000, max_position: 4096, seed: 4, weights: device}
    dtype: bfloat16
    rate: ${rates[3]}
    max_context: 2048
  - name: llama-8b         # Llama-3.1-8B: GQA, head size 128
    synthetic: {layers: 32, hidden: 4096, heads: 32, kv_heads: 8, intermediate: 14336,
                vocab: 128256, max_position: 4096, seed: 5, weights: device}
    dtype: bfloat16
    rate: ${rates[4]}
    max_context: 2048
YAML
}

common=(--modes "${MODES:-muxserve,temporal,spatial}" --daemon .devbundle/muxserved
        --drain-timeout "${DRAIN:-10}" --probe-repeats 1 --probe-lengths 64,512 --no-plots --quiet
        --out "$out/experiment")
[ -n "${SLO_BASE:-}" ] && common+=(--slo-base "$SLO_BASE")

if [ "$kind" = synthetic ]; then
  write_config
  .devbundle/muxserve experiment --config "$out/config.yaml" "${common[@]}" \
    --alpha "$alpha" --rate-scales "$scales" --duration "$duration" --lengths sharegpt
  rc=$?
else
  trace="$out/chatlmsys.jsonl"
  .devbundle/muxserve trace generate-chatlmsys --out "$trace" --models "$(IFS=,; echo "${models[*]}")" \
    --requests 640 --window 43200 --compress 1080 --seed 7 || exit 1
  # The config's rates: the trace's own at speed-up 1 (their ratios are what matter).
  mapfile -t rates < <(python3 - "$trace" "${models[@]}" <<'PY'
import json, sys
counts, span = {}, 0.0
for line in open(sys.argv[1]):
    if line.strip():
        r = json.loads(line)
        counts[r["model"]] = counts.get(r["model"], 0) + 1
        span = max(span, r["arrival_s"])
for model in sys.argv[2:]:
    print(round(max(counts.get(model, 0), 1) / max(span, 1e-9), 4))
PY
)
  write_config
  .devbundle/muxserve experiment --config "$out/config.yaml" "${common[@]}" \
    --trace "$trace" --trace-speedups "$speedups"
  rc=$?
fi
rm -rf "$out/synthetic"
exit $rc
