// The paged, chunked forward pass against a dense reference written independently here.
#include "muxserve/engine/transformer.h"

#include <cmath>
#include <vector>

#include "gtest/gtest.h"
#include "muxserve/kvcache/head_block_pool.h"
#include "test_models.h"

namespace muxserve::engine {
namespace {

using Matrix = std::vector<float>;

Matrix Load(const model::Weights& weights, const std::string& name) {
  const model::TensorInfo* info = *weights.Get(name);
  Matrix m(info->NumElements());
  ConvertToFloat(info->data.data(), info->dtype, m.size(), m.data());
  return m;
}

// x [n, k] @ w [m, k]^T
Matrix Linear(const Matrix& x, const Matrix& w, int64_t n, int64_t k, int64_t m) {
  Matrix out(n * m);
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < m; ++j) {
      double acc = 0;
      for (int64_t p = 0; p < k; ++p) acc += double{x[i * k + p]} * w[j * k + p];
      out[i * m + j] = static_cast<float>(acc);
    }
  }
  return out;
}

Matrix Norm(const Matrix& x, const Matrix& w, int64_t n, int64_t h, double eps) {
  Matrix out(n * h);
  for (int64_t i = 0; i < n; ++i) {
    double ss = 0;
    for (int64_t j = 0; j < h; ++j) ss += double{x[i * h + j]} * x[i * h + j];
    const double inv = 1 / std::sqrt(ss / h + eps);
    for (int64_t j = 0; j < h; ++j) out[i * h + j] = static_cast<float>(x[i * h + j] * inv * w[j]);
  }
  return out;
}

// Logits [n, vocab] of every position of `tokens`, computed densely.
Matrix DenseForward(const model::ModelSpec& s, const model::Weights& weights,
                    const std::vector<int32_t>& tokens) {
  const int64_t n = static_cast<int64_t>(tokens.size()), h = s.hidden_size, d = s.head_dim;
  const Matrix embed = Load(weights, "model.embed_tokens.weight");
  Matrix x(n * h);
  for (int64_t i = 0; i < n; ++i) std::copy_n(&embed[tokens[i] * h], h, &x[i * h]);
  const std::vector<float> inv_freq = RopeInverseFrequencies(s);
  auto rope = [&](Matrix& m, int64_t heads) {
    for (int64_t t = 0; t < n; ++t) {
      for (int64_t hh = 0; hh < heads; ++hh) {
        float* v = &m[(t * heads + hh) * d];
        for (int64_t i = 0; i < d / 2; ++i) {
          const double a = static_cast<double>(t) * inv_freq[i];
          const double x0 = v[i], x1 = v[i + d / 2];
          v[i] = static_cast<float>(x0 * std::cos(a) - x1 * std::sin(a));
          v[i + d / 2] = static_cast<float>(x1 * std::cos(a) + x0 * std::sin(a));
        }
      }
    }
  };
  for (int64_t l = 0; l < s.num_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    Matrix xn = Norm(x, Load(weights, p + "input_layernorm.weight"), n, h, s.rms_norm_eps);
    Matrix q = Linear(xn, Load(weights, p + "self_attn.q_proj.weight"), n, h, s.q_size());
    Matrix k = Linear(xn, Load(weights, p + "self_attn.k_proj.weight"), n, h, s.kv_size());
    Matrix v = Linear(xn, Load(weights, p + "self_attn.v_proj.weight"), n, h, s.kv_size());
    if (s.qkv_bias) {
      const Matrix bq = Load(weights, p + "self_attn.q_proj.bias");
      const Matrix bk = Load(weights, p + "self_attn.k_proj.bias");
      const Matrix bv = Load(weights, p + "self_attn.v_proj.bias");
      for (int64_t t = 0; t < n; ++t) {
        for (int64_t j = 0; j < s.q_size(); ++j) q[t * s.q_size() + j] += bq[j];
        for (int64_t j = 0; j < s.kv_size(); ++j) {
          k[t * s.kv_size() + j] += bk[j];
          v[t * s.kv_size() + j] += bv[j];
        }
      }
    }
    rope(q, s.num_heads);
    rope(k, s.num_kv_heads);
    Matrix attn(n * s.q_size());
    const int64_t group = s.num_heads / s.num_kv_heads;
    for (int64_t t = 0; t < n; ++t) {
      for (int64_t hh = 0; hh < s.num_heads; ++hh) {
        const int64_t g = hh / group;
        std::vector<double> w(t + 1);
        double mx = -INFINITY, sum = 0;
        for (int64_t u = 0; u <= t; ++u) {
          double dot = 0;
          for (int64_t j = 0; j < d; ++j) dot += double{q[(t * s.num_heads + hh) * d + j]} * k[(u * s.num_kv_heads + g) * d + j];
          w[u] = dot / std::sqrt(double(d));
          mx = std::max(mx, w[u]);
        }
        for (double& e : w) sum += (e = std::exp(e - mx));
        for (int64_t j = 0; j < d; ++j) {
          double acc = 0;
          for (int64_t u = 0; u <= t; ++u) acc += w[u] / sum * v[(u * s.num_kv_heads + g) * d + j];
          attn[(t * s.num_heads + hh) * d + j] = static_cast<float>(acc);
        }
      }
    }
    Matrix o = Linear(attn, Load(weights, p + "self_attn.o_proj.weight"), n, s.q_size(), h);
    for (int64_t i = 0; i < n * h; ++i) x[i] += o[i];
    xn = Norm(x, Load(weights, p + "post_attention_layernorm.weight"), n, h, s.rms_norm_eps);
    const int64_t inter = s.intermediate_size;
    Matrix gate = Linear(xn, Load(weights, p + "mlp.gate_proj.weight"), n, h, inter);
    Matrix up = Linear(xn, Load(weights, p + "mlp.up_proj.weight"), n, h, inter);
    for (int64_t i = 0; i < n * inter; ++i) gate[i] = gate[i] / (1 + std::exp(-gate[i])) * up[i];
    Matrix down = Linear(gate, Load(weights, p + "mlp.down_proj.weight"), n, inter, h);
    for (int64_t i = 0; i < n * h; ++i) x[i] += down[i];
  }
  x = Norm(x, Load(weights, "model.norm.weight"), n, h, s.rms_norm_eps);
  const Matrix head = Load(weights, s.tie_word_embeddings ? "model.embed_tokens.weight" : "lm_head.weight");
  return Linear(x, head, n, h, s.vocab_size);
}

double RelativeError(std::span<const float> got, std::span<const float> want) {
  double diff = 0, norm = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    diff += double(got[i] - want[i]) * (got[i] - want[i]);
    norm += double{want[i]} * want[i];
  }
  return std::sqrt(diff / norm);
}

struct Shape {
  const char* name;
  model::ModelSpec spec;
};

class TransformerTest : public ::testing::TestWithParam<int> {};

// Runs a 13-token sequence as a prefill chunk of 5, a chunk of 6, then 2 decode steps, through
// scattered head blocks, and compares the logits of each step's last token with the dense ones.
TEST_P(TransformerTest, ChunkedPrefillAndDecodeMatchDenseReference) {
  model::ModelSpec spec;
  switch (GetParam()) {
    case 0:
      spec = testing::TinySpec(2, 64, 4, 4, 160);  // MHA
      break;
    case 1:
      spec = testing::TinySpec(3, 96, 6, 2, 200);  // GQA with llama3 rope scaling
      spec.rope = {.theta = 500000, .scaling = model::RopeScaling::kLlama3, .factor = 8,
                   .low_freq_factor = 1, .high_freq_factor = 4, .original_max_position = 64};
      break;
    default:
      spec = testing::TinySpec(2, 64, 4, 2, 128);  // Qwen2-like: qkv bias, tied embeddings
      spec.qkv_bias = true;
      spec.tie_word_embeddings = true;
      break;
  }
  const auto dir = testing::WriteTinyModel("transformer" + std::to_string(GetParam()), spec, 7);
  auto weights = model::Weights::Load(dir, spec);
  ASSERT_TRUE(weights.ok()) << weights.status();
  auto ops = MakeCpuOps(2);
  auto transformer = Transformer::Load(spec, **weights, ops.get(), 16, 4);
  ASSERT_TRUE(transformer.ok()) << transformer.status();

  std::vector<int32_t> tokens = {5, 77, 12, 200, 31, 9, 150, 151, 3, 64, 250, 18, 100};
  const Matrix dense = DenseForward(spec, **weights, tokens);

  const int64_t tokens_per_block = 4;
  const int64_t block_bytes = 2 * tokens_per_block * spec.head_dim * 4;
  kvcache::HeadBlockPool pool(256, block_bytes, DTypeSize(DType::kFloat32));
  auto memory = ops->Allocate(256 * block_bytes);
  ASSERT_TRUE(memory.ok());
  const kvcache::KvShape shape{spec.num_layers, spec.num_kv_heads, spec.head_dim};
  const int id = pool.RegisterLlm("m", shape, 1);
  // Take blocks in a scrambled order so no kernel relies on neighbouring ids.
  std::vector<int32_t> junk;
  ASSERT_TRUE(pool.Allocate(id, 7, &junk).ok());
  kvcache::BlockTable table(shape);
  const int64_t needed = (tokens.size() + tokens_per_block - 1) / tokens_per_block;
  ASSERT_TRUE(pool.Allocate(id, needed * shape.blocks_per_token_block(), table.mutable_ids()).ok());
  std::reverse(table.mutable_ids()->begin(), table.mutable_ids()->end());
  const kernels::PagedKv kv{.pool = memory->get(), .block_bytes = block_bytes,
                            .tokens_per_block = tokens_per_block, .head_dim = spec.head_dim,
                            .num_layers = spec.num_layers, .num_kv_heads = spec.num_kv_heads};

  int32_t done = 0;
  for (int32_t step : {5, 6, 1, 1}) {
    StepPlan plan;
    for (int32_t i = 0; i < step; ++i) {
      plan.tokens.push_back(tokens[done + i]);
      plan.positions.push_back(done + i);
    }
    plan.seqs.push_back({.q_start = 0, .q_len = step, .context_len = done + step, .table_offset = 0});
    plan.block_tables = table.ids();
    plan.logit_rows.push_back(step - 1);
    std::vector<float> logits;
    ASSERT_TRUE((*transformer)->Forward(plan, kv, &logits).ok());
    done += step;
    const std::span<const float> want(&dense[(done - 1) * spec.vocab_size], spec.vocab_size);
    EXPECT_LT(RelativeError(logits, want), 1e-4) << "after " << done << " tokens";
  }
  std::filesystem::remove_all(dir);
}

INSTANTIATE_TEST_SUITE_P(Shapes, TransformerTest, ::testing::Values(0, 1, 2));

TEST(RopeTest, Llama3ScalingKeepsHighFrequenciesAndScalesLowOnes) {
  model::ModelSpec spec = testing::TinySpec(1, 128, 1, 1, 8);
  spec.rope = {.theta = 500000, .scaling = model::RopeScaling::kNone};
  const std::vector<float> plain = RopeInverseFrequencies(spec);
  spec.rope = {.theta = 500000, .scaling = model::RopeScaling::kLlama3, .factor = 8,
               .low_freq_factor = 1, .high_freq_factor = 4, .original_max_position = 8192};
  const std::vector<float> scaled = RopeInverseFrequencies(spec);
  EXPECT_FLOAT_EQ(scaled.front(), plain.front());           // wavelength 2π: untouched
  EXPECT_FLOAT_EQ(scaled.back(), plain.back() / 8);         // longest wavelength: divided
  spec.rope = {.theta = 10000, .scaling = model::RopeScaling::kLinear, .factor = 4};
  const std::vector<float> linear = RopeInverseFrequencies(spec);
  spec.rope.scaling = model::RopeScaling::kNone;
  const std::vector<float> base = RopeInverseFrequencies(spec);
  for (size_t i = 0; i < base.size(); ++i) EXPECT_FLOAT_EQ(linear[i], base[i] / 4);
}

}  // namespace
}  // namespace muxserve::engine
