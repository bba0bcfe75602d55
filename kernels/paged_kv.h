// How kernels see the head-wise KV pool and the sequences of one step.
//
// Pool: `num_blocks` head blocks of `block_bytes`, each K [tokens_per_block, head_dim] followed by
// V [tokens_per_block, head_dim] of one (layer, KV head). A sequence's block table is
// [num_token_blocks][num_layers][num_kv_heads] int32 head-block ids: token t of the sequence lives
// in token block t / tokens_per_block, at row t % tokens_per_block of the head block for
// (layer, kv_head).
#pragma once

#include <cstdint>

namespace muxserve::kernels {

struct PagedKv {
  void* pool = nullptr;  // [num_blocks, 2, tokens_per_block, head_dim] of the pool dtype
  int64_t block_bytes = 0;
  int64_t tokens_per_block = 0;
  int64_t head_dim = 0;
  int64_t num_layers = 0;
  int64_t num_kv_heads = 0;
};

// One sequence of a step: its new tokens are rows [q_start, q_start + q_len) of the step's
// activations, at positions [context_len - q_len, context_len).
struct StepSequence {
  int32_t q_start = 0;
  int32_t q_len = 0;
  int32_t context_len = 0;
  int32_t table_offset = 0;  // first int32 of this sequence's block table in the step's tables
};

// Float pointer to the K row (V when `value`) of `token` of a sequence for (layer, kv_head).
inline float* KvRow(const PagedKv& kv, const int32_t* table, int64_t layer, int64_t kv_head,
                    int64_t token, bool value) {
  const int64_t token_block = token / kv.tokens_per_block;
  const int32_t block =
      table[(token_block * kv.num_layers + layer) * kv.num_kv_heads + kv_head];
  auto* base = static_cast<char*>(kv.pool) + static_cast<int64_t>(block) * kv.block_bytes;
  auto* rows = reinterpret_cast<float*>(base);
  return rows + ((value ? kv.tokens_per_block : 0) + token % kv.tokens_per_block) * kv.head_dim;
}

}  // namespace muxserve::kernels
