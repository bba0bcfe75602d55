#!/bin/bash
# Runs the CUDA backend's checks and benchmark on the GPU machine from a bundle made here:
#   ../shared/device/bundle.sh build-cuda/tests/kernels/kernels_gpu_test \
#       build-cuda/benchmarks/decode_bench .devbundle      (strip --strip-debug the binaries)
# then, on the GPU machine, from the repository root: benchmarks/cuda_device_run.sh OUTDIR
# Logs and the JSON report land in OUTDIR; the test summary and the timing table print last.
set -uo pipefail
out=${1:?usage: cuda_device_run.sh OUTDIR}
mkdir -p "$out"
export LD_LIBRARY_PATH=$PWD/.devbundle/lib:/usr/local/cuda/lib64
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,temperature.gpu,memory.used \
  --format=csv | tee "$out/gpu.txt"
.devbundle/kernels_gpu_test > "$out/gpu_test.log" 2>&1
echo "kernels_gpu_test exit $?" | tee -a "$out/gpu_test.log"
sanitizer=/usr/local/cuda/bin/compute-sanitizer
if [[ -x $sanitizer ]]; then
  timeout 240 "$sanitizer" --tool memcheck --print-limit 20 .devbundle/kernels_gpu_test \
    --gtest_filter='CudaOpsTest.*:Shapes/*:Models/*' > "$out/memcheck.log" 2>&1
  echo "memcheck exit $?" >> "$out/memcheck.log"
fi
.devbundle/decode_bench --out "$out/cuda_decode.json" > "$out/bench.log" 2>&1
echo "decode_bench exit $?" >> "$out/bench.log"
echo "=== memcheck"; tail -n 8 "$out/memcheck.log" 2>/dev/null
echo "=== tests"; grep -E "^\[  (FAILED|SKIPPED|PASSED) |Failure|error|Expected|Which is|prompt|exit" \
  "$out/gpu_test.log" | head -n 80
echo "=== bench"; cat "$out/bench.log"
