// out = a @ w^T (+ bias) for a few rows of a: the decode GEMM, bound by reading w once. Each
// warp streams a row of w with 16-byte loads, several in flight, and dots it with every row of
// a (read through L1). cuBLAS picks tensor-core tiles for M = 1 that leave bandwidth unused.
#pragma once

#include <cstdint>

#include "kernels/cuda_common.cuh"

namespace muxserve::kernels {

inline constexpr int64_t kGemvMaxRows = 8;

// Whether GemvCuda takes this shape: 1..kGemvMaxRows rows, k a multiple of 8.
bool GemvSupports(int64_t m, int64_t k);

// T: bf16 or fp16; float32 accumulation.
template <typename T>
cudaError_t GemvCuda(const T* a,     // [m, k]
                     const T* w,     // [n, k]
                     const T* bias,  // [n] or null
                     int64_t m, int64_t n, int64_t k,
                     T* out,  // [m, n]
                     cudaStream_t stream);

}  // namespace muxserve::kernels
