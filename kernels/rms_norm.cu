#include "kernels/rms_norm.cuh"

namespace muxserve::kernels {
namespace {

constexpr int kThreads = 256;

// One block per row. The first pass adds the delta (when given), stores the residual and sums
// squares; the second reads the row back (from L1/L2) and scales it.
template <int kVec>
__global__ void __launch_bounds__(kThreads)
    RmsNormKernel(bf16* x, const bf16* delta, const bf16* weight, int64_t hidden, float eps,
                  bf16* out) {
  __shared__ float scratch[kThreads / 32];
  BeginKernel();
  const int64_t offset = static_cast<int64_t>(blockIdx.x) * hidden;
  bf16* row = x + offset;
  float sum_squares = 0.0f;
  if constexpr (kVec == 8) {
    for (int64_t i = threadIdx.x * 8; i < hidden; i += kThreads * 8) {
      float v[8];
      ToFloat8(Load8(row + i), v);
      if (delta != nullptr) {
        float d[8];
        ToFloat8(Load8(delta + offset + i), d);
        for (int j = 0; j < 8; ++j) v[j] += d[j];
        const Bf16x8 rounded = FromFloat8(v);
        Store8(row + i, rounded);
        ToFloat8(rounded, v);
      }
      for (int j = 0; j < 8; ++j) sum_squares += v[j] * v[j];
    }
  } else {
    for (int64_t i = threadIdx.x; i < hidden; i += kThreads) {
      float v = __bfloat162float(row[i]);
      if (delta != nullptr) {
        const bf16 rounded = __float2bfloat16(v + __bfloat162float(delta[offset + i]));
        row[i] = rounded;
        v = __bfloat162float(rounded);
      }
      sum_squares += v * v;
    }
  }
  const float inv_rms = rsqrtf(BlockSum(sum_squares, scratch) / static_cast<float>(hidden) + eps);
  bf16* dst = out + offset;
  if constexpr (kVec == 8) {
    for (int64_t i = threadIdx.x * 8; i < hidden; i += kThreads * 8) {
      float v[8], w[8];
      ToFloat8(Load8(row + i), v);
      ToFloat8(Load8(weight + i), w);
      for (int j = 0; j < 8; ++j) v[j] = v[j] * inv_rms * w[j];
      Store8(dst + i, FromFloat8(v));
    }
  } else {
    for (int64_t i = threadIdx.x; i < hidden; i += kThreads) {
      dst[i] = __float2bfloat16(__bfloat162float(row[i]) * inv_rms * __bfloat162float(weight[i]));
    }
  }
}

cudaError_t Launch(bf16* x, const bf16* delta, const bf16* weight, int64_t n, int64_t hidden,
                   float eps, bf16* out, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  return LaunchKernel(hidden % 8 == 0 ? RmsNormKernel<8> : RmsNormKernel<1>, n, kThreads, 0, stream,
                      x, delta, weight, hidden, eps, out);
}

}  // namespace

cudaError_t RmsNormCuda(const bf16* x, const bf16* weight, int64_t n, int64_t hidden, float eps,
                        bf16* out, cudaStream_t stream) {
  // Without a delta the kernel never writes x.
  return Launch(const_cast<bf16*>(x), nullptr, weight, n, hidden, eps, out, stream);
}

cudaError_t AddRmsNormCuda(bf16* residual, const bf16* delta, const bf16* weight, int64_t n,
                           int64_t hidden, float eps, bf16* out, cudaStream_t stream) {
  return Launch(residual, delta, weight, n, hidden, eps, out, stream);
}

}  // namespace muxserve::kernels
