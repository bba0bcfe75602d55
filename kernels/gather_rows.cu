#include "kernels/gather_rows.cuh"

namespace muxserve::kernels {
namespace {

template <typename T, int kVec>
__global__ void GatherRowsKernel(const T* x, const int32_t* rows, int64_t width, T* out) {
  BeginKernel();
  const T* src = x + static_cast<int64_t>(rows[blockIdx.x]) * width;
  T* dst = out + static_cast<int64_t>(blockIdx.x) * width;
  if constexpr (kVec == 8) {
    for (int64_t i = threadIdx.x * 8; i < width; i += blockDim.x * 8)
      Store8(dst + i, Load8(src + i));
  } else {
    for (int64_t i = threadIdx.x; i < width; i += blockDim.x) dst[i] = src[i];
  }
}

}  // namespace

template <typename T>
cudaError_t GatherRowsCuda(const T* x, const int32_t* rows, int64_t num_rows, int64_t width, T* out,
                           cudaStream_t stream) {
  if (num_rows == 0) return cudaSuccess;
  return LaunchKernel(width % 8 == 0 ? GatherRowsKernel<T, 8> : GatherRowsKernel<T, 1>, num_rows,
                      128, 0, stream, x, rows, width, out);
}

template cudaError_t GatherRowsCuda(const bf16*, const int32_t*, int64_t, int64_t, bf16*,
                                    cudaStream_t);
template cudaError_t GatherRowsCuda(const fp16*, const int32_t*, int64_t, int64_t, fp16*,
                                    cudaStream_t);

}  // namespace muxserve::kernels
