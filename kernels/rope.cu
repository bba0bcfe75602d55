#include "kernels/rope.cuh"

namespace muxserve::kernels {
namespace {

constexpr int kThreads = 256;

// One block per token row: the row's cos/sin table goes to shared memory once, then every
// (head, pair) of q and k is rotated.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    RopeKernel(T* qkv, const int32_t* positions, const float* inv_freq, int64_t row_stride,
               int num_q_heads, int num_kv_heads, int64_t k_offset, int head_dim) {
  extern __shared__ float table[];  // cos [half], sin [half]
  BeginKernel();
  const int half = head_dim / 2;
  const float position = static_cast<float>(positions[blockIdx.x]);
  for (int i = threadIdx.x; i < half; i += kThreads) {
    float sin_value, cos_value;
    // Precise sincosf: angles reach thousands of radians at long contexts.
    sincosf(position * inv_freq[i], &sin_value, &cos_value);
    table[i] = cos_value;
    table[half + i] = sin_value;
  }
  __syncthreads();
  T* row = qkv + static_cast<int64_t>(blockIdx.x) * row_stride;
  const int pairs = (num_q_heads + num_kv_heads) * half;
  for (int p = threadIdx.x; p < pairs; p += kThreads) {
    const int head = p / half;
    const int i = p % half;
    T* x = head < num_q_heads ? row + head * head_dim
                              : row + k_offset + (head - num_q_heads) * head_dim;
    const float x0 = ToFloat(x[i]);
    const float x1 = ToFloat(x[i + half]);
    x[i] = FromFloat<T>(x0 * table[i] - x1 * table[half + i]);
    x[i + half] = FromFloat<T>(x1 * table[i] + x0 * table[half + i]);
  }
}

}  // namespace

template <typename T>
cudaError_t RopeCuda(T* qkv, const int32_t* positions, const float* inv_freq, int64_t n,
                     int64_t row_stride, int64_t num_q_heads, int64_t num_kv_heads,
                     int64_t k_offset, int64_t head_dim, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  const size_t shared = static_cast<size_t>(head_dim) * sizeof(float);
  return LaunchKernel(RopeKernel<T>, n, kThreads, shared, stream, qkv, positions, inv_freq,
                      row_stride, static_cast<int>(num_q_heads), static_cast<int>(num_kv_heads),
                      k_offset, static_cast<int>(head_dim));
}

template cudaError_t RopeCuda(bf16*, const int32_t*, const float*, int64_t, int64_t, int64_t,
                              int64_t, int64_t, int64_t, cudaStream_t);
template cudaError_t RopeCuda(fp16*, const int32_t*, const float*, int64_t, int64_t, int64_t,
                              int64_t, int64_t, int64_t, cudaStream_t);

}  // namespace muxserve::kernels
