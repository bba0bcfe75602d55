// The CPU reference ops against naive double-precision formulas on fresh random inputs, outputs
// poisoned before each run so an unwritten element shows.
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu_ops.h"

namespace muxserve::kernels {
namespace {

std::vector<float> Random(size_t n, std::mt19937& rng, float scale = 1.0f) {
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

std::vector<float> Poisoned(size_t n) {
  return std::vector<float>(n, std::numeric_limits<float>::quiet_NaN());
}

double RelativeError(const std::vector<float>& got, const std::vector<double>& want) {
  double diff = 0, norm = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (std::isnan(got[i])) return INFINITY;
    diff += (got[i] - want[i]) * (got[i] - want[i]);
    norm += want[i] * want[i];
  }
  return std::sqrt(diff / std::max(norm, 1e-30));
}

TEST(CpuOpsTest, GemmMatchesNaiveProductWithAndWithoutBias) {
  std::mt19937 rng(1);
  for (auto [m, n, k] : {std::tuple{1, 37, 19}, std::tuple{5, 64, 33}, std::tuple{17, 3, 128}}) {
    auto a = Random(m * k, rng), w = Random(n * k, rng), bias = Random(n, rng);
    for (bool with_bias : {false, true}) {
      auto out = Poisoned(m * n);
      GemmCpu(a.data(), w.data(), with_bias ? bias.data() : nullptr, m, n, k, out.data());
      std::vector<double> want(m * n);
      for (int i = 0; i < m; ++i) {
        for (int j = 0; j < n; ++j) {
          double acc = with_bias ? bias[j] : 0;
          for (int p = 0; p < k; ++p) acc += double{a[i * k + p]} * w[j * k + p];
          want[i * n + j] = acc;
        }
      }
      EXPECT_LT(RelativeError(out, want), 1e-5) << m << "x" << n << "x" << k;
    }
  }
}

TEST(CpuOpsTest, RmsNormAndFusedAddMatchFormula) {
  std::mt19937 rng(2);
  const int n = 3, h = 45;
  auto x = Random(n * h, rng), w = Random(h, rng), delta = Random(n * h, rng);
  std::vector<double> want(n * h), want_residual(n * h);
  for (int i = 0; i < n; ++i) {
    double ss = 0;
    for (int j = 0; j < h; ++j) {
      want_residual[i * h + j] = double{x[i * h + j]} + delta[i * h + j];
      ss += want_residual[i * h + j] * want_residual[i * h + j];
    }
    const double inv = 1 / std::sqrt(ss / h + 1e-5);
    for (int j = 0; j < h; ++j) want[i * h + j] = want_residual[i * h + j] * inv * w[j];
  }
  auto residual = x;
  auto out = Poisoned(n * h);
  AddRmsNormCpu(residual.data(), delta.data(), w.data(), n, h, 1e-5f, out.data());
  EXPECT_LT(RelativeError(out, want), 1e-5);
  EXPECT_LT(RelativeError(residual, want_residual), 1e-6);
  auto plain = Poisoned(n * h);
  RmsNormCpu(residual.data(), w.data(), n, h, 1e-5f, plain.data());
  EXPECT_LT(RelativeError(plain, want), 1e-5);
}

TEST(CpuOpsTest, RopeRotatesPairsHalfApart) {
  std::mt19937 rng(3);
  const int n = 4, hq = 2, hk = 1, d = 8, stride = (hq + 2 * hk) * d;
  auto qkv = Random(n * stride, rng);
  std::vector<float> inv_freq = {1.0f, 0.1f, 0.01f, 0.001f};
  std::vector<int32_t> positions = {0, 5, 17, 1000};
  auto rotated = qkv;
  RopeCpu(rotated.data(), positions.data(), inv_freq.data(), n, stride, hq, hk, hq * d, d);
  std::vector<double> want(qkv.begin(), qkv.end());
  for (int t = 0; t < n; ++t) {
    for (int head = 0; head < hq + hk; ++head) {
      const int base = t * stride + head * d;
      for (int i = 0; i < d / 2; ++i) {
        const double angle = static_cast<double>(positions[t]) * inv_freq[i];
        const double x0 = qkv[base + i], x1 = qkv[base + i + d / 2];
        want[base + i] = x0 * std::cos(angle) - x1 * std::sin(angle);
        want[base + i + d / 2] = x1 * std::cos(angle) + x0 * std::sin(angle);
      }
    }
  }
  EXPECT_LT(RelativeError(rotated, want), 1e-5);
  // The V part of each row is untouched.
  for (int t = 0; t < n; ++t) {
    for (int j = (hq + hk) * d; j < stride; ++j) EXPECT_EQ(rotated[t * stride + j], qkv[t * stride + j]);
  }
}

TEST(CpuOpsTest, SiluMulAndEmbedding) {
  std::mt19937 rng(4);
  const int n = 3, inter = 11, vocab = 7, h = 5;
  auto gate_up = Random(n * 2 * inter, rng);
  auto out = Poisoned(n * inter);
  SiluMulCpu(gate_up.data(), n, inter, out.data());
  std::vector<double> want(n * inter);
  for (int i = 0; i < n; ++i) {
    for (int j = 0; j < inter; ++j) {
      const double g = gate_up[i * 2 * inter + j];
      want[i * inter + j] = g / (1 + std::exp(-g)) * gate_up[i * 2 * inter + inter + j];
    }
  }
  EXPECT_LT(RelativeError(out, want), 1e-6);

  auto table = Random(vocab * h, rng);
  std::vector<int32_t> tokens = {6, 0, 3};
  auto emb = Poisoned(tokens.size() * h);
  EmbeddingCpu(tokens.data(), table.data(), 3, h, emb.data());
  for (int i = 0; i < 3; ++i) {
    for (int j = 0; j < h; ++j) EXPECT_EQ(emb[i * h + j], table[tokens[i] * h + j]);
  }
}

// Paged attention over scattered head blocks equals dense causal attention with GQA.
TEST(CpuOpsTest, PagedAttentionMatchesDenseCausalAttention) {
  std::mt19937 rng(5);
  const int hq = 4, hk = 2, d = 16, layers = 2, tokens_per_block = 4;
  const int stride = (hq + 2 * hk) * d;
  const int64_t block_bytes = 2 * tokens_per_block * d * sizeof(float);
  const int num_blocks = 64;
  std::vector<float> pool(num_blocks * block_bytes / sizeof(float),
                          std::numeric_limits<float>::quiet_NaN());
  PagedKv kv{.pool = pool.data(), .block_bytes = block_bytes, .tokens_per_block = tokens_per_block,
             .head_dim = d, .num_layers = layers, .num_kv_heads = hk};
  // Two sequences: 7 prompt tokens of which 3 were cached earlier, and 1 new decode token after
  // 9 cached ones. Block ids are a random permutation, so nothing relies on adjacency.
  std::vector<int32_t> ids(num_blocks);
  for (int i = 0; i < num_blocks; ++i) ids[i] = i;
  std::shuffle(ids.begin(), ids.end(), rng);
  const int context[2] = {7, 10}, new_tokens[2] = {4, 1};
  std::vector<int32_t> tables;
  std::vector<StepSequence> seqs;
  int next_id = 0;
  for (int s = 0; s < 2; ++s) {
    const int blocks = (context[s] + tokens_per_block - 1) / tokens_per_block;
    seqs.push_back({.q_start = s == 0 ? 0 : new_tokens[0], .q_len = new_tokens[s],
                    .context_len = context[s], .table_offset = static_cast<int32_t>(tables.size())});
    for (int b = 0; b < blocks * layers * hk; ++b) tables.push_back(ids[next_id++]);
  }
  const int layer = 1;
  // Dense K/V of every position, written into the pool: cached ones directly, new ones by
  // KvAppend from the step's qkv rows.
  std::vector<std::vector<float>> k(2), v(2);
  const int n = new_tokens[0] + new_tokens[1];
  auto qkv = Random(n * stride, rng);
  for (int s = 0; s < 2; ++s) {
    k[s] = Random(context[s] * hk * d, rng);
    v[s] = Random(context[s] * hk * d, rng);
    const int cached = context[s] - new_tokens[s];
    for (int t = 0; t < context[s]; ++t) {
      for (int h = 0; h < hk; ++h) {
        float* krow = KvRow(kv, tables.data() + seqs[s].table_offset, layer, h, t, false);
        float* vrow = KvRow(kv, tables.data() + seqs[s].table_offset, layer, h, t, true);
        if (t < cached) {
          std::copy_n(&k[s][(t * hk + h) * d], d, krow);
          std::copy_n(&v[s][(t * hk + h) * d], d, vrow);
        } else {
          const float* row = &qkv[(seqs[s].q_start + t - cached) * stride];
          std::copy_n(row + hq * d + h * d, d, &k[s][(t * hk + h) * d]);
          std::copy_n(row + (hq + hk) * d + h * d, d, &v[s][(t * hk + h) * d]);
        }
      }
    }
  }
  KvAppendCpu(qkv.data(), seqs.data(), 2, tables.data(), stride, hq * d, (hq + hk) * d, layer, kv);
  auto out = Poisoned(n * hq * d);
  const float scale = 1 / std::sqrt(float{d});
  PagedAttentionCpu(qkv.data(), seqs.data(), 2, tables.data(), stride, hq, layer, scale, kv,
                    out.data());
  std::vector<double> want(n * hq * d);
  for (int s = 0; s < 2; ++s) {
    const int cached = context[s] - new_tokens[s];
    for (int i = 0; i < new_tokens[s]; ++i) {
      const int row = seqs[s].q_start + i;
      for (int h = 0; h < hq; ++h) {
        const int g = h / (hq / hk);
        std::vector<double> p(cached + i + 1);
        double mx = -INFINITY, sum = 0;
        for (int t = 0; t <= cached + i; ++t) {
          double dot = 0;
          for (int j = 0; j < d; ++j) dot += double{qkv[row * stride + h * d + j]} * k[s][(t * hk + g) * d + j];
          p[t] = dot * scale;
          mx = std::max(mx, p[t]);
        }
        for (double& x : p) sum += (x = std::exp(x - mx));
        for (int j = 0; j < d; ++j) {
          double acc = 0;
          for (int t = 0; t <= cached + i; ++t) acc += p[t] / sum * v[s][(t * hk + g) * d + j];
          want[(row * hq + h) * d + j] = acc;
        }
      }
    }
  }
  EXPECT_LT(RelativeError(out, want), 1e-5);
}

}  // namespace
}  // namespace muxserve::kernels
