#!/bin/bash
# Runs every GPU test binary of a bundle on the GPU machine and prints one summary line each.
# Bundle here (strip --strip-debug the binaries first to keep the bundle small):
#   ../shared/device/bundle.sh build/tests/kernels/kernels_gpu_test \
#       build/tests/engine/random_weights_gpu_test build/tests/engine/hf_parity_gpu_test \
#       build/tests/runtime/runtime_gpu_test \
#       build/tests/runtime/runtime_partition_gpu_test \
#       build/tests/runtime/runtime_communicator_gpu_test .devbundle
# On the GPU machine, from the repository root: benchmarks/gpu_tests_run.sh OUTDIR
# Each test's full log lands in OUTDIR/<binary>.log; the exit status is the number of failed
# binaries.
set -uo pipefail
out=${1:?usage: gpu_tests_run.sh OUTDIR}
mkdir -p "$out"
export LD_LIBRARY_PATH=$PWD/.devbundle/lib:/usr/local/cuda/lib64
export NCCL_NVLS_ENABLE=0  # NVLink multicast stays off on these machines
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/gpu.txt"
failed=0
for test in .devbundle/*_gpu_test; do
  name=$(basename "$test")
  timeout 300 "$test" > "$out/$name.log" 2>&1
  rc=$?
  ((rc == 0)) || failed=$((failed + 1))
  echo "$name: exit $rc; $(grep -E '^\[  (PASSED|FAILED|SKIPPED)  \]' "$out/$name.log" | tr '\n' ' ')"
  grep -E "^\[  FAILED  \]|Failure$" "$out/$name.log" | head -n 10
done
exit $failed
