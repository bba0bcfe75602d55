#include "muxserve/engine/scheduler.h"

#include <algorithm>
#include <optional>

namespace muxserve::engine {

int64_t TokenBlocksFor(int64_t tokens, int64_t tokens_per_block) {
  return (tokens + tokens_per_block - 1) / tokens_per_block;
}

namespace {

class BatchScheduler final : public Scheduler {
 public:
  explicit BatchScheduler(const config::SchedulerConfig& config) : config_(config) {}

  void Next(std::vector<LlmQueues>& llms, kvcache::HeadBlockPool& pool, std::vector<Job>* jobs,
            std::vector<int64_t>* preemptions) override {
    jobs->clear();
    const int n = static_cast<int>(llms.size());
    if (n == 0) return;
    llms_ = &llms;
    switch (config_.mode) {
      case config::SchedulerMode::kMuxserve:
        AdaptQuotas(pool);
        NextMuxserve(llms, pool, jobs, preemptions);
        break;
      case config::SchedulerMode::kTemporal:
        AdaptQuotas(pool);
        NextTemporal(llms, pool, jobs, preemptions);
        break;
      case config::SchedulerMode::kSpatial:
        NextSpatial(llms, pool, jobs, preemptions);
        break;
    }
    next_first_ = (next_first_ + 1) % n;
  }

 private:
  void NextMuxserve(std::vector<LlmQueues>& llms, kvcache::HeadBlockPool& pool,
                    std::vector<Job>* jobs, std::vector<int64_t>* preemptions) {
    const int n = static_cast<int>(llms.size());
    const bool prefill_running = std::any_of(llms.begin(), llms.end(), [](const LlmQueues& q) {
      return q.prefill_in_flight;
    });
    if (!prefill_running) {
      for (int i = 0; i < n; ++i) {
        const int llm = (next_prefill_ + i) % n;
        Job job;
        if (PlanPrefill(llm, llms[llm], pool, /*may_borrow=*/true, &job)) {
          jobs->push_back(std::move(job));
          next_prefill_ = (llm + 1) % n;  // the next prefill starts with the LLM after this one
          break;
        }
      }
    }
    for (int i = 0; i < n; ++i) {
      const int llm = (next_first_ + i) % n;
      if (llms[llm].decode_in_flight) continue;
      Job job;
      if (PlanDecode(llm, llms[llm], pool, /*may_borrow=*/true, &job, &(*preemptions)[llm])) {
        jobs->push_back(std::move(job));
      }
    }
  }

  void NextTemporal(std::vector<LlmQueues>& llms, kvcache::HeadBlockPool& pool,
                    std::vector<Job>* jobs, std::vector<int64_t>* preemptions) {
    for (const LlmQueues& q : llms) {
      if (q.prefill_in_flight || q.decode_in_flight) return;
    }
    // Candidates in the order their work became ready.
    struct Candidate {
      SteadyTime ready;
      bool prefill;
      int llm;
    };
    std::vector<Candidate> candidates;
    for (int llm = 0; llm < static_cast<int>(llms.size()); ++llm) {
      const LlmQueues& q = llms[llm];
      if (!q.waiting.empty()) candidates.push_back({q.waiting.front()->request.arrival, true, llm});
      if (!q.running.empty()) {
        SteadyTime ready = SteadyTime::max();
        for (const Sequence* seq : q.running) {
          ready = std::min(ready, seq->last_token_at.value_or(seq->request.arrival));
        }
        candidates.push_back({ready, false, llm});
      }
    }
    std::stable_sort(candidates.begin(), candidates.end(),
                     [](const Candidate& a, const Candidate& b) {
                       return a.ready != b.ready ? a.ready < b.ready : a.prefill && !b.prefill;
                     });
    for (const Candidate& c : candidates) {
      Job job;
      const bool planned =
          c.prefill ? PlanPrefill(c.llm, llms[c.llm], pool, /*may_borrow=*/true, &job)
                    : PlanDecode(c.llm, llms[c.llm], pool, /*may_borrow=*/true, &job,
                                 &(*preemptions)[c.llm]);
      if (planned) {
        jobs->push_back(std::move(job));
        return;
      }
    }
  }

  void NextSpatial(std::vector<LlmQueues>& llms, kvcache::HeadBlockPool& pool,
                   std::vector<Job>* jobs, std::vector<int64_t>* preemptions) {
    for (int llm = 0; llm < static_cast<int>(llms.size()); ++llm) {
      LlmQueues& q = llms[llm];
      if (q.prefill_in_flight || q.decode_in_flight) continue;
      Job job;
      if (PlanPrefill(llm, q, pool, /*may_borrow=*/false, &job) ||
          PlanDecode(llm, q, pool, /*may_borrow=*/false, &job, &(*preemptions)[llm])) {
        jobs->push_back(std::move(job));
      }
    }
  }

  // Head blocks `seq` still needs to hold its first `tokens` tokens.
  static int64_t HeadBlocksNeeded(const Sequence* seq, int64_t tokens, int64_t tokens_per_block) {
    const int64_t need = TokenBlocksFor(tokens, tokens_per_block) - seq->blocks.num_token_blocks();
    return need <= 0 ? 0 : need * seq->blocks.per_token_block();
  }

  // What each LLM wants now: what it holds, a token block more for each running sequence, and
  // the prompts (and first token) of its waiting sequences.
  void AdaptQuotas(kvcache::HeadBlockPool& pool) {
    demand_.assign(llms_->size(), 0);
    for (size_t i = 0; i < llms_->size(); ++i) {
      const LlmQueues& q = (*llms_)[i];
      int64_t want = pool.used(q.pool_id);
      for (const Sequence* seq : q.running) want += seq->blocks.per_token_block();
      for (const Sequence* seq : q.waiting) {
        want += HeadBlocksNeeded(seq, static_cast<int64_t>(seq->tokens.size()) + 1,
                                 q.tokens_per_block);
        if (want >= pool.num_blocks()) break;
      }
      demand_[i] = std::min(want, pool.num_blocks());
    }
    pool.AdaptQuotas(demand_);
  }

  // Free blocks held back for LLMs below their quota whose next waiting sequence cannot start:
  // what they are owed is reclaimed from borrowers, so a quiet LLM is never starved by busy ones.
  int64_t OwedToOthers(const kvcache::HeadBlockPool& pool, int self) const {
    int64_t owed = 0;
    for (int i = 0; i < static_cast<int>(llms_->size()); ++i) {
      const LlmQueues& other = (*llms_)[i];
      if (i == self || other.waiting.empty() || other.prefill_in_flight) continue;
      const Sequence* head = other.waiting.front();
      const int64_t chunk = std::min<int64_t>(head->num_uncomputed(), config_.max_prefill_tokens);
      const int64_t need =
          HeadBlocksNeeded(head, head->num_computed + chunk, other.tokens_per_block);
      // Owed when its quota would admit it (one that holds nothing may always start one).
      const int64_t used = pool.used(other.pool_id);
      if (used == 0 || used + need <= pool.quota(other.pool_id)) owed += need;
    }
    return owed;
  }

  // Reserves blocks so `seq` can hold `tokens` tokens. Within the quota an LLM takes any free
  // block; beyond it (borrowing, unless `within_quota`) only blocks no other LLM is owed.
  bool Reserve(Sequence* seq, int64_t tokens, int llm, const LlmQueues& q,
               kvcache::HeadBlockPool& pool, bool within_quota) const {
    const int64_t head_blocks = HeadBlocksNeeded(seq, tokens, q.tokens_per_block);
    if (head_blocks == 0) return true;
    if (head_blocks > pool.free_blocks()) return false;
    const int64_t used = pool.used(q.pool_id);
    if (used + head_blocks > pool.quota(q.pool_id)) {
      // An LLM holding nothing may always start one sequence, so a small quota never starves it.
      if (within_quota && used > 0) return false;
      if (used > 0 && head_blocks > pool.free_blocks() - OwedToOthers(pool, llm)) return false;
    }
    return pool.Allocate(q.pool_id, head_blocks, seq->blocks.mutable_ids()).ok();
  }

  bool PlanPrefill(int llm, LlmQueues& q, kvcache::HeadBlockPool& pool, bool may_borrow,
                   Job* job) {
    if (q.prefill_in_flight) return false;
    job->llm = llm;
    job->phase = JobPhase::kPrefill;
    job->entries.clear();
    int64_t budget = config_.max_prefill_tokens;
    int64_t batch = static_cast<int64_t>(q.running.size());
    for (Sequence* seq : q.waiting) {
      if (budget <= 0 || batch >= config_.max_batch_size) break;
      const int32_t chunk =
          static_cast<int32_t>(std::min<int64_t>(seq->num_uncomputed(), budget));
      // New sequences are admitted within the quota; a started one finishes its prompt.
      const bool admission = seq->num_computed == 0;
      if (!Reserve(seq, seq->num_computed + chunk, llm, q, pool, admission || !may_borrow)) {
        break;
      }
      job->entries.push_back({seq, chunk});
      budget -= chunk;
      ++batch;
      if (chunk < seq->num_uncomputed()) break;  // a chunked prompt continues next step
    }
    return !job->entries.empty();
  }

  bool PlanDecode(int llm, LlmQueues& q, kvcache::HeadBlockPool& pool, bool may_borrow, Job* job,
                  int64_t* preemptions) {
    if (q.decode_in_flight) return false;
    job->llm = llm;
    job->phase = JobPhase::kDecode;
    job->entries.clear();
    size_t i = 0;
    while (i < q.running.size()) {
      Sequence* seq = q.running[i];
      if (Reserve(seq, seq->num_computed + 1, llm, q, pool, !may_borrow)) {
        job->entries.push_back({seq, 1});
        ++i;
        continue;
      }
      // Out of blocks: preempt the youngest running sequence (recomputed later), possibly
      // this one, and try again.
      Sequence* victim = q.running.back();
      q.running.pop_back();
      pool.Free(q.pool_id, victim->blocks.ids());
      victim->blocks.mutable_ids()->clear();
      victim->recompute_tokens = std::max(victim->recompute_tokens, victim->num_computed);
      victim->num_computed = 0;
      q.waiting.push_front(victim);
      ++*preemptions;
      // Victims come from the back, so none of them was planned already.
      if (victim == seq) break;
    }
    return !job->entries.empty();
  }

  config::SchedulerConfig config_;
  int next_first_ = 0;
  int next_prefill_ = 0;
  std::vector<int64_t> demand_;
  const std::vector<LlmQueues>* llms_ = nullptr;  // the queues of the step being planned
};

}  // namespace

std::unique_ptr<Scheduler> MakeScheduler(const config::SchedulerConfig& config) {
  return std::make_unique<BatchScheduler>(config);
}

}  // namespace muxserve::engine
