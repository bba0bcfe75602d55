#include "kernels/gather_rows.cuh"

namespace muxserve::kernels {
namespace {

template <int kVec>
__global__ void GatherRowsKernel(const bf16* x, const int32_t* rows, int64_t width, bf16* out) {
  BeginKernel();
  const bf16* src = x + static_cast<int64_t>(rows[blockIdx.x]) * width;
  bf16* dst = out + static_cast<int64_t>(blockIdx.x) * width;
  if constexpr (kVec == 8) {
    for (int64_t i = threadIdx.x * 8; i < width; i += blockDim.x * 8)
      Store8(dst + i, Load8(src + i));
  } else {
    for (int64_t i = threadIdx.x; i < width; i += blockDim.x) dst[i] = src[i];
  }
}

}  // namespace

cudaError_t GatherRowsCuda(const bf16* x, const int32_t* rows, int64_t num_rows, int64_t width,
                           bf16* out, cudaStream_t stream) {
  if (num_rows == 0) return cudaSuccess;
  return LaunchKernel(width % 8 == 0 ? GatherRowsKernel<8> : GatherRowsKernel<1>, num_rows, 128, 0,
                      stream, x, rows, width, out);
}

}  // namespace muxserve::kernels
