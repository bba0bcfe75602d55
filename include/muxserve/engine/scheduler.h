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
  // Jobs of this LLM still running: their sequences are not planned again until they end.
  bool prefill_in_flight = false;
  bool decode_in_flight = false;
};

class Scheduler {
 public:
  virtual ~Scheduler() = default;
  // Plans the jobs to start now, next to those in flight, and reserves their blocks in `pool`.
  // Sequences it preempts (only of LLMs with no job in flight) are moved from running to the
  // front of waiting, their blocks freed; `*preemptions` counts them per LLM.
  virtual void Next(std::vector<LlmQueues>& llms, kvcache::HeadBlockPool& pool,
                    std::vector<Job>* jobs, std::vector<int64_t>* preemptions) = 0;
};

// At most one prefill and one decode job of an LLM are in flight at a time.
// kMuxserve (ADBS): prefill jobs first, one in flight on the unit at a time, round-robin over
//   LLMs, FCFS within one, within a prompt-token budget and the LLM's KV quota; a decode job for
//   every other LLM with running sequences, next to it. Quotas adapt every step (under-used LLMs
//   lend to busy ones) and decode may borrow free blocks no other LLM is owed.
// kTemporal: one job in flight on the unit; FCFS across LLMs: the job whose work has waited
//   longest (a prompt since its arrival, a decode since its sequences' last token) goes next,
//   prefill first on a tie. The KV pool is shared as in kMuxserve.
// kSpatial: every LLM on its own, one job in flight per LLM (prefill first), its KV quota fixed
//   and never exceeded.
std::unique_ptr<Scheduler> MakeScheduler(const config::SchedulerConfig& config);

// Blocks a sequence needs so that its first `tokens` tokens have a place.
int64_t TokenBlocksFor(int64_t tokens, int64_t tokens_per_block);

}  // namespace muxserve::engine
