#!/bin/bash
# Tensor parallelism on a machine of two or more GPUs (the tensor-parallel issue's GPU runs).
# Bundle here:
#   ../shared/device/bundle.sh build/tests/kernels/kernels_gpu_test build/benchmarks/tp_bench \
#       .devbundle
# On the GPU machine, from the repository root: benchmarks/tp_run.sh OUTDIR [GPUS]
# Runs the split-model test (TP=2 logits and greedy tokens against TP=1) and tp_bench (13B
# decode step at TP=1 and TP=GPUS, all-reduce bus bandwidth against plain NCCL); the report is
# OUTDIR/tensor_parallel.json.
set -uo pipefail
out=${1:?usage: tp_run.sh OUTDIR [GPUS]}
gpus=${2:-2}
mkdir -p "$out"
export LD_LIBRARY_PATH=$PWD/.devbundle/lib:/usr/local/cuda/lib64
export NCCL_NVLS_ENABLE=0  # NVLink multicast stays off on these machines
nvidia-smi --query-gpu=index,name,driver_version --format=csv,noheader | tee "$out/gpu.txt"
nvidia-smi topo -m > "$out/topology.txt" 2>&1
.devbundle/kernels_gpu_test --gtest_filter='CudaTensorParallelTest.*' > "$out/tp_test.log" 2>&1
echo "tensor-parallel test exit $?"
grep -E "^\[  (PASSED|FAILED|SKIPPED)|Failure" "$out/tp_test.log"
.devbundle/tp_bench --gpus "$gpus" --out "$out/tensor_parallel.json" 2>&1 | tee "$out/tp_bench.log"
