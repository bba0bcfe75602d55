// Fills device memory with seeded pseudo-random bf16 or fp16 values, for synthetic weights made
// directly on the GPU (benchmarks of large shapes) and for benchmark inputs.
#pragma once

#include <cstdint>

#include "kernels/cuda_common.cuh"

namespace muxserve::kernels {

// out[i] = mean + std * u_i, u_i uniform with unit variance (in [-sqrt(3), sqrt(3)]), drawn
// from a counter-based hash of (seed, i): the same seed gives the same values on any launch
// (rounded to T: bf16 or fp16).
template <typename T>
cudaError_t FillRandomCuda(T* out,  // [count]
                           int64_t count, uint64_t seed, float mean, float std,
                           cudaStream_t stream);

// A slice of such a tensor: out[r * cols + c] is the value FillRandomCuda gives element
// first_index + r * index_pitch + c, so a rank's shard of a synthetic weight matches the whole.
template <typename T>
cudaError_t FillRandomSliceCuda(T* out,  // [rows, cols]
                                int64_t rows, int64_t cols, uint64_t seed, float mean, float std,
                                int64_t first_index, int64_t index_pitch, cudaStream_t stream);

}  // namespace muxserve::kernels
