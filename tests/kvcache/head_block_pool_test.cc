#include "muxserve/kvcache/head_block_pool.h"

#include <set>

#include "gtest/gtest.h"
#include "muxserve/common/dtype.h"

namespace muxserve::kvcache {
namespace {

TEST(HeadBlockPoolTest, TokensPerBlockFollowFromHeadSize) {
  HeadBlockPool pool(16, 16384, DTypeSize(DType::kBFloat16));
  EXPECT_EQ(pool.TokensPerBlock(64), 64);
  EXPECT_EQ(pool.TokensPerBlock(128), 32);
  EXPECT_EQ(pool.TokensPerBlock(256), 16);
  HeadBlockPool fp32(16, 16384, DTypeSize(DType::kFloat32));
  EXPECT_EQ(fp32.TokensPerBlock(128), 16);
}

TEST(HeadBlockPoolTest, AllocatesDistinctBlocksAndTracksUsagePerLlm) {
  HeadBlockPool pool(10, 1024, DTypeSize(DType::kFloat32));
  const int a = pool.RegisterLlm("a", {.num_layers = 2, .num_kv_heads = 1, .head_dim = 8}, 1.0);
  const int b = pool.RegisterLlm("b", {.num_layers = 1, .num_kv_heads = 2, .head_dim = 16}, 1.0);
  std::vector<int32_t> ids_a, ids_b;
  ASSERT_TRUE(pool.Allocate(a, 4, &ids_a).ok());
  ASSERT_TRUE(pool.Allocate(b, 6, &ids_b).ok());
  std::set<int32_t> all(ids_a.begin(), ids_a.end());
  all.insert(ids_b.begin(), ids_b.end());
  EXPECT_EQ(all.size(), 10u);
  EXPECT_EQ(*all.rbegin(), 9);
  EXPECT_EQ(pool.used(a), 4);
  EXPECT_EQ(pool.used(b), 6);
  EXPECT_EQ(pool.free_blocks(), 0);

  std::vector<int32_t> more;
  const absl::Status full = pool.Allocate(a, 1, &more);
  EXPECT_EQ(full.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(more.empty());

  pool.Free(b, ids_b);
  EXPECT_EQ(pool.used(b), 0);
  EXPECT_EQ(pool.free_blocks(), 6);
  ASSERT_TRUE(pool.Allocate(a, 6, &more).ok());
  EXPECT_EQ(pool.used(a), 10);
}

TEST(HeadBlockPoolTest, QuotasFollowWeights) {
  HeadBlockPool pool(100, 1024, DTypeSize(DType::kFloat32));
  pool.RegisterLlm("hot", {.num_layers = 1, .num_kv_heads = 1, .head_dim = 8}, 3.0);
  pool.RegisterLlm("cold", {.num_layers = 1, .num_kv_heads = 1, .head_dim = 8}, 1.0);
  pool.RebalanceQuotas();
  EXPECT_EQ(pool.quota(0), 75);
  EXPECT_EQ(pool.quota(1), 25);
}

TEST(HeadBlockPoolTest, AdaptedQuotasLendWhatIsIdleAndGiveItBack) {
  HeadBlockPool pool(100, 1024, DTypeSize(DType::kFloat32));
  const KvShape shape{.num_layers = 1, .num_kv_heads = 1, .head_dim = 8};
  pool.RegisterLlm("busy", shape, 1.0);
  pool.RegisterLlm("quiet", shape, 1.0);
  pool.RegisterLlm("idle", shape, 2.0);
  pool.RebalanceQuotas();  // 25, 25, 50
  // busy wants 80, quiet 10, idle nothing: 15 + 50 lent, 55 lacking, all of it given.
  const int64_t demand[] = {80, 10, 0};
  pool.AdaptQuotas(demand);
  EXPECT_EQ(pool.quota(0), 80);
  EXPECT_EQ(pool.quota(1), 10);
  EXPECT_EQ(pool.quota(2), 0);
  EXPECT_EQ(pool.base_quota(2), 50);
  // idle wakes up: its base comes back at once, busy shares what quiet still lends.
  const int64_t later[] = {80, 10, 30};
  pool.AdaptQuotas(later);
  EXPECT_EQ(pool.quota(2), 30);
  EXPECT_EQ(pool.quota(1), 10);
  EXPECT_EQ(pool.quota(0), 25 + 15 + 20);
  // Two that lack more than is lent split it in proportion to what they lack.
  const int64_t both[] = {75, 45, 50};
  pool.AdaptQuotas(both);
  EXPECT_EQ(pool.quota(2), 50);
  EXPECT_EQ(pool.quota(0), 25);
  EXPECT_EQ(pool.quota(1), 25);
}

TEST(BlockTableTest, CountsTokenBlocks) {
  BlockTable table({.num_layers = 3, .num_kv_heads = 2, .head_dim = 64});
  EXPECT_EQ(table.num_token_blocks(), 0);
  table.mutable_ids()->resize(12);
  EXPECT_EQ(table.per_token_block(), 6);
  EXPECT_EQ(table.num_token_blocks(), 2);
}

}  // namespace
}  // namespace muxserve::kvcache
