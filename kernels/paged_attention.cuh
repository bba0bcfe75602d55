// Causal attention over the head-wise KV pool for any step (decode rows and prefill chunks),
// one thread block per (token row, query head, context split). Built for decode: each row reads
// its context once, 16-byte loads, several keys in flight per lane. Prefill chunks are better
// served by the tiled kernel in prefill_attention.cuh, which shares K/V tiles between rows.
#pragma once

#include <cstdint>

#include "kernels/cuda_common.cuh"

namespace muxserve::kernels {

// T: bf16 or fp16, for the activations and the pool alike; scores and sums in float32.
template <typename T>
struct PagedAttentionParams {
  const T* qkv = nullptr;  // [num_tokens, row_stride]; q of head h at column h * head_dim
  int64_t row_stride = 0;
  const int32_t* token_seq = nullptr;     // [num_tokens] sequence index of each row
  const StepSequence* seqs = nullptr;     // [num_seqs]
  const int32_t* block_tables = nullptr;  // concatenated per-sequence tables
  int64_t num_tokens = 0;
  int64_t num_q_heads = 0;  // a multiple of kv.num_kv_heads (GQA)
  int64_t layer = 0;
  float scale = 1.0f;
  PagedKv kv;
  // Context splits: split s of a row covers keys [s * split_keys, (s + 1) * split_keys), the
  // last one every key from its start on. With more than one split, partial results go to
  // `partial` and a second kernel combines them.
  int num_splits = 1;
  int split_keys = 0;
  float* partial = nullptr;  // [num_tokens, num_q_heads, num_splits, head_dim + 2]
  T* out = nullptr;          // [num_tokens, num_q_heads * head_dim]
};

// Head sizes the kernel is built for (the closed set of DISPATCH_HEAD_DIM).
bool PagedAttentionSupportsHeadDim(int64_t head_dim);

// Floats of `partial` the launch needs.
int64_t PagedAttentionPartialFloats(int64_t num_tokens, int64_t num_q_heads, int num_splits,
                                    int64_t head_dim);

template <typename T>
cudaError_t PagedAttentionCuda(const PagedAttentionParams<T>& params, cudaStream_t stream);

}  // namespace muxserve::kernels
