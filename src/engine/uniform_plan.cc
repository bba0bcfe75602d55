#include "muxserve/engine/uniform_plan.h"

namespace muxserve::engine {

StepPlan UniformStepPlan(const model::ModelSpec& spec, int64_t tokens_per_block, int num_seqs,
                         int new_tokens, int cached, std::mt19937& rng, int64_t first_block,
                         int64_t pool_blocks) {
  StepPlan plan;
  std::uniform_int_distribution<int32_t> token(0, static_cast<int32_t>(spec.vocab_size) - 1);
  const int context = cached + new_tokens;
  const int64_t seq_blocks = UniformPlanBlocks(spec, tokens_per_block, 1, context);
  for (int s = 0; s < num_seqs; ++s) {
    plan.seqs.push_back({.q_start = static_cast<int32_t>(plan.tokens.size()),
                         .q_len = new_tokens,
                         .context_len = context,
                         .table_offset = static_cast<int32_t>(plan.block_tables.size())});
    for (int i = 0; i < new_tokens; ++i) {
      plan.tokens.push_back(token(rng));
      plan.positions.push_back(cached + i);
    }
    for (int64_t b = 0; b < seq_blocks; ++b) {
      const int64_t index = s * seq_blocks + b;
      plan.block_tables.push_back(
          static_cast<int32_t>(first_block + (pool_blocks > 0 ? index % pool_blocks : index)));
    }
    plan.logit_rows.push_back(static_cast<int32_t>(plan.tokens.size()) - 1);
  }
  return plan;
}

int64_t UniformPlanBlocks(const model::ModelSpec& spec, int64_t tokens_per_block, int num_seqs,
                          int context) {
  return num_seqs * ((context + tokens_per_block - 1) / tokens_per_block) * spec.num_layers *
         spec.num_kv_heads;
}

}  // namespace muxserve::engine
