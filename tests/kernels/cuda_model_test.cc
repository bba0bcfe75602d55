// The whole model on the CUDA backend, in bf16 and in fp16, against the CPU backend, on
// synthetic models with weights of that dtype (so both read the same numbers): Transformer
// logits through prefill chunks and decode steps, and greedy tokens through UnitEngine. Skipped
// without a CUDA device.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <optional>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "gpu_test_util.h"
#include "gtest/gtest.h"
#include "muxserve/engine/cuda_ops.h"
#include "muxserve/engine/transformer.h"
#include "muxserve/engine/unit_engine.h"
#include "muxserve/model/synthetic.h"
#include "muxserve/model/tokenizer.h"
#include "muxserve/model/weights.h"

namespace muxserve::engine {
namespace {

using ::muxserve::testing::PagedSequences;
using ::muxserve::testing::RelativeError;
using ::muxserve::testing::SmallSpec;
using ::muxserve::testing::TokenCollector;

constexpr int64_t kBlockBytes = 16384;
const DType kDTypes[] = {DType::kBFloat16, DType::kFloat16};

// Logits of the whole model: activations rounded to the dtype at every layer move them by ~1e-2
// of their scale in bf16, several times less in fp16 (three more mantissa bits).
double LogitTolerance(DType dtype) { return dtype == DType::kFloat16 ? 1e-2 : 2e-2; }

// Writes `spec` with weights of its dtype.
std::filesystem::path WriteModel(const std::string& name, const model::ModelSpec& spec) {
  const std::filesystem::path dir =
      std::filesystem::path(::testing::TempDir()) /
      ("muxserve_cuda_" + name + "_" + std::string(DTypeName(spec.dtype)));
  std::filesystem::remove_all(dir);
  const absl::Status status =
      model::WriteSyntheticModel(dir, {.spec = spec, .seed = 5, .weight_dtype = spec.dtype});
  EXPECT_TRUE(status.ok()) << status;
  return dir;
}

int32_t ArgMax(std::span<const float> logits) {
  return static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
}

// Top-1 minus top-2 logit.
float Margin(std::span<const float> logits) {
  std::vector<float> sorted(logits.begin(), logits.end());
  std::partial_sort(sorted.begin(), sorted.begin() + 2, sorted.end(), std::greater<float>());
  return sorted[0] - sorted[1];
}

std::vector<int32_t> RandomPrompt(int n, std::mt19937& rng) {
  std::uniform_int_distribution<int32_t> token(3, 255);
  std::vector<int32_t> prompt(n);
  for (int32_t& t : prompt) t = token(rng);
  return prompt;
}

// One backend running a model over its own pool.
struct Backend {
  std::unique_ptr<Ops> ops;
  std::unique_ptr<Transformer> transformer;
  Buffer pool;
  kernels::PagedKv kv;
  std::optional<PagedSequences> seqs;

  void Init(std::unique_ptr<Ops> backend_ops, const model::ModelSpec& spec,
            const model::Weights& weights, int64_t max_tokens_per_seq, int num_seqs) {
    ops = std::move(backend_ops);
    auto loaded = Transformer::Load(spec, weights, ops.get(), 256, 8);
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    transformer = std::move(*loaded);
    const int64_t tokens_per_block =
        kBlockBytes / (2 * spec.head_dim * static_cast<int64_t>(DTypeSize(ops->dtype())));
    const std::vector<int64_t> lengths(num_seqs, max_tokens_per_seq);
    const int64_t blocks =
        PagedSequences::BlocksFor(lengths, tokens_per_block, spec.num_layers * spec.num_kv_heads);
    auto memory = ops->Allocate(blocks * kBlockBytes);
    ASSERT_TRUE(memory.ok()) << memory.status();
    pool = *memory;
    kv = {.pool = pool.get(),
          .block_bytes = kBlockBytes,
          .tokens_per_block = tokens_per_block,
          .head_dim = spec.head_dim,
          .num_layers = spec.num_layers,
          .num_kv_heads = spec.num_kv_heads};
    seqs.emplace(tokens_per_block, spec.num_layers, spec.num_kv_heads, blocks, 3);
    for (int s = 0; s < num_seqs; ++s) seqs->AddSequence();
  }
};

struct ModelCase {
  std::string name;
  model::ModelSpec spec;
};
void PrintTo(const ModelCase& c, std::ostream* os) { *os << c.name; }

class CudaTransformerTest : public ::testing::TestWithParam<std::tuple<ModelCase, DType>> {};

// Three sequences: a 40-token prompt whole, a 200-token prompt in chunks of 130 and 70 (the
// second with a 9-token prompt), then decode steps of all three fed the CPU's greedy tokens.
TEST_P(CudaTransformerTest, LogitsMatchCpuBackendThroughChunksAndDecode) {
  if (!::muxserve::testing::HaveCudaDevice()) GTEST_SKIP() << "no CUDA device";
  const auto& [c, dtype] = GetParam();
  model::ModelSpec spec = c.spec;
  spec.dtype = dtype;
  const std::filesystem::path dir = WriteModel(c.name, spec);
  auto weights = model::Weights::Load(dir, spec);
  ASSERT_TRUE(weights.ok()) << weights.status();
  auto cuda = MakeCudaOps({.dtype = dtype, .kernels = {}});
  ASSERT_TRUE(cuda.ok()) << cuda.status();
  // The same kernels without graphs: a replayed decode step must give the very same bits.
  auto cuda_plain = MakeCudaOps({.dtype = dtype, .kernels = {.decode_graphs = false}});
  ASSERT_TRUE(cuda_plain.ok()) << cuda_plain.status();
  Backend cpu, gpu, gpu_plain;
  ASSERT_NO_FATAL_FAILURE(cpu.Init(MakeCpuOps(2), spec, **weights, 272, 3));
  ASSERT_NO_FATAL_FAILURE(gpu.Init(std::move(*cuda), spec, **weights, 272, 3));
  ASSERT_NO_FATAL_FAILURE(gpu_plain.Init(std::move(*cuda_plain), spec, **weights, 272, 3));

  std::mt19937 rng(17);
  const std::vector<std::vector<int32_t>> prompts = {RandomPrompt(40, rng), RandomPrompt(200, rng),
                                                     RandomPrompt(9, rng)};
  struct Part {
    int seq, begin, end;
  };
  const std::vector<std::vector<Part>> prefill_steps = {{{0, 0, 40}, {1, 0, 130}},
                                                        {{1, 130, 200}, {2, 0, 9}}};
  std::vector<int32_t> next(3, -1);
  int agreeing_top1 = 0, rows_compared = 0;
  auto run = [&](const std::vector<std::pair<int, std::vector<int32_t>>>& parts,
                 const std::vector<bool>& logits_of) {
    StepPlan cpu_plan, gpu_plan, plain_plan;
    std::vector<int> sampled;
    for (size_t i = 0; i < parts.size(); ++i) {
      cpu.seqs->AddToPlan(parts[i].first, parts[i].second, logits_of[i], &cpu_plan);
      gpu.seqs->AddToPlan(parts[i].first, parts[i].second, logits_of[i], &gpu_plan);
      gpu_plain.seqs->AddToPlan(parts[i].first, parts[i].second, logits_of[i], &plain_plan);
      if (logits_of[i]) sampled.push_back(parts[i].first);
    }
    std::vector<float> cpu_logits, gpu_logits, plain_logits;
    absl::Status status = cpu.transformer->Forward(cpu_plan, cpu.kv, &cpu_logits);
    ASSERT_TRUE(status.ok()) << status;
    status = gpu.transformer->Forward(gpu_plan, gpu.kv, &gpu_logits);
    ASSERT_TRUE(status.ok()) << status;
    status = gpu_plain.transformer->Forward(plain_plan, gpu_plain.kv, &plain_logits);
    ASSERT_TRUE(status.ok()) << status;
    ASSERT_EQ(gpu_logits.size(), cpu_logits.size());
    EXPECT_TRUE(gpu_logits == plain_logits)
        << "graph replay changed the logits of a step of " << cpu_plan.num_tokens() << " tokens";
    EXPECT_LT(RelativeError(gpu_logits, cpu_logits), LogitTolerance(dtype))
        << "step of " << cpu_plan.num_tokens() << " tokens";
    const int64_t vocab = spec.vocab_size;
    for (size_t r = 0; r < sampled.size(); ++r) {
      const std::span<const float> cpu_row(cpu_logits.data() + r * vocab, vocab);
      const std::span<const float> gpu_row(gpu_logits.data() + r * vocab, vocab);
      next[sampled[r]] = ArgMax(cpu_row);
      agreeing_top1 += ArgMax(gpu_row) == next[sampled[r]];
      ++rows_compared;
    }
  };
  for (const std::vector<Part>& step : prefill_steps) {
    std::vector<std::pair<int, std::vector<int32_t>>> parts;
    std::vector<bool> logits_of;
    for (const Part& part : step) {
      const std::vector<int32_t>& prompt = prompts[part.seq];
      parts.emplace_back(
          part.seq, std::vector<int32_t>(prompt.begin() + part.begin, prompt.begin() + part.end));
      logits_of.push_back(part.end == static_cast<int>(prompt.size()));
    }
    ASSERT_NO_FATAL_FAILURE(run(parts, logits_of));
  }
  // Enough decode steps to replay a graph many times and to cross a 256-token context (a new
  // graph with other attention splits).
  for (int step = 0; step < 60; ++step) {
    std::vector<std::pair<int, std::vector<int32_t>>> parts;
    for (int s = 0; s < 3; ++s) parts.emplace_back(s, std::vector<int32_t>{next[s]});
    ASSERT_NO_FATAL_FAILURE(run(parts, {true, true, true}));
  }
  // Logits of std ~16 (the synthetic lm_head scale) leave 16-bit rounding far from most margins.
  EXPECT_GE(agreeing_top1, rows_compared * 95 / 100) << agreeing_top1 << " of " << rows_compared;
}

INSTANTIATE_TEST_SUITE_P(
    Models, CudaTransformerTest,
    ::testing::Combine(
        ::testing::Values(ModelCase{"llama_gqa_d64", SmallSpec(2, 256, 4, 2, 688, false)},
                          ModelCase{"qwen_bias_d128", SmallSpec(2, 256, 2, 1, 512, true)}),
        ::testing::ValuesIn(kDTypes)),
    [](const ::testing::TestParamInfo<std::tuple<ModelCase, DType>>& info) {
      return std::get<0>(info.param).name + "_" + std::string(DTypeName(std::get<1>(info.param)));
    });

// Greedy tokens of both backends through the whole engine (scheduler, chunked prefill, pool).
// 16-bit activations move logits by up to ~1e-2 of their scale, so a flip is only acceptable at
// a near-tie of the CPU's own logits; that is checked by recomputing them on the CPU.
class CudaUnitEngineTest : public ::testing::TestWithParam<DType> {};

TEST_P(CudaUnitEngineTest, GreedyTokensMatchCpuBackend) {
  if (!::muxserve::testing::HaveCudaDevice()) GTEST_SKIP() << "no CUDA device";
  const model::ModelSpec spec = SmallSpec(2, 256, 4, 2, 688, false, GetParam());
  const std::filesystem::path dir = WriteModel("engine_llama", spec);
  std::mt19937 rng(29);
  const std::vector<std::vector<int32_t>> prompts = {RandomPrompt(23, rng), RandomPrompt(70, rng)};
  constexpr int kTokens = 32;
  std::vector<std::vector<int32_t>> outputs[2];
  for (int b = 0; b < 2; ++b) {
    UnitOptions options;
    options.backend = b == 0 ? config::Backend::kCpu : config::Backend::kCuda;
    options.cpu_threads = 2;
    options.kv_cache = {.memory_bytes = 32 << 20, .block_bytes = kBlockBytes};
    auto engine = UnitEngine::Create(options, nullptr);
    ASSERT_TRUE(engine.ok()) << engine.status();
    auto tokenizer = model::Tokenizer::Load(dir);
    ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
    const absl::Status added = (*engine)->AddLlm({.name = "tiny",
                                                  .model_dir = dir,
                                                  .spec = spec,
                                                  .tokenizer = std::move(*tokenizer),
                                                  .dtype = b == 0 ? DType::kFloat32 : spec.dtype,
                                                  .max_context = 256});
    ASSERT_TRUE(added.ok()) << added;
    std::vector<std::shared_ptr<TokenCollector>> sinks;
    for (const std::vector<int32_t>& prompt : prompts) {
      sinks.push_back(std::make_shared<TokenCollector>());
      Request request;
      request.model = "tiny";
      request.prompt_tokens = prompt;
      request.sampling = {.max_tokens = kTokens, .temperature = 0, .ignore_eos = true};
      request.sink = sinks.back();
      ASSERT_TRUE((*engine)->Submit(std::move(request)).ok());
    }
    for (auto& sink : sinks) outputs[b].push_back(sink->Wait());
  }

  auto weights = model::Weights::Load(dir, spec);
  ASSERT_TRUE(weights.ok()) << weights.status();
  for (size_t p = 0; p < prompts.size(); ++p) {
    const std::vector<int32_t>& cpu = outputs[0][p];
    const std::vector<int32_t>& gpu = outputs[1][p];
    ASSERT_EQ(cpu.size(), static_cast<size_t>(kTokens));
    ASSERT_EQ(gpu.size(), static_cast<size_t>(kTokens));
    const auto mismatch = std::mismatch(cpu.begin(), cpu.end(), gpu.begin());
    if (mismatch.first == cpu.end()) continue;
    // The CPU's logits where the two first differ.
    const size_t at = mismatch.first - cpu.begin();
    Backend reference;
    ASSERT_NO_FATAL_FAILURE(reference.Init(MakeCpuOps(2), spec, **weights, 128, 1));
    std::vector<int32_t> context = prompts[p];
    context.insert(context.end(), cpu.begin(), cpu.begin() + at);
    StepPlan plan;
    reference.seqs->AddToPlan(0, context, true, &plan);
    std::vector<float> logits;
    ASSERT_TRUE(reference.transformer->Forward(plan, reference.kv, &logits).ok());
    const float margin = Margin(logits);
    EXPECT_LT(margin, 0.5f) << "prompt " << p << ": greedy tokens differ at " << at
                            << " where the CPU's top-2 margin is " << margin;
    std::printf("prompt %zu: backends agree on %zu of %d tokens; near-tie (margin %.3f) at %zu\n",
                p, at, kTokens, margin, at);
  }
}

INSTANTIATE_TEST_SUITE_P(DTypes, CudaUnitEngineTest, ::testing::ValuesIn(kDTypes),
                         [](const ::testing::TestParamInfo<DType>& info) {
                           return std::string(DTypeName(info.param));
                         });

}  // namespace
}  // namespace muxserve::engine
