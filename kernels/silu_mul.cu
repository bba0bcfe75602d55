#include "kernels/silu_mul.cuh"

namespace muxserve::kernels {
namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ float SiluTimes(float gate, float up) {
  return gate / (1.0f + __expf(-gate)) * up;
}

// Grid-stride over groups of kVec output elements.
template <typename T, int kVec>
__global__ void __launch_bounds__(kThreads)
    SiluMulKernel(const T* gate_up, int64_t n, int64_t inter, T* out) {
  BeginKernel();
  const int64_t groups_per_row = inter / kVec;
  const int64_t total = n * groups_per_row;
  for (int64_t g = blockIdx.x * static_cast<int64_t>(kThreads) + threadIdx.x; g < total;
       g += static_cast<int64_t>(gridDim.x) * kThreads) {
    const int64_t row = g / groups_per_row;
    const int64_t column = (g % groups_per_row) * kVec;
    const T* gate = gate_up + row * 2 * inter + column;
    T* dst = out + row * inter + column;
    if constexpr (kVec == 8) {
      float gv[8], uv[8];
      ToFloat8(Load8(gate), gv);
      ToFloat8(Load8(gate + inter), uv);
      for (int j = 0; j < 8; ++j) gv[j] = SiluTimes(gv[j], uv[j]);
      Store8(dst, FromFloat8<T>(gv));
    } else {
      *dst = FromFloat<T>(SiluTimes(ToFloat(*gate), ToFloat(gate[inter])));
    }
  }
}

}  // namespace

template <typename T>
cudaError_t SiluMulCuda(const T* gate_up, int64_t n, int64_t inter, T* out, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  if (inter % 8 == 0) {
    return LaunchKernel(SiluMulKernel<T, 8>, BlocksFor(n * inter / 8, kThreads), kThreads, 0,
                        stream, gate_up, n, inter, out);
  }
  return LaunchKernel(SiluMulKernel<T, 1>, BlocksFor(n * inter, kThreads), kThreads, 0, stream,
                      gate_up, n, inter, out);
}

template cudaError_t SiluMulCuda(const bf16*, int64_t, int64_t, bf16*, cudaStream_t);
template cudaError_t SiluMulCuda(const fp16*, int64_t, int64_t, fp16*, cudaStream_t);

}  // namespace muxserve::kernels
