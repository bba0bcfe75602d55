#include "kernels/bias_add.cuh"

namespace muxserve::kernels {
namespace {

constexpr int kThreads = 256;

template <typename T>
__global__ void __launch_bounds__(kThreads)
    BiasAddKernel(T* out, const T* bias, int64_t m, int64_t n) {
  BeginKernel();
  const int64_t total = m * n;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(kThreads) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * kThreads) {
    out[i] = FromFloat<T>(ToFloat(out[i]) + ToFloat(bias[i % n]));
  }
}

}  // namespace

template <typename T>
cudaError_t BiasAddCuda(T* out, const T* bias, int64_t m, int64_t n, cudaStream_t stream) {
  if (m == 0 || n == 0) return cudaSuccess;
  return LaunchKernel(BiasAddKernel<T>, BlocksFor(m * n, kThreads), kThreads, 0, stream, out, bias,
                      m, n);
}

template cudaError_t BiasAddCuda(bf16*, const bf16*, int64_t, int64_t, cudaStream_t);
template cudaError_t BiasAddCuda(fp16*, const fp16*, int64_t, int64_t, cudaStream_t);

}  // namespace muxserve::kernels
