#include "kernels/fill_random.cuh"

namespace muxserve::kernels {
namespace {

constexpr int kThreads = 256;

// SplitMix64 finalizer: a good 64-bit mix of a counter.
__device__ __forceinline__ uint64_t Mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    FillRandomKernel(T* out, int64_t rows, int64_t cols, uint64_t seed, float mean, float std,
                     int64_t first_index, int64_t index_pitch) {
  const uint64_t key = Mix(seed);
  const int64_t count = rows * cols;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(kThreads) + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * kThreads) {
    const int64_t index = first_index + (i / cols) * index_pitch + i % cols;
    const uint64_t bits = Mix(key ^ static_cast<uint64_t>(index));
    // 24 random bits -> uniform in [-1, 1) -> unit variance.
    const float uniform = static_cast<float>(bits >> 40) * (2.0f / 16777216.0f) - 1.0f;
    out[i] = FromFloat<T>(mean + std * 1.7320508f * uniform);
  }
}

}  // namespace

template <typename T>
cudaError_t FillRandomSliceCuda(T* out, int64_t rows, int64_t cols, uint64_t seed, float mean,
                                float std, int64_t first_index, int64_t index_pitch,
                                cudaStream_t stream) {
  const int64_t count = rows * cols;
  if (count == 0) return cudaSuccess;
  FillRandomKernel<T><<<BlocksFor(count, kThreads), kThreads, 0, stream>>>(
      out, rows, cols, seed, mean, std, first_index, index_pitch);
  return cudaGetLastError();
}

template <typename T>
cudaError_t FillRandomCuda(T* out, int64_t count, uint64_t seed, float mean, float std,
                           cudaStream_t stream) {
  return FillRandomSliceCuda(out, 1, count, seed, mean, std, 0, count, stream);
}

template cudaError_t FillRandomSliceCuda(bf16*, int64_t, int64_t, uint64_t, float, float, int64_t,
                                         int64_t, cudaStream_t);
template cudaError_t FillRandomSliceCuda(fp16*, int64_t, int64_t, uint64_t, float, float, int64_t,
                                         int64_t, cudaStream_t);
template cudaError_t FillRandomCuda(bf16*, int64_t, uint64_t, float, float, cudaStream_t);
template cudaError_t FillRandomCuda(fp16*, int64_t, uint64_t, float, float, cudaStream_t);

}  // namespace muxserve::kernels
