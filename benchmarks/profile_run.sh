#!/bin/bash
# `muxserve profile` on the GPU machine: the cost table of configs/profile-h200.yaml (three
# synthetic Llama shapes, 1B, 3B and 7B, weights drawn on the GPU) on green partitions, with the
# interference of each model's decode beside the first model's prefill and back; then
# `muxserve plan` of the same config reads the table, to show the planner takes it.
# Bundle here:
#   ../shared/device/bundle.sh build/src/apps/muxserve .devbundle
# On the GPU machine, from the repository root:
#   benchmarks/profile_run.sh OUTDIR [more `muxserve profile` flags]
# Environment: MAX_SECONDS (per model, default 60: the three models stay under 3 minutes).
# Writes OUTDIR/profile_h200.json (the table), profile.log (the summary), progress.log (the
# progress bar), plan.log and plan.json, gpu.txt.
set -uo pipefail
out=$(realpath -m "${1:?usage: profile_run.sh OUTDIR [muxserve profile flags]}")
shift
mkdir -p "$out"
export LD_LIBRARY_PATH=$PWD/.devbundle/lib:/usr/local/cuda/lib64
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,temperature.gpu,memory.used \
  --format=csv | tee "$out/gpu.txt"
start=$(date +%s)
.devbundle/muxserve profile --config configs/profile-h200.yaml --out "$out/profile_h200.json" \
  --max-seconds-per-model "${MAX_SECONDS:-60}" "$@" 2> "$out/progress.log" | tee "$out/profile.log"
rc=${PIPESTATUS[0]}
echo "muxserve profile exit $rc after $(($(date +%s) - start)) s" | tee -a "$out/profile.log"
tr '\r' '\n' < "$out/progress.log" | grep -v '^$' | tail -n 5

# The same config planned with the table just written.
sed "s|^  cost_table: .*|  cost_table: $out/profile_h200.json|" configs/profile-h200.yaml \
  > "$out/plan.yaml"
.devbundle/muxserve plan "$out/plan.yaml" --out "$out/plan.json" > "$out/plan.log" 2>&1
echo "muxserve plan exit $?" >> "$out/plan.log"
cat "$out/plan.log"
exit "$rc"
