#include "kernels/embedding.cuh"

namespace muxserve::kernels {
namespace {

// One block per token row.
template <typename T, int kVec>
__global__ void EmbeddingKernel(const int32_t* tokens, const T* table, int64_t hidden, T* out) {
  BeginKernel();
  const int64_t row = blockIdx.x;
  const T* src = table + static_cast<int64_t>(tokens[row]) * hidden;
  T* dst = out + row * hidden;
  if constexpr (kVec == 8) {
    for (int64_t i = threadIdx.x * 8; i < hidden; i += blockDim.x * 8)
      Store8(dst + i, Load8(src + i));
  } else {
    for (int64_t i = threadIdx.x; i < hidden; i += blockDim.x) dst[i] = src[i];
  }
}

}  // namespace

template <typename T>
cudaError_t EmbeddingCuda(const int32_t* tokens, const T* table, int64_t n, int64_t hidden, T* out,
                          cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  return LaunchKernel(hidden % 8 == 0 ? EmbeddingKernel<T, 8> : EmbeddingKernel<T, 1>, n, 128, 0,
                      stream, tokens, table, hidden, out);
}

template cudaError_t EmbeddingCuda(const int32_t*, const bf16*, int64_t, int64_t, bf16*,
                                   cudaStream_t);
template cudaError_t EmbeddingCuda(const int32_t*, const fp16*, int64_t, int64_t, fp16*,
                                   cudaStream_t);

}  // namespace muxserve::kernels
