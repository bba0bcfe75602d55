// The head-wise KV-cache pool of one device, shared by every LLM placed on it.
//
// Memory is one buffer of `num_blocks` head blocks of `block_bytes` each. A head block holds K
// then V of `tokens_per_block` consecutive tokens of ONE (layer, KV head) of one sequence:
//   block b at byte offset b * block_bytes:  K [tokens_per_block, head_dim], V [same]
// of the LLM's dtype. Block bytes are fixed for the pool, so LLMs of different head sizes (64,
// 128, 256) share it: tokens_per_block = block_bytes / (2 * head_dim * element bytes). Only the
// element size matters to the pool: LLMs of dtypes of one size (bf16 and fp16) share it too.
//
// Each LLM has a base quota (its share by weight) and a current quota. Admission of new
// sequences respects the current quota; running sequences may borrow free blocks beyond it.
// AdaptQuotas moves what under-used LLMs leave idle to the ones that want more, and gives a
// lender its base back as soon as it wants it (the borrowed blocks come back as borrowers'
// sequences finish: a reclaim never drops a running sequence).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace muxserve::kvcache {

struct KvShape {
  int64_t num_layers = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  // Head blocks one token block of a sequence needs: one per (layer, KV head).
  int64_t blocks_per_token_block() const { return num_layers * num_kv_heads; }
};

class HeadBlockPool {
 public:
  HeadBlockPool(int64_t num_blocks, int64_t block_bytes, int64_t element_bytes);

  int64_t num_blocks() const { return num_blocks_; }
  int64_t block_bytes() const { return block_bytes_; }
  int64_t free_blocks() const { return static_cast<int64_t>(free_list_.size()); }
  int64_t TokensPerBlock(int64_t head_dim) const;

  // Registers an LLM; returns its id. `weight` sets its share when quotas are rebalanced.
  int RegisterLlm(const std::string& name, const KvShape& shape, double weight);
  // Base quotas proportional to the weights given at registration (rate x KV bytes per
  // token); current quotas are reset to them.
  void RebalanceQuotas();
  // `demand[i]`: head blocks LLM i wants now (what it holds, room for its running sequences to
  // grow, and what its waiting ones need). An LLM wanting less than its base keeps what it
  // wants and lends the rest; those wanting more than their base share the lent blocks in
  // proportion to what they lack.
  void AdaptQuotas(std::span<const int64_t> demand);

  const KvShape& shape(int llm) const { return llms_[llm].shape; }
  int64_t used(int llm) const { return llms_[llm].used; }
  int64_t quota(int llm) const { return llms_[llm].quota; }
  int64_t base_quota(int llm) const { return llms_[llm].base_quota; }
  void set_quota(int llm, int64_t blocks) { llms_[llm].quota = llms_[llm].base_quota = blocks; }
  int num_llms() const { return static_cast<int>(llms_.size()); }

  // Appends `count` block ids to `out`; RESOURCE_EXHAUSTED (nothing taken) when the pool has
  // fewer free blocks.
  [[nodiscard]] absl::Status Allocate(int llm, int64_t count, std::vector<int32_t>* out);
  void Free(int llm, std::span<const int32_t> ids);

 private:
  struct LlmEntry {
    std::string name;
    KvShape shape;
    double weight = 1.0;
    int64_t base_quota = 0;
    int64_t quota = 0;
    int64_t used = 0;
  };
  int64_t num_blocks_;
  int64_t block_bytes_;
  int64_t element_bytes_;
  std::vector<int32_t> free_list_;
  std::vector<LlmEntry> llms_;
};

// One sequence's head blocks: for each token block, the ids of its L x H head blocks,
// laid out [token_block][layer][kv_head] (the layout StepPlan hands to the attention ops).
class BlockTable {
 public:
  BlockTable() = default;
  explicit BlockTable(const KvShape& shape) : per_token_block_(shape.blocks_per_token_block()) {}

  int64_t num_token_blocks() const {
    return per_token_block_ == 0 ? 0 : static_cast<int64_t>(ids_.size()) / per_token_block_;
  }
  const std::vector<int32_t>& ids() const { return ids_; }
  std::vector<int32_t>* mutable_ids() { return &ids_; }
  int64_t per_token_block() const { return per_token_block_; }

 private:
  int64_t per_token_block_ = 0;
  std::vector<int32_t> ids_;
};

}  // namespace muxserve::kvcache
