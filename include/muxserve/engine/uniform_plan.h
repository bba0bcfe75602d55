// Step plans of identical sequences over contiguous head blocks: for benchmarks and the profiler,
// which time steps of given shapes without a scheduler or a block pool.
#pragma once

#include <cstdint>
#include <random>

#include "muxserve/engine/step_plan.h"
#include "muxserve/model/model_spec.h"

namespace muxserve::engine {

// A step of `num_seqs` sequences that each add `new_tokens` random tokens after `cached` ones,
// over head blocks numbered contiguously from `first_block`, with logits of each sequence's last
// row. With `pool_blocks` > 0 the ids wrap around within [first_block, first_block +
// pool_blocks), so a step larger than its pool reuses blocks (its timing is kept, not its KV).
StepPlan UniformStepPlan(const model::ModelSpec& spec, int64_t tokens_per_block, int num_seqs,
                         int new_tokens, int cached, std::mt19937& rng, int64_t first_block = 0,
                         int64_t pool_blocks = 0);

// Head blocks of UniformStepPlan's plan without wrapping: `num_seqs` contexts of `context`.
int64_t UniformPlanBlocks(const model::ModelSpec& spec, int64_t tokens_per_block, int num_seqs,
                          int context);

}  // namespace muxserve::engine
