// Writes the K and V of a step's new tokens into their head blocks (pool elements of T: bf16 or
// fp16, as the activations).
#pragma once

#include <cstdint>

#include "kernels/cuda_common.cuh"

namespace muxserve::kernels {

// Row r of qkv belongs to sequence token_seq[r] and lands at its position
// context_len - q_len + (r - q_start). kv.head_dim must be a multiple of 8.
template <typename T>
cudaError_t KvAppendCuda(const T* qkv,              // [n, row_stride]; k at k_offset, v at v_offset
                         const int32_t* token_seq,  // [n] sequence index of each row
                         const StepSequence* seqs,  // [num_seqs]
                         const int32_t* block_tables,  // concatenated per-sequence tables
                         int64_t n, int64_t row_stride, int64_t k_offset, int64_t v_offset,
                         int64_t layer, const PagedKv& kv, cudaStream_t stream);

}  // namespace muxserve::kernels
