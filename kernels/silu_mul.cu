#include "kernels/silu_mul.cuh"

namespace muxserve::kernels {
namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ float SiluTimes(float gate, float up) {
  return gate / (1.0f + __expf(-gate)) * up;
}

// Grid-stride over groups of kVec output elements.
template <int kVec>
__global__ void __launch_bounds__(kThreads)
    SiluMulKernel(const bf16* gate_up, int64_t n, int64_t inter, bf16* out) {
  BeginKernel();
  const int64_t groups_per_row = inter / kVec;
  const int64_t total = n * groups_per_row;
  for (int64_t g = blockIdx.x * static_cast<int64_t>(kThreads) + threadIdx.x; g < total;
       g += static_cast<int64_t>(gridDim.x) * kThreads) {
    const int64_t row = g / groups_per_row;
    const int64_t column = (g % groups_per_row) * kVec;
    const bf16* gate = gate_up + row * 2 * inter + column;
    bf16* dst = out + row * inter + column;
    if constexpr (kVec == 8) {
      float gv[8], uv[8];
      ToFloat8(Load8(gate), gv);
      ToFloat8(Load8(gate + inter), uv);
      for (int j = 0; j < 8; ++j) gv[j] = SiluTimes(gv[j], uv[j]);
      Store8(dst, FromFloat8(gv));
    } else {
      *dst = __float2bfloat16(SiluTimes(__bfloat162float(*gate), __bfloat162float(gate[inter])));
    }
  }
}

}  // namespace

cudaError_t SiluMulCuda(const bf16* gate_up, int64_t n, int64_t inter, bf16* out,
                        cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  if (inter % 8 == 0) {
    return LaunchKernel(SiluMulKernel<8>, BlocksFor(n * inter / 8, kThreads), kThreads, 0, stream,
                        gate_up, n, inter, out);
  }
  return LaunchKernel(SiluMulKernel<1>, BlocksFor(n * inter, kThreads), kThreads, 0, stream,
                      gate_up, n, inter, out);
}

}  // namespace muxserve::kernels
