// Each op of the CUDA backend, in bf16 and in fp16, against the CPU reference ops on fresh random
// inputs (rounded to the dtype so both start from the same numbers), outputs poisoned with NaN
// before every run. Skipped without a CUDA device.
#include "muxserve/engine/cuda_ops.h"

#include <cstring>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "gpu_test_util.h"
#include "gtest/gtest.h"
#include "kernels/cpu_ops.h"

namespace muxserve::engine {
namespace {

using ::muxserve::testing::NaNs;
using ::muxserve::testing::PagedSequences;
using ::muxserve::testing::RandomIn;
using ::muxserve::testing::RelativeError;

const DType kDTypes[] = {DType::kBFloat16, DType::kFloat16};
std::string DTypeParamName(const ::testing::TestParamInfo<DType>& info) {
  return std::string(DTypeName(info.param));
}

// Ops of one dtype, and helpers to move data to and from them.
class CudaOpsFixture : public ::testing::Test {
 protected:
  // Call from SetUp: skips the test without a device.
  void StartOps(DType dtype) {
    if (!::muxserve::testing::HaveCudaDevice()) GTEST_SKIP() << "no CUDA device";
    dtype_ = dtype;
    auto ops = MakeCudaOps({.dtype = dtype, .kernels = {}});
    ASSERT_TRUE(ops.ok()) << ops.status();
    ops_ = std::move(*ops);
  }

  // Relative error allowed for outputs rounded to the dtype once or a few times: fp16 keeps
  // three more mantissa bits than bf16.
  double Tolerance() const { return dtype_ == DType::kFloat16 ? 2.5e-3 : 1e-2; }

  std::vector<float> Random(size_t n, float scale = 1.0f) {
    return RandomIn(dtype_, n, rng_, scale);
  }

  // Device copy of `values` in the ops' dtype (through LoadWeight, which converts float32 on the
  // host).
  Buffer Upload(const std::vector<float>& values) {
    const model::TensorInfo info{
        .dtype = DType::kFloat32,
        // One row: LoadWeight converts a row in chunks of a million elements (a vector would be a
        // column of one-element rows, each its own copy).
        .shape = {1, static_cast<int64_t>(values.size())},
        .data = std::as_bytes(std::span<const float>(values.data(), values.size()))};
    const WeightSlice parts[] = {{.tensor = &info}};
    auto buffer = ops_->LoadWeight(parts);
    EXPECT_TRUE(buffer.ok()) << buffer.status();
    return buffer.ok() ? *buffer : Buffer{};
  }

  std::vector<float> Download(const Buffer& buffer, int64_t count) {
    std::vector<float> values(count);
    const absl::Status status = ops_->CopyToHost(buffer.get(), count, values.data());
    EXPECT_TRUE(status.ok()) << status;
    return values;
  }

  void Begin(const StepPlan& plan) {
    const absl::Status status = ops_->BeginStep(plan);
    ASSERT_TRUE(status.ok()) << status;
  }

  DType dtype_ = DType::kBFloat16;
  std::unique_ptr<CudaOps> ops_;
  std::mt19937 rng_{20261124};
};

class CudaOpsTest : public CudaOpsFixture, public ::testing::WithParamInterface<DType> {
 protected:
  void SetUp() override { StartOps(GetParam()); }
};

// cuBLAS and, for up to 8 rows with k a multiple of 8, our GEMV.
TEST_P(CudaOpsTest, GemmMatchesCpuWithAndWithoutBias) {
  for (auto [m, n, k] :
       {std::tuple{1, 37, 19}, std::tuple{5, 64, 33}, std::tuple{33, 129, 200},
        std::tuple{128, 256, 512}, std::tuple{1, 300, 256}, std::tuple{3, 129, 1032},
        std::tuple{8, 77, 64}, std::tuple{2, 5, 8}, std::tuple{1, 4099, 4096}}) {
    const auto a = Random(m * k), w = Random(n * k), bias = Random(n);
    const Buffer a_dev = Upload(a), w_dev = Upload(w), bias_dev = Upload(bias);
    for (bool gemv : {true, false}) {
      ops_->SetKernelChoices({.gemv_for_few_rows = gemv});
      for (bool with_bias : {false, true}) {
        const Buffer out = Upload(NaNs(m * n));
        ops_->Gemm(a_dev.get(), w_dev.get(), with_bias ? bias_dev.get() : nullptr, m, n, k,
                   out.get());
        std::vector<float> want(m * n);
        kernels::GemmCpu(a.data(), w.data(), with_bias ? bias.data() : nullptr, m, n, k,
                         want.data());
        EXPECT_LT(RelativeError(Download(out, m * n), want), Tolerance())
            << m << "x" << n << "x" << k << " bias " << with_bias << " gemv " << gemv;
      }
    }
  }
}

TEST_P(CudaOpsTest, RmsNormAndFusedAddMatchCpu) {
  for (auto [n, hidden] : {std::pair{3, 45}, std::pair{7, 4096}, std::pair{1, 8}}) {
    const auto x = Random(n * hidden), delta = Random(n * hidden);
    const auto weight = Random(hidden);
    const Buffer x_dev = Upload(x), delta_dev = Upload(delta), weight_dev = Upload(weight);

    Buffer out = Upload(NaNs(n * hidden));
    ops_->RmsNorm(x_dev.get(), weight_dev.get(), n, hidden, 1e-5f, out.get());
    std::vector<float> want(n * hidden);
    kernels::RmsNormCpu(x.data(), weight.data(), n, hidden, 1e-5f, want.data());
    EXPECT_LT(RelativeError(Download(out, n * hidden), want), Tolerance()) << n << "x" << hidden;
    EXPECT_EQ(Download(x_dev, n * hidden), x) << "RmsNorm wrote its input";

    out = Upload(NaNs(n * hidden));
    ops_->AddRmsNorm(x_dev.get(), delta_dev.get(), weight_dev.get(), n, hidden, 1e-5f, out.get());
    std::vector<float> residual = x;
    kernels::AddRmsNormCpu(residual.data(), delta.data(), weight.data(), n, hidden, 1e-5f,
                           want.data());
    EXPECT_LT(RelativeError(Download(out, n * hidden), want), Tolerance()) << n << "x" << hidden;
    EXPECT_LT(RelativeError(Download(x_dev, n * hidden), residual), Tolerance());
  }
}

TEST_P(CudaOpsTest, RopeMatchesCpuAtLargePositions) {
  for (auto [q_heads, kv_heads, head_dim] :
       {std::tuple{4, 2, 64}, std::tuple{2, 2, 128}, std::tuple{3, 1, 16}}) {
    const int64_t n = 9;
    const int64_t k_offset = q_heads * head_dim;
    const int64_t stride = (q_heads + 2 * kv_heads) * head_dim;
    const auto qkv = Random(n * stride);
    std::uniform_int_distribution<int32_t> position(0, 5000);
    StepPlan plan;
    plan.seqs.push_back({.q_start = 0, .q_len = static_cast<int32_t>(n), .context_len = 5001});
    for (int64_t i = 0; i < n; ++i) {
      plan.tokens.push_back(0);
      plan.positions.push_back(position(rng_));
    }
    std::vector<float> inv_freq(head_dim / 2);
    for (int64_t i = 0; i < head_dim / 2; ++i) {
      inv_freq[i] = 1.0f / std::pow(10000.0f, static_cast<float>(2 * i) / head_dim);
    }
    auto freq_dev = ops_->UploadFloat32(inv_freq);
    ASSERT_TRUE(freq_dev.ok()) << freq_dev.status();
    const Buffer qkv_dev = Upload(qkv);
    Begin(plan);
    ops_->Rope(qkv_dev.get(), plan, freq_dev->get(), stride, q_heads, kv_heads, k_offset, head_dim);
    std::vector<float> want = qkv;
    kernels::RopeCpu(want.data(), plan.positions.data(), inv_freq.data(), n, stride, q_heads,
                     kv_heads, k_offset, head_dim);
    EXPECT_LT(RelativeError(Download(qkv_dev, n * stride), want), Tolerance())
        << q_heads << "/" << kv_heads << " heads of " << head_dim;
  }
}

TEST_P(CudaOpsTest, SiluMulMatchesCpu) {
  for (auto [n, inter] : {std::pair{3, 45}, std::pair{5, 1024}}) {
    const auto gate_up = Random(n * 2 * inter, 2.0f);
    const Buffer in = Upload(gate_up), out = Upload(NaNs(n * inter));
    ops_->SiluMul(in.get(), n, inter, out.get());
    std::vector<float> want(n * inter);
    kernels::SiluMulCpu(gate_up.data(), n, inter, want.data());
    EXPECT_LT(RelativeError(Download(out, n * inter), want), Tolerance()) << n << "x" << inter;
  }
}

TEST_P(CudaOpsTest, EmbeddingAndLogitRowGatherCopyExactRows) {
  for (int64_t hidden : {72, 45}) {
    const int64_t vocab = 50;
    const auto table = Random(vocab * hidden);
    StepPlan plan;
    std::uniform_int_distribution<int32_t> token(0, vocab - 1);
    for (int i = 0; i < 11; ++i) {
      plan.tokens.push_back(token(rng_));
      plan.positions.push_back(i);
    }
    plan.seqs.push_back({.q_start = 0, .q_len = 6, .context_len = 6});
    plan.seqs.push_back({.q_start = 6, .q_len = 5, .context_len = 9});
    plan.logit_rows = {5, 10};
    const Buffer table_dev = Upload(table), out = Upload(NaNs(11 * hidden));
    Begin(plan);
    ops_->Embedding(plan, table_dev.get(), hidden, out.get());
    const std::vector<float> got = Download(out, 11 * hidden);
    for (int i = 0; i < 11; ++i) {
      ASSERT_EQ(std::vector<float>(got.begin() + i * hidden, got.begin() + (i + 1) * hidden),
                std::vector<float>(table.begin() + plan.tokens[i] * hidden,
                                   table.begin() + (plan.tokens[i] + 1) * hidden))
          << "row " << i;
    }
    const Buffer rows = Upload(NaNs(2 * hidden));
    ops_->GatherLogitRows(out.get(), plan, hidden, rows.get());
    const std::vector<float> gathered = Download(rows, 2 * hidden);
    for (int r = 0; r < 2; ++r) {
      EXPECT_EQ(
          std::vector<float>(gathered.begin() + r * hidden, gathered.begin() + (r + 1) * hidden),
          std::vector<float>(got.begin() + plan.logit_rows[r] * hidden,
                             got.begin() + (plan.logit_rows[r] + 1) * hidden));
    }
  }
}

TEST_P(CudaOpsTest, BeginStepRejectsInconsistentPlans) {
  StepPlan plan;
  plan.tokens = {1, 2, 3};
  plan.positions = {0, 1, 2};
  plan.seqs.push_back({.q_start = 0, .q_len = 2, .context_len = 2});
  absl::Status status = ops_->BeginStep(plan);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("cover 2 of its 3 tokens"), std::string::npos) << status;
  plan.seqs.push_back({.q_start = 2, .q_len = 1, .context_len = 1});
  plan.logit_rows = {3};
  status = ops_->BeginStep(plan);
  EXPECT_NE(status.message().find("logit row 3"), std::string::npos) << status;
  plan.logit_rows = {2};
  EXPECT_TRUE(ops_->BeginStep(plan).ok());
}

// KV append and attention over a paged pool: a first step appends each sequence's history, a
// second appends its new tokens and attends. Same steps on the CPU reference (fp32 pool).
struct AttentionCase {
  int64_t q_heads, kv_heads, head_dim;
  bool tiled_prefill;
  std::vector<std::pair<int32_t, int32_t>> seqs;  // (history tokens, new tokens)
  std::string name;
};
void PrintTo(const AttentionCase& c, std::ostream* os) { *os << c.name; }

class CudaAttentionTest : public CudaOpsFixture,
                          public ::testing::WithParamInterface<std::tuple<AttentionCase, DType>> {
 protected:
  void SetUp() override { StartOps(std::get<1>(GetParam())); }
};

TEST_P(CudaAttentionTest, KvAppendAndAttentionMatchCpu) {
  const AttentionCase& c = std::get<0>(GetParam());
  ops_->SetKernelChoices({.tiled_prefill_attention = c.tiled_prefill});
  const int64_t layers = 2, layer = 1, block_bytes = 4096;
  const int64_t gpu_tokens_per_block = block_bytes / (2 * c.head_dim * 2);
  const int64_t cpu_tokens_per_block = block_bytes / (2 * c.head_dim * 4);
  std::vector<int64_t> lengths;
  for (auto [history, fresh] : c.seqs) lengths.push_back(history + fresh);
  const int64_t gpu_blocks =
      PagedSequences::BlocksFor(lengths, gpu_tokens_per_block, layers * c.kv_heads);
  const int64_t cpu_blocks =
      PagedSequences::BlocksFor(lengths, cpu_tokens_per_block, layers * c.kv_heads);
  PagedSequences gpu_seqs(gpu_tokens_per_block, layers, c.kv_heads, gpu_blocks, 7);
  PagedSequences cpu_seqs(cpu_tokens_per_block, layers, c.kv_heads, cpu_blocks, 7);
  // Every slot starts as NaN: reading a K/V row nothing wrote poisons the output.
  const Buffer gpu_pool = Upload(NaNs(gpu_blocks * block_bytes / 2));
  std::vector<float> cpu_pool(cpu_blocks * block_bytes / 4, 0.0f);
  const kernels::PagedKv gpu_kv{.pool = gpu_pool.get(),
                                .block_bytes = block_bytes,
                                .tokens_per_block = gpu_tokens_per_block,
                                .head_dim = c.head_dim,
                                .num_layers = layers,
                                .num_kv_heads = c.kv_heads};
  kernels::PagedKv cpu_kv = gpu_kv;
  cpu_kv.pool = cpu_pool.data();
  cpu_kv.tokens_per_block = cpu_tokens_per_block;

  const int64_t stride = (c.q_heads + 2 * c.kv_heads) * c.head_dim;
  const int64_t k_offset = c.q_heads * c.head_dim;
  const int64_t v_offset = k_offset + c.kv_heads * c.head_dim;
  const float scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  for (int step = 0; step < 2; ++step) {
    StepPlan gpu_plan, cpu_plan;
    for (size_t s = 0; s < c.seqs.size(); ++s) {
      if (step == 0) {
        gpu_seqs.AddSequence();
        cpu_seqs.AddSequence();
      }
      const int32_t count = step == 0 ? c.seqs[s].first : c.seqs[s].second;
      if (count == 0) continue;
      const std::vector<int32_t> tokens(count, 0);
      gpu_seqs.AddToPlan(static_cast<int>(s), tokens, false, &gpu_plan);
      cpu_seqs.AddToPlan(static_cast<int>(s), tokens, false, &cpu_plan);
    }
    const int64_t n = gpu_plan.num_tokens();
    if (n == 0) continue;
    const auto qkv = Random(n * stride);
    const Buffer qkv_dev = Upload(qkv);
    Begin(gpu_plan);
    ops_->KvAppend(qkv_dev.get(), gpu_plan, stride, k_offset, v_offset, layer, gpu_kv);
    kernels::KvAppendCpu(qkv.data(), cpu_plan.seqs.data(), cpu_plan.num_seqs(),
                         cpu_plan.block_tables.data(), stride, k_offset, v_offset, layer, cpu_kv);
    if (step == 0) continue;
    const Buffer out = Upload(NaNs(n * c.q_heads * c.head_dim));
    ops_->Attention(qkv_dev.get(), gpu_plan, stride, c.q_heads, layer, scale, gpu_kv, out.get());
    std::vector<float> want(n * c.q_heads * c.head_dim);
    kernels::PagedAttentionCpu(qkv.data(), cpu_plan.seqs.data(), cpu_plan.num_seqs(),
                               cpu_plan.block_tables.data(), stride, c.q_heads, layer, scale,
                               cpu_kv, want.data());
    const std::vector<float> got = Download(out, n * c.q_heads * c.head_dim);
    EXPECT_LT(RelativeError(got, want), Tolerance());
    // Row by row, so a wrong sequence or position shows by itself.
    const int64_t width = c.q_heads * c.head_dim;
    for (int64_t r = 0; r < n; ++r) {
      EXPECT_LT(RelativeError(std::span(got).subspan(r * width, width),
                              std::span(want).subspan(r * width, width)),
                2 * Tolerance())
          << "row " << r;
    }
  }

  // Every appended K/V row sits where the layout says, bit for bit.
  const std::vector<float> pool = Download(gpu_pool, gpu_blocks * block_bytes / 2);
  for (size_t s = 0; s < c.seqs.size(); ++s) {
    const int32_t* gpu_table = gpu_seqs.table(static_cast<int>(s)).data();
    const int32_t* cpu_table = cpu_seqs.table(static_cast<int>(s)).data();
    for (int64_t t = 0; t < gpu_seqs.length(static_cast<int>(s)); ++t) {
      for (int64_t h = 0; h < c.kv_heads; ++h) {
        for (bool value : {false, true}) {
          const int64_t token_block = t / gpu_tokens_per_block;
          const int32_t block = gpu_table[(token_block * layers + layer) * c.kv_heads + h];
          const int64_t row = (value ? gpu_tokens_per_block : 0) + t % gpu_tokens_per_block;
          const float* got = pool.data() + block * block_bytes / 2 + row * c.head_dim;
          const float* want = kernels::KvRow(cpu_kv, cpu_table, layer, h, t, value);
          ASSERT_EQ(std::memcmp(got, want, c.head_dim * sizeof(float)), 0)
              << "seq " << s << " token " << t << " head " << h << (value ? " V" : " K");
        }
      }
    }
  }
}

const std::vector<std::pair<int32_t, int32_t>> kDecodeSeqs = {{0, 1}, {36, 1}, {299, 1}, {1023, 1}};
const std::vector<std::pair<int32_t, int32_t>> kPrefillSeqs = {
    {0, 70}, {30, 33}, {5, 1}, {100, 130}};

INSTANTIATE_TEST_SUITE_P(DTypes, CudaOpsTest, ::testing::ValuesIn(kDTypes), DTypeParamName);

INSTANTIATE_TEST_SUITE_P(
    Shapes, CudaAttentionTest,
    ::testing::Combine(
        ::testing::Values(AttentionCase{8, 2, 64, true, kDecodeSeqs, "decode_gqa4_d64"},
                          AttentionCase{4, 4, 128, true, kDecodeSeqs, "decode_mha_d128"},
                          AttentionCase{4, 1, 256, true, kDecodeSeqs, "decode_gqa4_d256"},
                          AttentionCase{8, 2, 64, true, kPrefillSeqs, "prefill_tiled_gqa4_d64"},
                          AttentionCase{4, 4, 128, true, kPrefillSeqs, "prefill_tiled_mha_d128"},
                          AttentionCase{6, 2, 128, true, {{0, 300}}, "prefill_tiled_long_d128"},
                          AttentionCase{4, 4, 128, false, kPrefillSeqs, "prefill_rows_mha_d128"},
                          AttentionCase{4, 1, 256, true, kPrefillSeqs, "prefill_rows_gqa4_d256"}),
        ::testing::ValuesIn(kDTypes)),
    [](const ::testing::TestParamInfo<std::tuple<AttentionCase, DType>>& info) {
      return std::get<0>(info.param).name + "_" + std::string(DTypeName(std::get<1>(info.param)));
    });

}  // namespace
}  // namespace muxserve::engine
