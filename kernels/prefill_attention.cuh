// Causal attention for prefill chunks over the head-wise KV pool, tiled flash-style on the
// tensor cores (mma.sync bf16 or fp16, fp32 accumulation): a thread block takes 64 query rows of
// one sequence and one query head, streams the sequence's K/V in tiles of 64 keys through shared
// memory, and keeps an online softmax per row. Rows of any q_len; the chunk's keys are those
// already in the pool (KV append runs first). Decode rows are better served by
// paged_attention.cuh.
#pragma once

#include <cstdint>

#include "kernels/cuda_common.cuh"

namespace muxserve::kernels {

inline constexpr int kPrefillTileRows = 64;

// One tile of work: kPrefillTileRows query rows of a sequence.
struct PrefillTile {
  int32_t seq = 0;        // index into seqs
  int32_t first_row = 0;  // first new token of the tile, counted from the sequence's q_start
};

// T: bf16 or fp16, for the activations and the pool alike.
template <typename T>
struct PrefillAttentionParams {
  const T* qkv = nullptr;  // [num_tokens, row_stride]; q of head h at column h * head_dim
  int64_t row_stride = 0;
  const StepSequence* seqs = nullptr;
  const PrefillTile* tiles = nullptr;  // [num_tiles]
  int64_t num_tiles = 0;
  const int32_t* block_tables = nullptr;
  int64_t num_q_heads = 0;  // a multiple of kv.num_kv_heads (GQA)
  int64_t layer = 0;
  float scale = 1.0f;
  PagedKv kv;
  T* out = nullptr;  // [num_tokens, num_q_heads * head_dim]
};

bool PrefillAttentionSupportsHeadDim(int64_t head_dim);

template <typename T>
cudaError_t PrefillAttentionCuda(const PrefillAttentionParams<T>& params, cudaStream_t stream);

}  // namespace muxserve::kernels
