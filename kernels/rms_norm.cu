#include "kernels/rms_norm.cuh"

namespace muxserve::kernels {
namespace {

constexpr int kThreads = 256;

// One block per row. The first pass adds the delta (when given), stores the residual and sums
// squares; the second reads the row back (from L1/L2) and scales it.
template <typename T, int kVec>
__global__ void __launch_bounds__(kThreads)
    RmsNormKernel(T* x, const T* delta, const T* weight, int64_t hidden, float eps, T* out) {
  __shared__ float scratch[kThreads / 32];
  BeginKernel();
  const int64_t offset = static_cast<int64_t>(blockIdx.x) * hidden;
  T* row = x + offset;
  float sum_squares = 0.0f;
  if constexpr (kVec == 8) {
    for (int64_t i = threadIdx.x * 8; i < hidden; i += kThreads * 8) {
      float v[8];
      ToFloat8(Load8(row + i), v);
      if (delta != nullptr) {
        float d[8];
        ToFloat8(Load8(delta + offset + i), d);
        for (int j = 0; j < 8; ++j) v[j] += d[j];
        const Vec8<T> rounded = FromFloat8<T>(v);
        Store8(row + i, rounded);
        ToFloat8(rounded, v);
      }
      for (int j = 0; j < 8; ++j) sum_squares += v[j] * v[j];
    }
  } else {
    for (int64_t i = threadIdx.x; i < hidden; i += kThreads) {
      float v = ToFloat(row[i]);
      if (delta != nullptr) {
        const T rounded = FromFloat<T>(v + ToFloat(delta[offset + i]));
        row[i] = rounded;
        v = ToFloat(rounded);
      }
      sum_squares += v * v;
    }
  }
  const float inv_rms = rsqrtf(BlockSum(sum_squares, scratch) / static_cast<float>(hidden) + eps);
  T* dst = out + offset;
  if constexpr (kVec == 8) {
    for (int64_t i = threadIdx.x * 8; i < hidden; i += kThreads * 8) {
      float v[8], w[8];
      ToFloat8(Load8(row + i), v);
      ToFloat8(Load8(weight + i), w);
      for (int j = 0; j < 8; ++j) v[j] = v[j] * inv_rms * w[j];
      Store8(dst + i, FromFloat8<T>(v));
    }
  } else {
    for (int64_t i = threadIdx.x; i < hidden; i += kThreads) {
      dst[i] = FromFloat<T>(ToFloat(row[i]) * inv_rms * ToFloat(weight[i]));
    }
  }
}

template <typename T>
cudaError_t Launch(T* x, const T* delta, const T* weight, int64_t n, int64_t hidden, float eps,
                   T* out, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  return LaunchKernel(hidden % 8 == 0 ? RmsNormKernel<T, 8> : RmsNormKernel<T, 1>, n, kThreads, 0,
                      stream, x, delta, weight, hidden, eps, out);
}

}  // namespace

template <typename T>
cudaError_t RmsNormCuda(const T* x, const T* weight, int64_t n, int64_t hidden, float eps, T* out,
                        cudaStream_t stream) {
  // Without a delta the kernel never writes x.
  return Launch<T>(const_cast<T*>(x), nullptr, weight, n, hidden, eps, out, stream);
}

template <typename T>
cudaError_t AddRmsNormCuda(T* residual, const T* delta, const T* weight, int64_t n, int64_t hidden,
                           float eps, T* out, cudaStream_t stream) {
  return Launch(residual, delta, weight, n, hidden, eps, out, stream);
}

template cudaError_t RmsNormCuda(const bf16*, const bf16*, int64_t, int64_t, float, bf16*,
                                 cudaStream_t);
template cudaError_t RmsNormCuda(const fp16*, const fp16*, int64_t, int64_t, float, fp16*,
                                 cudaStream_t);
template cudaError_t AddRmsNormCuda(bf16*, const bf16*, const bf16*, int64_t, int64_t, float, bf16*,
                                    cudaStream_t);
template cudaError_t AddRmsNormCuda(fp16*, const fp16*, const fp16*, int64_t, int64_t, float, fp16*,
                                    cudaStream_t);

}  // namespace muxserve::kernels
