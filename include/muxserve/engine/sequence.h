// A request inside the engine: its tokens, its KV blocks, and its streaming state.
#pragma once

#include <cstdint>
#include <optional>
#include <random>
#include <vector>

#include "muxserve/common/clock.h"
#include "muxserve/engine/request.h"
#include "muxserve/engine/stop_matcher.h"
#include "muxserve/kvcache/head_block_pool.h"
#include "muxserve/model/tokenizer.h"

namespace muxserve::engine {

struct Sequence {
  Sequence(Request r, int llm_index, const kvcache::KvShape& shape,
           const model::Tokenizer* tokenizer)
      : request(std::move(r)),
        llm(llm_index),
        tokens(request.prompt_tokens),
        num_prompt(static_cast<int32_t>(tokens.size())),
        blocks(shape),
        decoder(tokenizer, /*skip_special=*/true),
        stop(request.sampling.stop) {
    rng.seed(request.sampling.seed.has_value() ? *request.sampling.seed : std::random_device{}());
  }

  int32_t num_generated() const { return static_cast<int32_t>(tokens.size()) - num_prompt; }
  // Tokens whose K/V are not yet in the cache (after a preemption, prompt and output both).
  int32_t num_uncomputed() const { return static_cast<int32_t>(tokens.size()) - num_computed; }

  Request request;
  int llm;
  std::vector<int32_t> tokens;  // prompt, then generated tokens
  int32_t num_prompt;
  int32_t num_computed = 0;
  kvcache::BlockTable blocks;
  std::mt19937_64 rng;
  model::StreamDecoder decoder;
  StopMatcher stop;
  bool in_flight = false;          // in a job that is running: the loop leaves it alone
  int32_t recompute_tokens = 0;    // computed before a preemption, to be computed again
  std::optional<SteadyTime> first_scheduled;  // when its first prefill began
  std::optional<SteadyTime> last_token_at;
  StreamDelta pending;  // what this step produced, sent once per step
};

}  // namespace muxserve::engine
