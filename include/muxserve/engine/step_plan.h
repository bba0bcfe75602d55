// One job's step, planned on the host before it runs: which sequences, their new tokens and
// positions, their block tables, and which rows produce logits. The vectors keep their capacity
// between steps, so planning allocates nothing once warm.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/paged_kv.h"

namespace muxserve::engine {

struct StepPlan {
  std::vector<int32_t> tokens;        // [num_tokens]
  std::vector<int32_t> positions;     // [num_tokens]
  std::vector<kernels::StepSequence> seqs;
  std::vector<int32_t> block_tables;  // per sequence [token_blocks][layers][kv_heads], concatenated
  std::vector<int32_t> logit_rows;    // [num_logit_rows] token rows whose logits are sampled

  int64_t num_tokens() const { return static_cast<int64_t>(tokens.size()); }
  int64_t num_seqs() const { return static_cast<int64_t>(seqs.size()); }
  void Clear() {
    tokens.clear();
    positions.clear();
    seqs.clear();
    block_tables.clear();
    logit_rows.clear();
  }
};

}  // namespace muxserve::engine
