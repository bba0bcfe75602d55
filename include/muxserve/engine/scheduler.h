// Decides which jobs run in the next step of a unit. A job is one LLM's prefill (prompt tokens,
// possibly a chunk of a long prompt) or decode (one token for each running sequence). The
// scheduler also reserves the KV blocks its jobs need, preempting when the pool runs out.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <vector>

#include "muxserve/config/config.h"
#include "muxserve/engine/sequence.h"
#include "muxserve/kvcache/head_block_pool.h"

namespace muxserve::engine {

enum class JobPhase { kPrefill, kDecode };

struct JobEntry {
  Sequence* seq;
  int32_t num_tokens;  // new tokens this step: a prompt chunk, or 1 for decode
};

struct Job {
  int llm = 0;
  JobPhase phase = JobPhase::kPrefill;
  std::vector<JobEntry> entries;
};

// What the scheduler sees of one LLM.
struct LlmQueues {
  int pool_id = 0;
  int64_t tokens_per_block = 0;
  std::deque<Sequence*> waiting;   // FCFS; preempted sequences go back to the front
  std::vector<Sequence*> running;  // in arrival order
};

class Scheduler {
 public:
  virtual ~Scheduler() = default;
  // Fills `jobs` for the next step and reserves their blocks in `pool`. Sequences it preempts
  // are moved from running to the front of waiting, their blocks freed; `*preemptions` counts
  // them per LLM.
  virtual void Next(std::vector<LlmQueues>& llms, kvcache::HeadBlockPool& pool,
                    std::vector<Job>* jobs, std::vector<int64_t>* preemptions) = 0;
};

// kMuxserve: every step, prefill jobs first (round-robin over LLMs, FCFS within one, within a
// prompt-token budget and the LLM's KV quota), then a decode job for every LLM with running
// sequences; decode may borrow free blocks beyond the quota.
// kTemporal: one job per step, round-robin over LLMs, prefill before decode.
// kSpatial: as kMuxserve, but each LLM stays inside its quota (no borrowing).
std::unique_ptr<Scheduler> MakeScheduler(const config::SchedulerConfig& config);

// Blocks a sequence needs so that its first `tokens` tokens have a place.
int64_t TokenBlocksFor(int64_t tokens, int64_t tokens_per_block);

}  // namespace muxserve::engine
