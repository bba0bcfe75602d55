#include "kernels/bias_add.cuh"

namespace muxserve::kernels {
namespace {

constexpr int kThreads = 256;

__global__ void __launch_bounds__(kThreads)
    BiasAddKernel(bf16* out, const bf16* bias, int64_t m, int64_t n) {
  BeginKernel();
  const int64_t total = m * n;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(kThreads) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * kThreads) {
    out[i] = __float2bfloat16(__bfloat162float(out[i]) + __bfloat162float(bias[i % n]));
  }
}

}  // namespace

cudaError_t BiasAddCuda(bf16* out, const bf16* bias, int64_t m, int64_t n, cudaStream_t stream) {
  if (m == 0 || n == 0) return cudaSuccess;
  return LaunchKernel(BiasAddKernel, BlocksFor(m * n, kThreads), kThreads, 0, stream, out, bias, m,
                      n);
}

}  // namespace muxserve::kernels
