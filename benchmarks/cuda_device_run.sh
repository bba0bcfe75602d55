#!/bin/bash
# Runs the CUDA backend's checks and benchmark on the GPU machine from a bundle made here:
#   ../shared/device/bundle.sh build-cuda/tests/kernels/kernels_gpu_test \
#       build-cuda/benchmarks/decode_bench .devbundle      (strip --strip-debug the binaries)
# then, on the GPU machine, from the repository root: benchmarks/cuda_device_run.sh OUTDIR
# The tests run when the bundle holds kernels_gpu_test. HF transformers (eager) is timed on the
# same card right after decode_bench and merged into its JSON (field hf_transformers_eager).
# Logs and the JSON report land in OUTDIR; the test summary and the timing tables print last.
set -uo pipefail
out=${1:?usage: cuda_device_run.sh OUTDIR}
mkdir -p "$out"
export LD_LIBRARY_PATH=$PWD/.devbundle/lib:/usr/local/cuda/lib64
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,temperature.gpu,memory.used \
  --format=csv | tee "$out/gpu.txt"
if [[ -x .devbundle/kernels_gpu_test ]]; then
  .devbundle/kernels_gpu_test > "$out/gpu_test.log" 2>&1
  echo "kernels_gpu_test exit $?" | tee -a "$out/gpu_test.log"
  sanitizer=/usr/local/cuda/bin/compute-sanitizer
  if [[ -x $sanitizer ]]; then
    timeout 240 "$sanitizer" --tool memcheck --print-limit 20 .devbundle/kernels_gpu_test \
      --gtest_filter='CudaOpsTest.*:Shapes/*:Models/*:CudaSamplingTest.*' > "$out/memcheck.log" 2>&1
    echo "memcheck exit $?" >> "$out/memcheck.log"
  fi
fi
.devbundle/decode_bench --out "$out/cuda_decode.json" > "$out/bench.log" 2>&1
echo "decode_bench exit $?" >> "$out/bench.log"
PYTHONUNBUFFERED=1 timeout 300 python3 benchmarks/hf_reference.py --out "$out/hf_reference.json" \
  --merge-into "$out/cuda_decode.json" > "$out/hf.log" 2>&1
echo "hf_reference exit $?" >> "$out/hf.log"
echo "=== memcheck"; tail -n 8 "$out/memcheck.log" 2>/dev/null
echo "=== tests"; grep -E "^\[  (FAILED|SKIPPED|PASSED) |Failure|error|Expected|Which is|prompt|exit" \
  "$out/gpu_test.log" 2>/dev/null | head -n 80
echo "=== bench"; cat "$out/bench.log"
echo "=== hf transformers (eager)"; tail -n 30 "$out/hf.log"
