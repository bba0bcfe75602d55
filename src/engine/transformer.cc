#include "muxserve/engine/transformer.h"

#include <cmath>
#include <numbers>
#include <string>

#include "absl/strings/str_cat.h"
#include "muxserve/common/status.h"

namespace muxserve::engine {

std::vector<float> RopeInverseFrequencies(const model::ModelSpec& spec) {
  const int64_t half = spec.head_dim / 2;
  std::vector<float> inv_freq(half);
  for (int64_t i = 0; i < half; ++i) {
    // HF: 1 / theta^(2i/d), computed in float32 from an int64 arange.
    const float exponent = static_cast<float>(2 * i) / static_cast<float>(spec.head_dim);
    inv_freq[i] = 1.0f / std::pow(static_cast<float>(spec.rope.theta), exponent);
  }
  switch (spec.rope.scaling) {
    case model::RopeScaling::kNone:
      break;
    case model::RopeScaling::kLinear:
      for (float& f : inv_freq) f = static_cast<float>(f / spec.rope.factor);
      break;
    case model::RopeScaling::kLlama3: {
      const double old_context = static_cast<double>(spec.rope.original_max_position);
      const double low_freq_wavelen = old_context / spec.rope.low_freq_factor;
      const double high_freq_wavelen = old_context / spec.rope.high_freq_factor;
      for (float& f : inv_freq) {
        const double wavelen = 2 * std::numbers::pi / f;
        if (wavelen > low_freq_wavelen) {
          f = static_cast<float>(f / spec.rope.factor);
        } else if (wavelen >= high_freq_wavelen) {
          const double smooth = (old_context / wavelen - spec.rope.low_freq_factor) /
                                (spec.rope.high_freq_factor - spec.rope.low_freq_factor);
          f = static_cast<float>((1 - smooth) * f / spec.rope.factor + smooth * f);
        }
      }
      break;
    }
  }
  return inv_freq;
}

absl::StatusOr<model::ModelSpec> ShardSpec(const model::ModelSpec& spec, int tp) {
  if (tp < 1) return absl::InvalidArgumentError(absl::StrCat("tensor_parallel ", tp, " < 1"));
  auto refuse = [&](std::string_view what, int64_t value) {
    return absl::InvalidArgumentError(absl::StrCat("tensor_parallel ", tp, " does not divide ",
                                                   AsAbsl(what), " (", value, ")"));
  };
  if (spec.num_heads % tp != 0) return refuse("num_attention_heads", spec.num_heads);
  if (spec.intermediate_size % tp != 0) return refuse("intermediate_size", spec.intermediate_size);
  if (spec.num_kv_heads % tp != 0 && tp % spec.num_kv_heads != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor_parallel ", tp, " and num_key_value_heads ", spec.num_kv_heads,
                     ": neither divides the other, so KV heads can be neither split nor "
                     "replicated evenly"));
  }
  model::ModelSpec shard = spec;
  shard.num_heads = spec.num_heads / tp;
  shard.num_kv_heads = spec.num_kv_heads % tp == 0 ? spec.num_kv_heads / tp : 1;
  shard.intermediate_size = spec.intermediate_size / tp;
  return shard;
}

absl::StatusOr<std::unique_ptr<Transformer>> Transformer::Load(const model::ModelSpec& spec,
                                                               const model::Weights& weights,
                                                               Ops* ops, int64_t max_step_tokens,
                                                               int64_t max_step_seqs,
                                                               runtime::Communicator* comm) {
  const int tp = comm != nullptr ? comm->size() : 1;
  const int rank = comm != nullptr ? comm->rank() : 0;
  ASSIGN_OR_RETURN(const model::ModelSpec shard, ShardSpec(spec, tp));
  std::unique_ptr<Transformer> t(new Transformer(spec, shard, ops, comm));
  t->max_step_tokens_ = max_step_tokens;
  t->max_step_seqs_ = max_step_seqs;

  // Rows [first_row, first_row + count) of a tensor: a column-parallel shard.
  auto rows = [&](const model::TensorInfo* info, int64_t first_row, int64_t count) {
    return WeightSlice{.tensor = info, .row_begin = first_row, .rows = count};
  };
  auto load = [&](std::span<const WeightSlice> parts) -> absl::StatusOr<Buffer> {
    ASSIGN_OR_RETURN(Buffer buffer, ops->LoadWeight(parts));
    t->weight_bytes_ += buffer.bytes;
    return buffer;
  };
  auto get = [&](const std::string& name) { return weights.Get(name); };
  auto load_whole = [&](const std::string& name) -> absl::StatusOr<Buffer> {
    ASSIGN_OR_RETURN(const model::TensorInfo* info, get(name));
    const WeightSlice whole{.tensor = info};
    return load({&whole, 1});
  };

  const int64_t d = spec.head_dim;
  const int64_t q_rows = shard.num_heads * d;
  const int64_t kv_rows = shard.num_kv_heads * d;
  // With replicated KV heads (fewer than ranks) a rank holds the one its query heads use.
  const int64_t first_kv_head = spec.num_kv_heads % tp == 0
                                    ? rank * shard.num_kv_heads
                                    : rank / (tp / spec.num_kv_heads);
  const int64_t inter = shard.intermediate_size;

  ASSIGN_OR_RETURN(t->embedding_, load_whole("model.embed_tokens.weight"));
  ASSIGN_OR_RETURN(t->final_norm_, load_whole("model.norm.weight"));
  if (spec.tie_word_embeddings) {
    t->lm_head_ = t->embedding_;
  } else {
    ASSIGN_OR_RETURN(t->lm_head_, load_whole("lm_head.weight"));
  }
  for (int64_t i = 0; i < spec.num_layers; ++i) {
    const std::string p = absl::StrCat("model.layers.", i, ".");
    Layer layer;
    ASSIGN_OR_RETURN(layer.input_norm, load_whole(p + "input_layernorm.weight"));
    for (const bool bias : {false, true}) {
      if (bias && !spec.qkv_bias) continue;
      const std::string suffix = bias ? ".bias" : ".weight";
      ASSIGN_OR_RETURN(const model::TensorInfo* q, get(p + "self_attn.q_proj" + suffix));
      ASSIGN_OR_RETURN(const model::TensorInfo* k, get(p + "self_attn.k_proj" + suffix));
      ASSIGN_OR_RETURN(const model::TensorInfo* v, get(p + "self_attn.v_proj" + suffix));
      const WeightSlice parts[] = {rows(q, rank * q_rows, q_rows),
                                   rows(k, first_kv_head * d, kv_rows),
                                   rows(v, first_kv_head * d, kv_rows)};
      Buffer& target = bias ? layer.qkv_bias : layer.qkv;
      ASSIGN_OR_RETURN(target, load(parts));
    }
    ASSIGN_OR_RETURN(const model::TensorInfo* o, get(p + "self_attn.o_proj.weight"));
    const WeightSlice o_part{.tensor = o, .col_begin = rank * q_rows, .cols = q_rows};
    ASSIGN_OR_RETURN(layer.o_proj, load({&o_part, 1}));
    ASSIGN_OR_RETURN(layer.post_norm, load_whole(p + "post_attention_layernorm.weight"));
    ASSIGN_OR_RETURN(const model::TensorInfo* gate, get(p + "mlp.gate_proj.weight"));
    ASSIGN_OR_RETURN(const model::TensorInfo* up, get(p + "mlp.up_proj.weight"));
    const WeightSlice gate_up[] = {rows(gate, rank * inter, inter), rows(up, rank * inter, inter)};
    ASSIGN_OR_RETURN(layer.gate_up, load(gate_up));
    ASSIGN_OR_RETURN(const model::TensorInfo* down, get(p + "mlp.down_proj.weight"));
    const WeightSlice down_part{.tensor = down, .col_begin = rank * inter, .cols = inter};
    ASSIGN_OR_RETURN(layer.down, load({&down_part, 1}));
    t->layers_.push_back(std::move(layer));
  }
  const std::vector<float> inv_freq = RopeInverseFrequencies(spec);
  ASSIGN_OR_RETURN(t->inv_freq_, ops->UploadFloat32(inv_freq));
  RETURN_IF_ERROR(t->AllocateActivations());
  return t;
}

absl::StatusOr<std::unique_ptr<Transformer>> Transformer::ShareWeights(
    Ops* ops, int64_t max_step_tokens, int64_t max_step_seqs, runtime::Communicator* comm) const {
  if (ops->dtype() != ops_->dtype()) {
    return absl::InvalidArgumentError("weights can only be shared by ops of the same dtype");
  }
  const int tp = comm_ != nullptr ? comm_->size() : 1;
  if ((comm != nullptr ? comm->size() : 1) != tp ||
      (comm != nullptr && comm->rank() != comm_->rank())) {
    return absl::InvalidArgumentError(
        "a sharded model's weights can only be shared with a communicator of the same rank and "
        "size");
  }
  std::unique_ptr<Transformer> t(new Transformer(spec_, shard_, ops, comm));
  t->max_step_tokens_ = max_step_tokens;
  t->max_step_seqs_ = max_step_seqs;
  t->weight_bytes_ = weight_bytes_;
  t->embedding_ = embedding_;
  t->final_norm_ = final_norm_;
  t->lm_head_ = lm_head_;
  t->inv_freq_ = inv_freq_;
  t->layers_ = layers_;
  RETURN_IF_ERROR(t->AllocateActivations());
  return t;
}

absl::Status Transformer::AllocateActivations() {
  const model::ModelSpec& spec = shard_;
  const int64_t e = static_cast<int64_t>(DTypeSize(ops_->dtype()));
  const int64_t n = max_step_tokens_;
  const int64_t seqs = max_step_seqs_;
  const int64_t qkv_width = spec.q_size() + 2 * spec.kv_size();
  ASSIGN_OR_RETURN(residual_, ops_->Allocate(n * spec.hidden_size * e));
  ASSIGN_OR_RETURN(normed_, ops_->Allocate(n * spec.hidden_size * e));
  ASSIGN_OR_RETURN(qkv_, ops_->Allocate(n * qkv_width * e));
  ASSIGN_OR_RETURN(attn_, ops_->Allocate(n * spec.q_size() * e));
  ASSIGN_OR_RETURN(gate_up_, ops_->Allocate(n * 2 * spec.intermediate_size * e));
  ASSIGN_OR_RETURN(act_, ops_->Allocate(n * spec.intermediate_size * e));
  ASSIGN_OR_RETURN(delta_, ops_->Allocate(n * spec.hidden_size * e));
  ASSIGN_OR_RETURN(last_, ops_->Allocate(seqs * spec.hidden_size * e));
  // Logits in the backend's dtype, or fp32 when sampled.
  ASSIGN_OR_RETURN(logits_, ops_->Allocate(seqs * spec.vocab_size * std::max<int64_t>(e, 4)));
  return absl::OkStatus();
}

absl::Status Transformer::Forward(const StepPlan& plan, const kernels::PagedKv& kv,
                                  std::vector<float>* logits) {
  RETURN_IF_ERROR(RunToLastRows(plan, kv));
  const int64_t rows = static_cast<int64_t>(plan.logit_rows.size());
  ops_->Gemm(last_.get(), lm_head_.get(), nullptr, rows, spec_.vocab_size, spec_.hidden_size,
             logits_.get());
  logits->resize(rows * spec_.vocab_size);
  return ops_->CopyToHost(logits_.get(), rows * spec_.vocab_size, logits->data());
}

absl::Status Transformer::Sample(const StepPlan& plan, const kernels::PagedKv& kv,
                                 std::span<const RowSampling> params,
                                 std::vector<int32_t>* tokens) {
  RETURN_IF_ERROR(RunToLastRows(plan, kv));
  const int64_t rows = static_cast<int64_t>(plan.logit_rows.size());
  tokens->resize(rows);
  return ops_->SampleRows(last_.get(), lm_head_.get(), rows, spec_.vocab_size, spec_.hidden_size,
                          logits_.get(), params, tokens->data());
}

absl::Status Transformer::RunToLastRows(const StepPlan& plan, const kernels::PagedKv& kv) {
  const int64_t n = plan.num_tokens();
  const int64_t rows = static_cast<int64_t>(plan.logit_rows.size());
  if (n == 0 || n > max_step_tokens_ || rows > max_step_seqs_) {
    return absl::InternalError(absl::StrCat("step of ", n, " tokens and ", rows,
                                            " logit rows exceeds the planned maximum (",
                                            max_step_tokens_, ", ", max_step_seqs_, ")"));
  }
  RETURN_IF_ERROR(ops_->BeginStep(plan));
  const model::ModelSpec& s = shard_;
  const int64_t hidden = s.hidden_size;
  const int64_t qkv_width = s.q_size() + 2 * s.kv_size();
  const int64_t k_offset = s.q_size();
  const int64_t v_offset = s.q_size() + s.kv_size();
  const float eps = static_cast<float>(s.rms_norm_eps);
  const float scale = 1.0f / std::sqrt(static_cast<float>(s.head_dim));

  ops_->Embedding(plan, embedding_.get(), hidden, residual_.get());
  for (int64_t l = 0; l < s.num_layers; ++l) {
    const Layer& layer = layers_[l];
    if (l == 0) {
      ops_->RmsNorm(residual_.get(), layer.input_norm.get(), n, hidden, eps, normed_.get());
    } else {
      // Adds the previous layer's MLP output into the residual stream.
      ops_->AddRmsNorm(residual_.get(), delta_.get(), layer.input_norm.get(), n, hidden, eps,
                       normed_.get());
    }
    ops_->Gemm(normed_.get(), layer.qkv.get(), layer.qkv_bias.get(), n, qkv_width, hidden,
               qkv_.get());
    ops_->Rope(qkv_.get(), plan, inv_freq_.get(), qkv_width, s.num_heads, s.num_kv_heads,
               k_offset, s.head_dim);
    ops_->KvAppend(qkv_.get(), plan, qkv_width, k_offset, v_offset, l, kv);
    ops_->Attention(qkv_.get(), plan, qkv_width, s.num_heads, l, scale, kv, attn_.get());
    ops_->Gemm(attn_.get(), layer.o_proj.get(), nullptr, n, hidden, s.q_size(), delta_.get());
    if (comm_ != nullptr) ops_->AllReduceSum(*comm_, delta_.get(), n * hidden);
    ops_->AddRmsNorm(residual_.get(), delta_.get(), layer.post_norm.get(), n, hidden, eps,
                     normed_.get());
    ops_->Gemm(normed_.get(), layer.gate_up.get(), nullptr, n, 2 * s.intermediate_size, hidden,
               gate_up_.get());
    ops_->SiluMul(gate_up_.get(), n, s.intermediate_size, act_.get());
    ops_->Gemm(act_.get(), layer.down.get(), nullptr, n, hidden, s.intermediate_size,
               delta_.get());
    if (comm_ != nullptr) ops_->AllReduceSum(*comm_, delta_.get(), n * hidden);
  }
  ops_->AddRmsNorm(residual_.get(), delta_.get(), final_norm_.get(), n, hidden, eps,
                   normed_.get());
  ops_->GatherLogitRows(normed_.get(), plan, hidden, last_.get());
  return absl::OkStatus();
}

}  // namespace muxserve::engine
