// Tensor parallelism on the CPU backend: ranks on threads joined by the in-process communicator
// give the unsharded model's logits, step after step through the paged KV cache.
#include <cmath>
#include <span>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "muxserve/engine/transformer.h"
#include "muxserve/kvcache/head_block_pool.h"
#include "muxserve/runtime/communicator.h"
#include "test_models.h"

namespace muxserve::engine {
namespace {

constexpr int64_t kTokensPerBlock = 4;
constexpr int64_t kNumBlocks = 512;

// One rank: its backend, its shard of the model and its own KV memory. Block ids are the same on
// every rank (one table per sequence), each rank's blocks hold its own KV heads.
struct Rank {
  std::unique_ptr<Ops> ops;
  std::unique_ptr<Transformer> transformer;
  Buffer kv_memory;
  kernels::PagedKv kv;
};

// The model split over `tp` ranks (tp == 1: unsharded, no communicator).
class Group {
 public:
  Group(const model::ModelSpec& spec, const model::Weights& weights, int tp) {
    if (tp > 1) comms_ = runtime::MakeInProcessCommunicators(tp);
    auto shard = ShardSpec(spec, tp);
    EXPECT_TRUE(shard.ok()) << shard.status();
    shard_ = *shard;
    const int64_t block_bytes = 2 * kTokensPerBlock * spec.head_dim * 4;
    for (int r = 0; r < tp; ++r) {
      Rank rank;
      rank.ops = MakeCpuOps(1);
      auto transformer = Transformer::Load(spec, weights, rank.ops.get(), 16, 4,
                                           tp > 1 ? comms_[r].get() : nullptr);
      EXPECT_TRUE(transformer.ok()) << transformer.status();
      if (!transformer.ok()) return;
      rank.transformer = std::move(*transformer);
      rank.kv_memory = *rank.ops->Allocate(kNumBlocks * block_bytes);
      rank.kv = {.pool = rank.kv_memory.get(), .block_bytes = block_bytes,
                 .tokens_per_block = kTokensPerBlock, .head_dim = spec.head_dim,
                 .num_layers = spec.num_layers, .num_kv_heads = shard_.num_kv_heads};
      ranks_.push_back(std::move(rank));
    }
  }

  const model::ModelSpec& shard() const { return shard_; }

  // Runs one step on every rank at once; returns rank 0's logits and checks that every rank
  // computed the same ones.
  std::vector<float> Step(const StepPlan& plan) {
    std::vector<std::vector<float>> logits(ranks_.size());
    std::vector<absl::Status> status(ranks_.size());
    std::vector<std::thread> threads;
    for (size_t r = 0; r < ranks_.size(); ++r) {
      threads.emplace_back([&, r] {
        status[r] = ranks_[r].transformer->Forward(plan, ranks_[r].kv, &logits[r]);
      });
    }
    for (std::thread& t : threads) t.join();
    for (size_t r = 0; r < ranks_.size(); ++r) {
      EXPECT_TRUE(status[r].ok()) << "rank " << r << ": " << status[r];
      EXPECT_EQ(logits[r], logits[0]) << "rank " << r << " disagrees with rank 0";
    }
    return logits[0];
  }

 private:
  std::vector<std::unique_ptr<runtime::Communicator>> comms_;
  model::ModelSpec shard_;
  std::vector<Rank> ranks_;
};

double RelativeError(const std::vector<float>& got, const std::vector<float>& want) {
  double diff = 0, norm = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    diff += (double{got[i]} - want[i]) * (double{got[i]} - want[i]);
    norm += double{want[i]} * want[i];
  }
  return std::sqrt(diff / norm);
}

// Two sequences: a 9-token prompt prefilled in chunks of 5 and 4 beside a 3-token prompt, then
// three decode steps of both. Every step's logits from each tp against tp = 1.
std::vector<std::vector<float>> RunSteps(Group& group, const model::ModelSpec& shard) {
  kvcache::HeadBlockPool pool(kNumBlocks, 2 * kTokensPerBlock * shard.head_dim * 4,
                              DTypeSize(DType::kFloat32));
  const kvcache::KvShape shape{shard.num_layers, shard.num_kv_heads, shard.head_dim};
  const int id = pool.RegisterLlm("m", shape, 1);
  const std::vector<std::vector<int32_t>> prompts = {{5, 77, 12, 200, 31, 9, 150, 151, 3},
                                                     {64, 250, 18}};
  std::vector<kvcache::BlockTable> tables;
  for (size_t s = 0; s < prompts.size(); ++s) {
    tables.emplace_back(shape);
    EXPECT_TRUE(pool.Allocate(id, 4 * shape.blocks_per_token_block(), tables.back().mutable_ids())
                    .ok());
  }
  const int32_t table_size = static_cast<int32_t>(tables[0].ids().size());
  std::vector<int32_t> done(prompts.size(), 0);
  std::vector<std::vector<float>> out;
  // Each step: how many new tokens of each sequence (0: not in the step).
  const std::vector<std::vector<int32_t>> steps = {{5, 3}, {4, 0}, {1, 1}, {1, 1}, {1, 1}};
  for (const std::vector<int32_t>& step : steps) {
    StepPlan plan;
    for (size_t s = 0; s < prompts.size(); ++s) {
      if (step[s] == 0) continue;
      const int32_t q_start = static_cast<int32_t>(plan.tokens.size());
      for (int32_t i = 0; i < step[s]; ++i) {
        const int32_t position = done[s] + i;
        // Past the prompt, a fixed stand-in for the sampled token keeps every tp on one path.
        const int32_t token = position < static_cast<int32_t>(prompts[s].size())
                                  ? prompts[s][position]
                                  : (position * 37 + static_cast<int32_t>(s)) % 300;
        plan.tokens.push_back(token);
        plan.positions.push_back(position);
      }
      done[s] += step[s];
      plan.seqs.push_back({.q_start = q_start, .q_len = step[s], .context_len = done[s],
                           .table_offset = static_cast<int32_t>(plan.block_tables.size())});
      plan.block_tables.insert(plan.block_tables.end(), tables[s].ids().begin(),
                               tables[s].ids().begin() + table_size);
      plan.logit_rows.push_back(q_start + step[s] - 1);
    }
    out.push_back(group.Step(plan));
  }
  return out;
}

struct Case {
  const char* name;
  model::ModelSpec spec;
};

std::vector<Case> Cases() {
  // 2 KV heads: split at tp 2, replicated at tp 4.
  const model::ModelSpec gqa = testing::TinySpec(2, 128, 8, 2, 192);
  model::ModelSpec bias = testing::TinySpec(2, 64, 4, 4, 128);
  bias.qkv_bias = true;
  bias.tie_word_embeddings = true;
  return {{"mha", testing::TinySpec(2, 64, 4, 4, 160)}, {"gqa", gqa}, {"qkv_bias_tied", bias}};
}

class TensorParallelTest : public ::testing::TestWithParam<int> {};

TEST_P(TensorParallelTest, ShardsGiveTheUnshardedLogits) {
  const Case c = Cases()[GetParam()];
  const auto dir = testing::WriteTinyModel(std::string("tp_") + c.name, c.spec, 11);
  auto weights = model::Weights::Load(dir, c.spec);
  ASSERT_TRUE(weights.ok()) << weights.status();
  Group whole(c.spec, **weights, 1);
  const std::vector<std::vector<float>> want = RunSteps(whole, whole.shard());
  for (int tp : {2, 4}) {
    Group group(c.spec, **weights, tp);
    const std::vector<std::vector<float>> got = RunSteps(group, group.shard());
    ASSERT_EQ(got.size(), want.size());
    for (size_t step = 0; step < want.size(); ++step) {
      EXPECT_LT(RelativeError(got[step], want[step]), 1e-5)
          << c.name << " tp " << tp << " step " << step;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, TensorParallelTest, ::testing::Values(0, 1, 2),
                         [](const auto& info) { return std::string(Cases()[info.param].name); });

// Synthetic weights drawn at load time: each rank's slices are those of the whole tensors.
TEST(TensorParallelRandomWeightsTest, ShardsOfDrawnWeightsGiveTheUnshardedLogits) {
  const model::ModelSpec spec = testing::TinySpec(2, 64, 4, 2, 128);
  auto weights = model::Weights::Random(spec, 5);
  ASSERT_TRUE(weights.ok()) << weights.status();
  Group whole(spec, **weights, 1);
  Group sharded(spec, **weights, 2);
  const auto want = RunSteps(whole, whole.shard());
  const auto got = RunSteps(sharded, sharded.shard());
  for (size_t step = 0; step < want.size(); ++step) {
    EXPECT_LT(RelativeError(got[step], want[step]), 1e-5) << "step " << step;
  }
}

TEST(WeightSliceTest, CpuLoadsRowAndColumnRangesAndRefusesOutOfRange) {
  const std::vector<float> values = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};  // [3, 4]
  const model::TensorInfo tensor{.dtype = DType::kFloat32, .shape = {3, 4},
                                 .data = std::as_bytes(std::span<const float>(values))};
  auto ops = MakeCpuOps(1);
  const WeightSlice parts[] = {{.tensor = &tensor, .row_begin = 1, .rows = 1},
                               {.tensor = &tensor, .col_begin = 2, .cols = 2}};
  auto buffer = ops->LoadWeight(parts);
  ASSERT_TRUE(buffer.ok()) << buffer.status();
  const float* got = buffer->as<float>();
  EXPECT_EQ(std::vector<float>(got, got + 10),
            (std::vector<float>{4, 5, 6, 7, 2, 3, 6, 7, 10, 11}));
  const WeightSlice outside{.tensor = &tensor, .col_begin = 3, .cols = 2};
  auto refused = ops->LoadWeight({&outside, 1});
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(refused.status().message().find("outside a tensor of 3 x 4"), std::string::npos);
}

TEST(ShardSpecTest, SplitsHeadsAndMlpAndReplicatesFewKvHeads) {
  const model::ModelSpec spec = testing::TinySpec(2, 128, 8, 2, 192);
  auto two = ShardSpec(spec, 2);
  ASSERT_TRUE(two.ok()) << two.status();
  EXPECT_EQ(two->num_heads, 4);
  EXPECT_EQ(two->num_kv_heads, 1);
  EXPECT_EQ(two->intermediate_size, 96);
  EXPECT_EQ(two->hidden_size, 128);
  auto eight = ShardSpec(spec, 8);
  ASSERT_TRUE(eight.ok()) << eight.status();
  EXPECT_EQ(eight->num_heads, 1);
  EXPECT_EQ(eight->num_kv_heads, 1);  // each of the 2 KV heads on 4 ranks
}

TEST(ShardSpecTest, RefusesWhatDoesNotDivideNamingTheDimension) {
  const model::ModelSpec spec = testing::TinySpec(2, 96, 6, 3, 200);
  auto four = ShardSpec(spec, 4);
  ASSERT_FALSE(four.ok());
  EXPECT_EQ(four.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(four.status().message().find("num_attention_heads"), std::string::npos);
  model::ModelSpec kv = testing::TinySpec(2, 128, 8, 3, 192);
  kv.head_dim = 16;
  auto two = ShardSpec(kv, 2);
  ASSERT_FALSE(two.ok());
  EXPECT_NE(two.status().message().find("num_key_value_heads"), std::string::npos);
  auto mlp = ShardSpec(testing::TinySpec(2, 64, 4, 4, 130), 4);
  ASSERT_FALSE(mlp.ok());
  EXPECT_NE(mlp.status().message().find("intermediate_size"), std::string::npos);
  EXPECT_FALSE(ShardSpec(spec, 0).ok());
}

}  // namespace
}  // namespace muxserve::engine
