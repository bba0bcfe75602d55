// Helpers of the GPU tests: device detection, random data exact in a 16-bit dtype, relative
// errors, block tables of paged sequences for one backend's tokens per block, small model shapes
// and a sink that collects a request's tokens.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <random>
#include <span>
#include <vector>

#include <optional>

#include "absl/synchronization/mutex.h"
#include "gtest/gtest.h"
#include "kernels/paged_kv.h"
#include "muxserve/common/dtype.h"
#include "muxserve/engine/request.h"
#include "muxserve/engine/step_plan.h"
#include "muxserve/model/model_spec.h"
#include "muxserve/runtime/device.h"

namespace muxserve::testing {

inline bool HaveCudaDevice() {
  const auto devices = runtime::ListCudaDevices();
  return devices.ok() && !devices->empty();
}

// Normal values already rounded to `dtype`, so both backends start from the same numbers.
inline std::vector<float> RandomIn(DType dtype, size_t n, std::mt19937& rng, float scale = 1.0f) {
  std::normal_distribution<float> normal(0.0f, scale);
  std::vector<float> values(n);
  for (float& v : values) v = normal(rng);
  std::vector<uint16_t> rounded(n);
  ConvertFromFloat(values.data(), n, dtype, rounded.data());
  ConvertToFloat(rounded.data(), dtype, n, values.data());
  return values;
}

inline std::vector<float> NaNs(size_t n) {
  return std::vector<float>(n, std::numeric_limits<float>::quiet_NaN());
}

// ||got - want|| / ||want||; infinite when got holds a NaN (an unwritten or broken element).
inline double RelativeError(std::span<const float> got, std::span<const float> want) {
  if (got.size() != want.size()) return INFINITY;
  double diff = 0, norm = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (std::isnan(got[i])) return INFINITY;
    diff += (double{got[i]} - want[i]) * (double{got[i]} - want[i]);
    norm += double{want[i]} * want[i];
  }
  return std::sqrt(diff / std::max(norm, 1e-30));
}

// Sequences over a head-wise KV pool: each gets head blocks as it grows, taken from a seeded
// shuffle of the pool so that tables are not contiguous. Two instances fed the same calls (one
// per backend, each with its own tokens per block) give the same steps over their own pools.
class PagedSequences {
 public:
  PagedSequences(int64_t tokens_per_block, int64_t num_layers, int64_t num_kv_heads,
                 int64_t num_blocks, uint32_t seed)
      : tokens_per_block_(tokens_per_block),
        per_token_block_(num_layers * num_kv_heads),
        free_(num_blocks) {
    std::iota(free_.begin(), free_.end(), 0);
    std::mt19937 rng(seed);
    std::shuffle(free_.begin(), free_.end(), rng);
  }

  int AddSequence() {
    lengths_.push_back(0);
    tables_.emplace_back();
    return static_cast<int>(lengths_.size()) - 1;
  }
  int64_t length(int seq) const { return lengths_[seq]; }
  // Head blocks a pool needs for sequences of these lengths.
  static int64_t BlocksFor(std::span<const int64_t> lengths, int64_t tokens_per_block,
                           int64_t per_token_block) {
    int64_t blocks = 0;
    for (int64_t length : lengths) {
      blocks += (length + tokens_per_block - 1) / tokens_per_block * per_token_block;
    }
    return blocks;
  }

  // Appends `tokens` as the sequence's next new tokens to `plan`; `logits` asks for the logits
  // of its last row.
  void AddToPlan(int seq, std::span<const int32_t> tokens, bool logits, engine::StepPlan* plan) {
    const int64_t first = lengths_[seq];
    const int64_t context = first + static_cast<int64_t>(tokens.size());
    std::vector<int32_t>& table = tables_[seq];
    const int64_t needed = (context + tokens_per_block_ - 1) / tokens_per_block_ * per_token_block_;
    while (static_cast<int64_t>(table.size()) < needed) {
      table.push_back(free_.back());
      free_.pop_back();
    }
    const kernels::StepSequence step{
        .q_start = static_cast<int32_t>(plan->tokens.size()),
        .q_len = static_cast<int32_t>(tokens.size()),
        .context_len = static_cast<int32_t>(context),
        .table_offset = static_cast<int32_t>(plan->block_tables.size())};
    for (size_t i = 0; i < tokens.size(); ++i) {
      plan->tokens.push_back(tokens[i]);
      plan->positions.push_back(static_cast<int32_t>(first + static_cast<int64_t>(i)));
    }
    plan->block_tables.insert(plan->block_tables.end(), table.begin(), table.end());
    plan->seqs.push_back(step);
    if (logits) plan->logit_rows.push_back(step.q_start + step.q_len - 1);
    lengths_[seq] = context;
  }

  const std::vector<int32_t>& table(int seq) const { return tables_[seq]; }

 private:
  int64_t tokens_per_block_;
  int64_t per_token_block_;
  std::vector<int32_t> free_;
  std::vector<int64_t> lengths_;
  std::vector<std::vector<int32_t>> tables_;
};

// A small Llama-family shape (Qwen2 with `qkv_bias`) with `dtype` weights; its vocabulary holds
// the synthetic tokenizer's.
inline model::ModelSpec SmallSpec(int64_t layers, int64_t hidden, int64_t heads, int64_t kv_heads,
                                  int64_t intermediate, bool qkv_bias = false,
                                  DType dtype = DType::kBFloat16) {
  model::ModelSpec spec;
  spec.architecture = qkv_bias ? "Qwen2ForCausalLM" : "LlamaForCausalLM";
  spec.model_type = qkv_bias ? "qwen2" : "llama";
  spec.vocab_size = 320;
  spec.hidden_size = hidden;
  spec.intermediate_size = intermediate;
  spec.num_layers = layers;
  spec.num_heads = heads;
  spec.num_kv_heads = kv_heads;
  spec.head_dim = hidden / heads;
  spec.max_position_embeddings = 1024;
  spec.rms_norm_eps = 1e-5;
  spec.qkv_bias = qkv_bias;
  spec.dtype = dtype;
  return spec;
}

// Collects one request's tokens; Wait expects it to end by length.
class TokenCollector : public engine::RequestSink {
 public:
  void OnDelta(engine::StreamDelta delta) override {
    absl::MutexLock lock(&mu_);
    ids_.insert(ids_.end(), delta.token_ids.begin(), delta.token_ids.end());
  }
  void OnFinish(const engine::FinishInfo& info) override {
    absl::MutexLock lock(&mu_);
    finish_ = info;
  }
  std::vector<int32_t> Wait() {
    absl::MutexLock lock(&mu_);
    auto done = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return finish_.has_value(); };
    EXPECT_TRUE(mu_.AwaitWithTimeout(absl::Condition(&done), absl::Seconds(120)));
    EXPECT_TRUE(finish_.has_value() && finish_->reason == engine::FinishReason::kLength);
    return ids_;
  }

 private:
  absl::Mutex mu_;
  std::vector<int32_t> ids_ ABSL_GUARDED_BY(mu_);
  std::optional<engine::FinishInfo> finish_ ABSL_GUARDED_BY(mu_);
};

}  // namespace muxserve::testing
