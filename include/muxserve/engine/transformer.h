// The Llama-family forward pass, written once against engine::Ops.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/paged_kv.h"
#include "muxserve/engine/ops.h"
#include "muxserve/engine/step_plan.h"
#include "muxserve/model/model_spec.h"
#include "muxserve/model/weights.h"
#include "muxserve/runtime/communicator.h"

namespace muxserve::engine {

// What one rank of a tensor-parallel group of `tp` ranks computes (Megatron-style): a 1/tp share
// of the query heads, KV heads and MLP width, as a spec of its own. KV heads are split when tp
// divides them and replicated when they divide tp (fewer KV heads than ranks: one each).
// INVALID_ARGUMENT naming the dimension otherwise.
absl::StatusOr<model::ModelSpec> ShardSpec(const model::ModelSpec& spec, int tp);

// Inverse RoPE frequencies [head_dim / 2] with the spec's scaling (none, linear, llama3),
// computed as HF transformers does.
std::vector<float> RopeInverseFrequencies(const model::ModelSpec& spec);

class Transformer {
 public:
  // Loads the weights onto `ops` (fusing QKV and gate/up) and allocates the activations of a
  // step of up to `max_step_tokens` tokens and `max_step_seqs` sequences. With `comm`, this
  // instance is rank comm->rank() of a tensor-parallel group: it loads that rank's shard
  // (column-parallel QKV and gate/up, row-parallel output and down projections, embeddings,
  // norms and lm_head whole) and sums the row-parallel outputs over the group; its KV cache
  // holds ShardSpec(spec, size).num_kv_heads heads per layer. Every rank of the group runs each
  // step with the same plan, each on its own thread.
  static absl::StatusOr<std::unique_ptr<Transformer>> Load(const model::ModelSpec& spec,
                                                           const model::Weights& weights, Ops* ops,
                                                           int64_t max_step_tokens,
                                                           int64_t max_step_seqs,
                                                           runtime::Communicator* comm = nullptr);

  // Another instance over the same weights (which stay alive while either does), with its own
  // activations on `ops` (a backend of the same dtype and memory, e.g. a CUDA lane of its
  // own), so that two steps of one model can run at the same time. A sharded model needs a
  // communicator of its own group size here: two groups' collectives must not interleave.
  absl::StatusOr<std::unique_ptr<Transformer>> ShareWeights(
      Ops* ops, int64_t max_step_tokens, int64_t max_step_seqs,
      runtime::Communicator* comm = nullptr) const;

  // Runs one step. Logits of plan.logit_rows land in `logits` [logit_rows, vocab] (host fp32).
  [[nodiscard]] absl::Status Forward(const StepPlan& plan, const kernels::PagedKv& kv,
                                     std::vector<float>* logits);
  // Runs one step and draws a token for each of plan.logit_rows by params[i] (on the backend:
  // only the tokens reach the host).
  [[nodiscard]] absl::Status Sample(const StepPlan& plan, const kernels::PagedKv& kv,
                                    std::span<const RowSampling> params,
                                    std::vector<int32_t>* tokens);

  const model::ModelSpec& spec() const { return spec_; }
  // What this rank computes (spec() when not sharded).
  const model::ModelSpec& shard_spec() const { return shard_; }
  int64_t max_step_tokens() const { return max_step_tokens_; }
  int64_t max_step_seqs() const { return max_step_seqs_; }
  int64_t weight_bytes() const { return weight_bytes_; }

 private:
  struct Layer {
    Buffer input_norm, qkv, qkv_bias, o_proj, post_norm, gate_up, down;
  };
  Transformer(const model::ModelSpec& spec, const model::ModelSpec& shard, Ops* ops,
              runtime::Communicator* comm)
      : spec_(spec), shard_(shard), ops_(ops), comm_(comm) {}
  absl::Status AllocateActivations();
  // Everything but the logits: the last rows' normed hidden states land in last_.
  absl::Status RunToLastRows(const StepPlan& plan, const kernels::PagedKv& kv);

  model::ModelSpec spec_;
  model::ModelSpec shard_;
  Ops* ops_;
  runtime::Communicator* comm_;  // nullptr: not sharded
  int64_t max_step_tokens_ = 0;
  int64_t max_step_seqs_ = 0;
  int64_t weight_bytes_ = 0;
  Buffer embedding_, final_norm_, lm_head_, inv_freq_;
  std::vector<Layer> layers_;
  // Activations: residual stream, normed input, fused qkv, attention output, gate/up, SwiGLU
  // output, block output, last rows, logits.
  Buffer residual_, normed_, qkv_, attn_, gate_up_, act_, delta_, last_, logits_;
};

}  // namespace muxserve::engine
