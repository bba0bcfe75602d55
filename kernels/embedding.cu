#include "kernels/embedding.cuh"

namespace muxserve::kernels {
namespace {

// One block per token row.
template <int kVec>
__global__ void EmbeddingKernel(const int32_t* tokens, const bf16* table, int64_t hidden,
                                bf16* out) {
  BeginKernel();
  const int64_t row = blockIdx.x;
  const bf16* src = table + static_cast<int64_t>(tokens[row]) * hidden;
  bf16* dst = out + row * hidden;
  if constexpr (kVec == 8) {
    for (int64_t i = threadIdx.x * 8; i < hidden; i += blockDim.x * 8)
      Store8(dst + i, Load8(src + i));
  } else {
    for (int64_t i = threadIdx.x; i < hidden; i += blockDim.x) dst[i] = src[i];
  }
}

}  // namespace

cudaError_t EmbeddingCuda(const int32_t* tokens, const bf16* table, int64_t n, int64_t hidden,
                          bf16* out, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  return LaunchKernel(hidden % 8 == 0 ? EmbeddingKernel<8> : EmbeddingKernel<1>, n, 128, 0, stream,
                      tokens, table, hidden, out);
}

}  // namespace muxserve::kernels
