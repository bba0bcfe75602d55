#include "kernels/gemv.cuh"

namespace muxserve::kernels {
namespace {

// Small blocks of one w row per warp: the small projections (4096 rows) still make ~8 blocks
// per SM, so SMs finish together.
constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr int kRowsPerWarp = 1;
constexpr int kUnroll = 8;  // 16-byte chunks of each w row a lane loads before using them

template <typename T, int kM>
__global__ void __launch_bounds__(kThreads)
    GemvKernel(const T* a, const T* w, const T* bias, int64_t n, int64_t k, T* out) {
  BeginKernel();
  const int lane = threadIdx.x & 31;
  const int64_t first_row =
      (static_cast<int64_t>(blockIdx.x) * kWarps + (threadIdx.x >> 5)) * kRowsPerWarp;
  if (first_row >= n) return;  // whole warps leave together
  const int64_t chunks = k / 8;
  const T* w_rows[kRowsPerWarp];
  bool row_valid[kRowsPerWarp];
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) {
    row_valid[r] = first_row + r < n;
    w_rows[r] = w + (row_valid[r] ? first_row + r : first_row) * k;
  }
  float acc[kRowsPerWarp][kM] = {};
  for (int64_t base = lane; base < chunks; base += 32 * kUnroll) {
    Vec8<T> w_raw[kUnroll][kRowsPerWarp];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t chunk = base + u * 32;
#pragma unroll
      for (int r = 0; r < kRowsPerWarp; ++r) {
        // Streamed once: keep it out of L1, which holds a.
        w_raw[u][r].raw = chunk < chunks
                              ? __ldcs(reinterpret_cast<const uint4*>(w_rows[r] + chunk * 8))
                              : make_uint4(0, 0, 0, 0);
      }
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t chunk = base + u * 32;
      if (chunk >= chunks) break;
      float wf[kRowsPerWarp][8];
#pragma unroll
      for (int r = 0; r < kRowsPerWarp; ++r) ToFloat8(w_raw[u][r], wf[r]);
#pragma unroll
      for (int m = 0; m < kM; ++m) {
        float af[8];
        ToFloat8(Load8(a + m * k + chunk * 8), af);
#pragma unroll
        for (int r = 0; r < kRowsPerWarp; ++r) {
#pragma unroll
          for (int j = 0; j < 8; ++j) acc[r][m] += wf[r][j] * af[j];
        }
      }
    }
  }
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) {
#pragma unroll
    for (int m = 0; m < kM; ++m) acc[r][m] = WarpSum(acc[r][m]);
  }
  if (lane == 0) {
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) {
      if (!row_valid[r]) continue;
      const float b = bias != nullptr ? ToFloat(bias[first_row + r]) : 0.0f;
#pragma unroll
      for (int m = 0; m < kM; ++m) out[m * n + first_row + r] = FromFloat<T>(acc[r][m] + b);
    }
  }
}

template <typename T, int kM>
cudaError_t Launch(const T* a, const T* w, const T* bias, int64_t n, int64_t k, T* out,
                   cudaStream_t stream) {
  const int64_t rows_per_block = kWarps * kRowsPerWarp;
  const auto blocks = static_cast<unsigned int>((n + rows_per_block - 1) / rows_per_block);
  return LaunchKernel(GemvKernel<T, kM>, blocks, kThreads, 0, stream, a, w, bias, n, k, out);
}

}  // namespace

bool GemvSupports(int64_t m, int64_t k) { return m >= 1 && m <= kGemvMaxRows && k % 8 == 0; }

template <typename T>
cudaError_t GemvCuda(const T* a, const T* w, const T* bias, int64_t m, int64_t n, int64_t k, T* out,
                     cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  if (!GemvSupports(m, k)) return cudaErrorInvalidValue;
  switch (m) {
    case 1:
      return Launch<T, 1>(a, w, bias, n, k, out, stream);
    case 2:
      return Launch<T, 2>(a, w, bias, n, k, out, stream);
    case 3:
      return Launch<T, 3>(a, w, bias, n, k, out, stream);
    case 4:
      return Launch<T, 4>(a, w, bias, n, k, out, stream);
    case 5:
      return Launch<T, 5>(a, w, bias, n, k, out, stream);
    case 6:
      return Launch<T, 6>(a, w, bias, n, k, out, stream);
    case 7:
      return Launch<T, 7>(a, w, bias, n, k, out, stream);
    default:
      return Launch<T, 8>(a, w, bias, n, k, out, stream);
  }
}

template cudaError_t GemvCuda(const bf16*, const bf16*, const bf16*, int64_t, int64_t, int64_t,
                              bf16*, cudaStream_t);
template cudaError_t GemvCuda(const fp16*, const fp16*, const fp16*, int64_t, int64_t, int64_t,
                              fp16*, cudaStream_t);

}  // namespace muxserve::kernels
