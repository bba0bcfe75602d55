#include "muxserve/kvcache/head_block_pool.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"

namespace muxserve::kvcache {

HeadBlockPool::HeadBlockPool(int64_t num_blocks, int64_t block_bytes, int64_t element_bytes)
    : num_blocks_(num_blocks), block_bytes_(block_bytes), element_bytes_(element_bytes) {
  free_list_.reserve(num_blocks);
  // Pop from the back hands out low ids first, which keeps early allocations compact.
  for (int64_t i = num_blocks - 1; i >= 0; --i) free_list_.push_back(static_cast<int32_t>(i));
}

int64_t HeadBlockPool::TokensPerBlock(int64_t head_dim) const {
  return block_bytes_ / (2 * head_dim * element_bytes_);
}

int HeadBlockPool::RegisterLlm(const std::string& name, const KvShape& shape, double weight) {
  llms_.push_back(LlmEntry{.name = name, .shape = shape, .weight = weight});
  return static_cast<int>(llms_.size()) - 1;
}

void HeadBlockPool::RebalanceQuotas() {
  double total_weight = 0;
  for (const LlmEntry& llm : llms_) total_weight += llm.weight;
  for (LlmEntry& llm : llms_) {
    llm.base_quota =
        total_weight > 0
            ? static_cast<int64_t>(std::floor(num_blocks_ * llm.weight / total_weight))
            : 0;
    llm.quota = llm.base_quota;
  }
}

void HeadBlockPool::AdaptQuotas(std::span<const int64_t> demand) {
  int64_t lent = 0;
  int64_t lacking = 0;
  for (size_t i = 0; i < llms_.size() && i < demand.size(); ++i) {
    const int64_t wants = std::max(demand[i], llms_[i].used);
    if (wants < llms_[i].base_quota) {
      lent += llms_[i].base_quota - wants;
    } else {
      lacking += wants - llms_[i].base_quota;
    }
  }
  for (size_t i = 0; i < llms_.size() && i < demand.size(); ++i) {
    LlmEntry& llm = llms_[i];
    const int64_t wants = std::max(demand[i], llm.used);
    if (wants <= llm.base_quota) {
      llm.quota = wants;
    } else {
      const int64_t lacks = wants - llm.base_quota;
      const int64_t share = lacking <= lent ? lacks : lent * lacks / lacking;
      llm.quota = llm.base_quota + share;
    }
  }
}

absl::Status HeadBlockPool::Allocate(int llm, int64_t count, std::vector<int32_t>* out) {
  if (count > free_blocks()) {
    return absl::ResourceExhaustedError(absl::StrCat("KV pool has ", free_blocks(),
                                                     " free head blocks, ", count, " needed"));
  }
  for (int64_t i = 0; i < count; ++i) {
    out->push_back(free_list_.back());
    free_list_.pop_back();
  }
  llms_[llm].used += count;
  return absl::OkStatus();
}

void HeadBlockPool::Free(int llm, std::span<const int32_t> ids) {
  free_list_.insert(free_list_.end(), ids.rbegin(), ids.rend());
  llms_[llm].used -= static_cast<int64_t>(ids.size());
}

}  // namespace muxserve::kvcache
