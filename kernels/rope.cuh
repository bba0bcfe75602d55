// Rotary position embedding on the GPU, in place on the fused qkv rows (bf16 or fp16).
#pragma once

#include <cstdint>

#include "kernels/cuda_common.cuh"

namespace muxserve::kernels {

// Rotates q and k of every row (rotate_half / NeoX layout, as HF Llama). `inv_freq` already
// includes any rope scaling; angles and the rotation are computed in float32. T: bf16 or fp16.
template <typename T>
cudaError_t RopeCuda(T* qkv,                    // [n, row_stride]; q at column 0, k at k_offset
                     const int32_t* positions,  // [n]
                     const float* inv_freq,     // [head_dim / 2]
                     int64_t n, int64_t row_stride, int64_t num_q_heads, int64_t num_kv_heads,
                     int64_t k_offset, int64_t head_dim, cudaStream_t stream);

}  // namespace muxserve::kernels
