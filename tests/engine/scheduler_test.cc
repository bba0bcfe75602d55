#include "muxserve/engine/scheduler.h"

#include <memory>
#include <vector>

#include "gtest/gtest.h"
#include "muxserve/common/dtype.h"

namespace muxserve::engine {
namespace {

const kvcache::KvShape kShape{.num_layers = 1, .num_kv_heads = 1, .head_dim = 8};

class SchedulerTest : public ::testing::Test {
 protected:
  // Two LLMs with equal quotas over a pool of 40 blocks of 4 tokens.
  SchedulerTest() : pool_(40, 1024, DTypeSize(DType::kFloat32)) {
    for (int i = 0; i < 2; ++i) {
      LlmQueues q;
      q.pool_id = pool_.RegisterLlm(i == 0 ? "busy" : "quiet", kShape, 1.0);
      q.tokens_per_block = 4;
      queues_.push_back(q);
    }
    pool_.RebalanceQuotas();
  }

  Sequence* NewSequence(int llm, int prompt_tokens) {
    Request request;
    request.prompt_tokens.assign(prompt_tokens, 5);
    request.arrival = SteadyTime(std::chrono::seconds(static_cast<int>(owned_.size())));
    owned_.push_back(std::make_unique<Sequence>(std::move(request), llm, kShape, nullptr));
    return owned_.back().get();
  }

  // A running sequence of `llm` whose 16 tokens fill 4 blocks and whose next token needs a 5th.
  Sequence* Running(int llm) {
    Sequence* seq = NewSequence(llm, 17);
    EXPECT_TRUE(pool_.Allocate(queues_[llm].pool_id, 4, seq->blocks.mutable_ids()).ok());
    seq->num_computed = 16;
    queues_[llm].running.push_back(seq);
    return seq;
  }

  kvcache::HeadBlockPool pool_;
  std::vector<LlmQueues> queues_;
  std::vector<std::unique_ptr<Sequence>> owned_;
  std::vector<Job> jobs_;
  std::vector<int64_t> preemptions_ = {0, 0};
};

TEST_F(SchedulerTest, PrefillFirstThenDecodeForEveryLlm) {
  auto scheduler = MakeScheduler({.mode = config::SchedulerMode::kMuxserve});
  Running(0);
  Sequence* fresh = NewSequence(1, 6);
  queues_[1].waiting.push_back(fresh);
  scheduler->Next(queues_, pool_, &jobs_, &preemptions_);
  ASSERT_EQ(jobs_.size(), 2u);
  EXPECT_EQ(jobs_[0].phase, JobPhase::kPrefill);
  EXPECT_EQ(jobs_[0].llm, 1);
  EXPECT_EQ(jobs_[0].entries[0].num_tokens, 6);
  EXPECT_EQ(fresh->blocks.num_token_blocks(), 2);
  EXPECT_EQ(jobs_[1].phase, JobPhase::kDecode);
  EXPECT_EQ(jobs_[1].llm, 0);
}

TEST_F(SchedulerTest, TemporalModeRunsOneJobPerStep) {
  auto scheduler = MakeScheduler({.mode = config::SchedulerMode::kTemporal});
  Running(0);
  queues_[1].waiting.push_back(NewSequence(1, 6));
  scheduler->Next(queues_, pool_, &jobs_, &preemptions_);
  EXPECT_EQ(jobs_.size(), 1u);
}

TEST_F(SchedulerTest, LongPromptsArePrefilledInChunksWithinTheBudget) {
  auto scheduler = MakeScheduler({.mode = config::SchedulerMode::kMuxserve,
                                  .max_prefill_tokens = 8});
  Sequence* longer = NewSequence(0, 20);
  queues_[0].waiting.push_back(longer);
  scheduler->Next(queues_, pool_, &jobs_, &preemptions_);
  ASSERT_EQ(jobs_.size(), 1u);
  EXPECT_EQ(jobs_[0].entries[0].num_tokens, 8);
  EXPECT_EQ(longer->blocks.num_token_blocks(), 2);
}

// The busy LLM has borrowed the whole pool; the quiet one's first request must not wait for
// the busy one's requests to end: the busy one is preempted back to its quota.
TEST_F(SchedulerTest, BorrowedBlocksAreReclaimedForAnLlmWithinItsQuota) {
  auto scheduler = MakeScheduler({.mode = config::SchedulerMode::kMuxserve});
  for (int i = 0; i < 10; ++i) Running(0);
  ASSERT_EQ(pool_.free_blocks(), 0);
  Sequence* quiet = NewSequence(1, 8);
  queues_[1].waiting.push_back(quiet);
  bool admitted = false;
  for (int step = 0; step < 3 && !admitted; ++step) {
    scheduler->Next(queues_, pool_, &jobs_, &preemptions_);
    for (const Job& job : jobs_) {
      if (job.llm == 1 && job.phase == JobPhase::kPrefill) admitted = true;
      // The planner's jobs are not run here: decode entries are advanced by hand.
      for (const JobEntry& e : job.entries) {
        if (job.phase == JobPhase::kDecode) e.seq->num_computed += e.num_tokens;
      }
    }
  }
  EXPECT_TRUE(admitted);
  EXPECT_GT(preemptions_[0], 0);
  EXPECT_EQ(preemptions_[1], 0);
}

TEST_F(SchedulerTest, SpatialModeNeverBorrows) {
  auto scheduler = MakeScheduler({.mode = config::SchedulerMode::kSpatial});
  for (int i = 0; i < 5; ++i) Running(0);  // 20 blocks: exactly the quota
  scheduler->Next(queues_, pool_, &jobs_, &preemptions_);
  EXPECT_LE(pool_.used(queues_[0].pool_id), pool_.quota(queues_[0].pool_id));
  EXPECT_GT(preemptions_[0], 0);
  EXPECT_EQ(pool_.free_blocks(), 20);  // the other LLM's share stays free
}

TEST_F(SchedulerTest, MuxserveRunsOnePrefillAtATimeNextToDecodes) {
  auto scheduler = MakeScheduler({.mode = config::SchedulerMode::kMuxserve});
  Running(0);
  Running(1);
  queues_[0].waiting.push_back(NewSequence(0, 6));
  queues_[1].waiting.push_back(NewSequence(1, 6));
  queues_[1].prefill_in_flight = true;  // LLM 1's prefill runs: no second prefill starts
  queues_[0].decode_in_flight = true;   // LLM 0's decode runs: its sequences stay put
  scheduler->Next(queues_, pool_, &jobs_, &preemptions_);
  ASSERT_EQ(jobs_.size(), 1u);
  EXPECT_EQ(jobs_[0].llm, 1);
  EXPECT_EQ(jobs_[0].phase, JobPhase::kDecode);

  queues_[1].prefill_in_flight = false;
  scheduler->Next(queues_, pool_, &jobs_, &preemptions_);
  int prefills = 0;
  for (const Job& job : jobs_) prefills += job.phase == JobPhase::kPrefill;
  EXPECT_EQ(prefills, 1);
}

TEST_F(SchedulerTest, TemporalModeServesTheLongestWaitingWorkFirst) {
  auto scheduler = MakeScheduler({.mode = config::SchedulerMode::kTemporal});
  Sequence* running = Running(0);                 // arrived at t=0
  running->last_token_at = SteadyTime(std::chrono::seconds(10));  // ready for decode since t=10
  queues_[1].waiting.push_back(NewSequence(1, 6));  // arrived at t=1
  scheduler->Next(queues_, pool_, &jobs_, &preemptions_);
  ASSERT_EQ(jobs_.size(), 1u);
  EXPECT_EQ(jobs_[0].llm, 1);
  EXPECT_EQ(jobs_[0].phase, JobPhase::kPrefill);

  // While any job runs, nothing else starts.
  queues_[1].prefill_in_flight = true;
  scheduler->Next(queues_, pool_, &jobs_, &preemptions_);
  EXPECT_TRUE(jobs_.empty());
}

TEST_F(SchedulerTest, SpatialModeRunsEveryLlmOnItsOwnOneJobAtATime) {
  auto scheduler = MakeScheduler({.mode = config::SchedulerMode::kSpatial});
  Running(0);
  queues_[0].waiting.push_back(NewSequence(0, 6));
  Running(1);
  scheduler->Next(queues_, pool_, &jobs_, &preemptions_);
  ASSERT_EQ(jobs_.size(), 2u);
  EXPECT_EQ(jobs_[0].llm, 0);
  EXPECT_EQ(jobs_[0].phase, JobPhase::kPrefill);  // prefill first, its decode waits
  EXPECT_EQ(jobs_[1].llm, 1);
  EXPECT_EQ(jobs_[1].phase, JobPhase::kDecode);
}

TEST_F(SchedulerTest, AnIdleLlmLendsItsQuotaAndGetsItBackOnDemand) {
  auto scheduler = MakeScheduler({.mode = config::SchedulerMode::kMuxserve});
  for (int i = 0; i < 15; ++i) queues_[0].waiting.push_back(NewSequence(0, 8));
  scheduler->Next(queues_, pool_, &jobs_, &preemptions_);
  ASSERT_EQ(jobs_.size(), 1u);
  EXPECT_EQ(jobs_[0].entries.size(), 15u);  // 30 blocks: beyond the base quota of 20
  EXPECT_GT(pool_.quota(0), pool_.base_quota(0));
  EXPECT_EQ(pool_.quota(1), 0);
  EXPECT_EQ(pool_.used(0), 30);

  Sequence* quiet = NewSequence(1, 8);
  queues_[1].waiting.push_back(quiet);
  scheduler->Next(queues_, pool_, &jobs_, &preemptions_);
  EXPECT_GE(pool_.quota(1), 3);  // what it wants (prompt and first token), within its base
  EXPECT_EQ(quiet->blocks.num_token_blocks(), 2);
  EXPECT_EQ(preemptions_[0], 0);
}

TEST_F(SchedulerTest, AReclaimWaitsForBorrowersInsteadOfPreemptingThem) {
  auto scheduler = MakeScheduler({.mode = config::SchedulerMode::kMuxserve});
  std::vector<Sequence*> busy;
  for (int i = 0; i < 10; ++i) {
    Sequence* seq = Running(0);
    seq->num_computed = 14;  // two more tokens fit its 4 blocks
    busy.push_back(seq);
  }
  ASSERT_EQ(pool_.free_blocks(), 0);
  Sequence* quiet = NewSequence(1, 8);
  queues_[1].waiting.push_back(quiet);
  Sequence* more_busy = NewSequence(0, 4);
  queues_[0].waiting.push_back(more_busy);
  scheduler->Next(queues_, pool_, &jobs_, &preemptions_);
  EXPECT_EQ(preemptions_[0], 0);
  ASSERT_EQ(jobs_.size(), 1u);
  EXPECT_EQ(jobs_[0].phase, JobPhase::kDecode);
  EXPECT_EQ(jobs_[0].entries.size(), 10u);

  // One borrower ends: the quiet LLM starts within the next steps, and still nobody running
  // is preempted.
  pool_.Free(queues_[0].pool_id, busy.back()->blocks.ids());
  busy.back()->blocks.mutable_ids()->clear();
  queues_[0].running.pop_back();
  for (int step = 0; step < 2 && quiet->blocks.num_token_blocks() == 0; ++step) {
    scheduler->Next(queues_, pool_, &jobs_, &preemptions_);
  }
  EXPECT_EQ(quiet->blocks.num_token_blocks(), 2);
  EXPECT_EQ(preemptions_[0], 0);
}

}  // namespace
}  // namespace muxserve::engine
