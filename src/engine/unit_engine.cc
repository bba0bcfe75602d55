#include "muxserve/engine/unit_engine.h"

#include <algorithm>
#include <deque>
#include <thread>
#include <unordered_map>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "muxserve/common/status.h"
#include "muxserve/engine/ops.h"
#if MUXSERVE_WITH_CUDA
#include "muxserve/engine/cuda_ops.h"
#endif
#include "muxserve/engine/sampler.h"
#include "muxserve/engine/scheduler.h"
#include "muxserve/engine/sequence.h"
#include "muxserve/engine/transformer.h"
#include "muxserve/kvcache/head_block_pool.h"
#include "muxserve/model/weights.h"
#include "spdlog/spdlog.h"

namespace muxserve::engine {

// An LLM as the loop owns it.
struct LoadedLlm {
  LlmSetup setup;
  std::unique_ptr<Transformer> transformer;
  kvcache::KvShape kv_shape;
  std::vector<float> logits;  // host logits of the last step, reused
};

// What Submit needs to know about an LLM, readable from any thread.
struct LlmEntry {
  int index = 0;
  model::ModelSpec spec;
  int64_t max_context = 0;
  int64_t tokens_per_block = 0;
  int64_t blocks_per_token_block = 0;
  std::shared_ptr<const model::Tokenizer> tokenizer;
  std::atomic<int64_t> queued{0};  // submitted, no first token yet
};

class UnitEngine::Impl {
 public:
  Impl(const UnitOptions& options, EngineObserver* observer, std::unique_ptr<Ops> ops,
       Buffer pool_memory, int64_t num_blocks)
      : options_(options),
        observer_(observer != nullptr ? observer : &null_observer_),
        ops_(std::move(ops)),
        pool_memory_(std::move(pool_memory)),
        pool_(num_blocks, options.kv_cache.block_bytes, ops_->dtype()),
        scheduler_(MakeScheduler(options.scheduler)) {
    loop_ = std::thread([this] { Loop(); });
  }

  ~Impl() {
    {
      absl::MutexLock lock(&mu_);
      stopping_ = true;
      abort_all_ = true;
    }
    loop_.join();
  }

  absl::Status AddLlm(const LlmSetup& setup);
  absl::Status Submit(Request request);
  void Drain(Duration grace);
  std::vector<LlmStats> Stats() const {
    absl::MutexLock lock(&stats_mu_);
    return stats_;
  }
  const std::string& name() const { return options_.name; }

 private:
  void Loop();
  // Moves newly added LLMs and submitted requests into the loop's own state.
  bool Intake();
  void ExpireAndCancel();
  void RunJob(const Job& job);
  void EmitToken(Sequence* seq, int32_t token, SteadyTime now, std::vector<double>* gaps);
  // Ends a request: frees its blocks, sends what it still holds and calls OnFinish. With
  // `flush_text`, text held back for UTF-8 or stop-string matching is sent first.
  void Finish(Sequence* seq, FinishReason reason, absl::Status error = absl::OkStatus(),
              bool flush_text = false);
  void PublishStats();
  bool HasWork() const;

  class NullObserver final : public EngineObserver {
   public:
    void OnFirstToken(const std::string&, int32_t, double, double) override {}
    void OnTokens(const std::string&, std::span<const double>) override {}
    void OnFinished(const std::string&, FinishReason, double) override {}
    void OnLlmState(const std::string&, int64_t, int64_t, double) override {}
  };

  const UnitOptions options_;
  NullObserver null_observer_;
  EngineObserver* observer_;
  std::unique_ptr<Ops> ops_;
  Buffer pool_memory_;

  // Shared with Submit/AddLlm/Drain.
  mutable absl::Mutex mu_;
  std::unordered_map<std::string, std::shared_ptr<LlmEntry>> entries_ ABSL_GUARDED_BY(mu_);
  std::vector<std::unique_ptr<LoadedLlm>> pending_llms_ ABSL_GUARDED_BY(mu_);
  std::vector<std::unique_ptr<Sequence>> inbox_ ABSL_GUARDED_BY(mu_);
  int64_t in_flight_ ABSL_GUARDED_BY(mu_) = 0;  // accepted, not yet finished
  bool draining_ ABSL_GUARDED_BY(mu_) = false;
  bool abort_all_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;

  // Owned by the loop thread.
  kvcache::HeadBlockPool pool_;
  std::unique_ptr<Scheduler> scheduler_;
  std::vector<std::unique_ptr<LoadedLlm>> llms_;
  std::vector<LlmQueues> queues_;
  std::vector<LlmStats> loop_stats_;
  std::vector<std::shared_ptr<LlmEntry>> loop_entries_;
  std::vector<std::unique_ptr<Sequence>> sequences_;
  std::vector<Job> jobs_;
  std::vector<int64_t> preemptions_;
  Sampler sampler_;
  StepPlan plan_;

  mutable absl::Mutex stats_mu_;
  std::vector<LlmStats> stats_ ABSL_GUARDED_BY(stats_mu_);

  std::thread loop_;
};

absl::Status UnitEngine::Impl::AddLlm(const LlmSetup& setup) {
  {
    absl::MutexLock lock(&mu_);
    if (entries_.contains(setup.name)) {
      return absl::AlreadyExistsError(absl::StrCat("model '", setup.name, "' is already loaded"));
    }
  }
  const int64_t tokens_per_block = pool_.TokensPerBlock(setup.spec.head_dim);
  if (tokens_per_block < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("model '", setup.name, "': head_dim ", setup.spec.head_dim,
                     " does not fit a KV block of ", pool_.block_bytes(), " bytes"));
  }
  ASSIGN_OR_RETURN(std::unique_ptr<model::Weights> weights,
                   model::Weights::Load(setup.model_dir, setup.spec));
  const int64_t max_step_tokens =
      std::max(options_.scheduler.max_prefill_tokens, options_.scheduler.max_batch_size);
  auto llm = std::make_unique<LoadedLlm>();
  llm->setup = setup;
  if (llm->setup.max_context <= 0) llm->setup.max_context = setup.spec.max_position_embeddings;
  ASSIGN_OR_RETURN(llm->transformer,
                   Transformer::Load(setup.spec, *weights, ops_.get(), max_step_tokens,
                                     options_.scheduler.max_batch_size));
  llm->kv_shape = {.num_layers = setup.spec.num_layers,
                   .num_kv_heads = setup.spec.num_kv_heads,
                   .head_dim = setup.spec.head_dim};
  auto entry = std::make_shared<LlmEntry>();
  entry->spec = setup.spec;
  entry->max_context = llm->setup.max_context;
  entry->tokens_per_block = tokens_per_block;
  entry->blocks_per_token_block = llm->kv_shape.blocks_per_token_block();
  entry->tokenizer = setup.tokenizer;
  spdlog::info("unit {}: model '{}' loaded ({} MB of weights, {} layers, KV {} tokens/block)",
               options_.name, setup.name, llm->transformer->weight_bytes() >> 20,
               setup.spec.num_layers, tokens_per_block);
  absl::MutexLock lock(&mu_);
  entry->index = static_cast<int>(entries_.size());
  entries_[setup.name] = entry;
  pending_llms_.push_back(std::move(llm));
  return absl::OkStatus();
}

absl::Status UnitEngine::Impl::Submit(Request request) {
  std::shared_ptr<LlmEntry> entry;
  {
    absl::MutexLock lock(&mu_);
    if (draining_ || stopping_) return absl::UnavailableError("the server is shutting down");
    auto it = entries_.find(request.model);
    if (it == entries_.end()) {
      return absl::NotFoundError(
          absl::StrCat("model '", request.model, "' is not served by ", options_.name));
    }
    entry = it->second;
  }
  if (request.sink == nullptr) return absl::InvalidArgumentError("request has no result sink");
  RETURN_IF_ERROR(ValidateRequest(request, entry->spec, entry->max_context));
  const int64_t tokens = static_cast<int64_t>(request.prompt_tokens.size()) +
                         request.sampling.max_tokens;
  const int64_t head_blocks =
      TokenBlocksFor(tokens, entry->tokens_per_block) * entry->blocks_per_token_block;
  if (head_blocks > pool_.num_blocks()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "max_tokens: prompt and max_tokens need ", head_blocks,
        " KV head blocks, more than the whole pool of ", pool_.num_blocks()));
  }
  if (entry->queued.fetch_add(1) >= options_.max_queued_requests) {
    entry->queued.fetch_sub(1);
    return absl::ResourceExhaustedError(
        absl::StrCat("model '", request.model, "' has ", options_.max_queued_requests,
                     " requests queued; try again later"));
  }
  if (request.arrival == SteadyTime{}) request.arrival = options_.clock->Now();
  const kvcache::KvShape shape{.num_layers = entry->spec.num_layers,
                               .num_kv_heads = entry->spec.num_kv_heads,
                               .head_dim = entry->spec.head_dim};
  auto seq = std::make_unique<Sequence>(std::move(request), entry->index, shape,
                                        entry->tokenizer.get());
  absl::MutexLock lock(&mu_);
  inbox_.push_back(std::move(seq));
  ++in_flight_;
  return absl::OkStatus();
}

void UnitEngine::Impl::Drain(Duration grace) {
  const SteadyTime deadline = options_.clock->Now() + grace;
  absl::MutexLock lock(&mu_);
  draining_ = true;
  auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return in_flight_ == 0; };
  while (!idle() && options_.clock->Now() < deadline) {
    mu_.AwaitWithTimeout(absl::Condition(&idle), absl::Milliseconds(20));
  }
  if (!idle()) {
    spdlog::warn("unit {}: aborting {} requests still running after the grace period",
                 options_.name, in_flight_);
    abort_all_ = true;
    mu_.Await(absl::Condition(&idle));
  }
}

bool UnitEngine::Impl::Intake() {
  std::vector<std::unique_ptr<LoadedLlm>> new_llms;
  std::vector<std::unique_ptr<Sequence>> new_seqs;
  bool abort_all = false;
  bool stopping = false;
  {
    absl::MutexLock lock(&mu_);
    auto has_input = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return !inbox_.empty() || !pending_llms_.empty() || abort_all_ || stopping_;
    };
    if (!HasWork()) mu_.AwaitWithTimeout(absl::Condition(&has_input), absl::Milliseconds(50));
    new_llms.swap(pending_llms_);
    new_seqs.swap(inbox_);
    abort_all = abort_all_;
    stopping = stopping_;
    if (!new_llms.empty()) {
      for (auto& [name, entry] : entries_) {
        if (entry->index >= static_cast<int>(loop_entries_.size())) {
          loop_entries_.resize(entry->index + 1);
        }
        loop_entries_[entry->index] = entry;
      }
    }
  }
  for (auto& llm : new_llms) {
    const model::ModelSpec& spec = llm->setup.spec;
    // Quota share: expected rate x KV bytes per token (MuxServe's rule, GQA-aware).
    const double weight = llm->setup.rate * static_cast<double>(spec.KvBytesPerToken(pool_.dtype()));
    LlmQueues queues;
    queues.pool_id = pool_.RegisterLlm(llm->setup.name, llm->kv_shape, weight);
    queues.tokens_per_block = pool_.TokensPerBlock(spec.head_dim);
    queues_.push_back(std::move(queues));
    loop_stats_.push_back(LlmStats{.name = llm->setup.name});
    preemptions_.push_back(0);
    llms_.push_back(std::move(llm));
    pool_.RebalanceQuotas();
  }
  for (auto& seq : new_seqs) {
    queues_[seq->llm].waiting.push_back(seq.get());
    sequences_.push_back(std::move(seq));
  }
  if (abort_all) {
    for (LlmQueues& q : queues_) {
      while (!q.running.empty()) Finish(q.running.back(), FinishReason::kAbort);
      while (!q.waiting.empty()) Finish(q.waiting.back(), FinishReason::kAbort);
    }
  }
  return !stopping;
}

bool UnitEngine::Impl::HasWork() const {
  for (const LlmQueues& q : queues_) {
    if (!q.waiting.empty() || !q.running.empty()) return true;
  }
  return false;
}

void UnitEngine::Impl::ExpireAndCancel() {
  const SteadyTime now = options_.clock->Now();
  std::vector<Sequence*> done;
  for (LlmQueues& q : queues_) {
    for (Sequence* seq : q.waiting) done.push_back(seq);
    for (Sequence* seq : q.running) done.push_back(seq);
  }
  for (Sequence* seq : done) {
    if (seq->request.cancel->IsCancelled()) {
      Finish(seq, FinishReason::kAbort);
    } else if (seq->request.deadline.has_value() && now >= *seq->request.deadline) {
      Finish(seq, FinishReason::kError,
             absl::DeadlineExceededError("the request's deadline passed"));
    }
  }
}

void UnitEngine::Impl::Loop() {
  while (Intake()) {
    ExpireAndCancel();
    scheduler_->Next(queues_, pool_, &jobs_, &preemptions_);
    for (const Job& job : jobs_) RunJob(job);
    PublishStats();
  }
  // Stopping: nothing may be left without its OnFinish.
  for (LlmQueues& q : queues_) {
    while (!q.running.empty()) Finish(q.running.back(), FinishReason::kAbort);
    while (!q.waiting.empty()) Finish(q.waiting.back(), FinishReason::kAbort);
  }
  PublishStats();
}

void UnitEngine::Impl::RunJob(const Job& job) {
  LoadedLlm& llm = *llms_[job.llm];
  LlmQueues& q = queues_[job.llm];
  const SteadyTime started = options_.clock->Now();
  plan_.Clear();
  for (const JobEntry& entry : job.entries) {
    Sequence* seq = entry.seq;
    if (!seq->first_scheduled.has_value()) seq->first_scheduled = started;
    kernels::StepSequence step{
        .q_start = static_cast<int32_t>(plan_.tokens.size()),
        .q_len = entry.num_tokens,
        .context_len = seq->num_computed + entry.num_tokens,
        .table_offset = static_cast<int32_t>(plan_.block_tables.size())};
    for (int32_t i = 0; i < entry.num_tokens; ++i) {
      plan_.tokens.push_back(seq->tokens[seq->num_computed + i]);
      plan_.positions.push_back(seq->num_computed + i);
    }
    plan_.block_tables.insert(plan_.block_tables.end(), seq->blocks.ids().begin(),
                              seq->blocks.ids().end());
    plan_.seqs.push_back(step);
    if (step.context_len == static_cast<int32_t>(seq->tokens.size())) {
      plan_.logit_rows.push_back(step.q_start + step.q_len - 1);
    }
  }
  // A chunk that ends before the prompt does samples nothing; the forward still needs a row.
  const bool sample = !plan_.logit_rows.empty();
  if (!sample) plan_.logit_rows.push_back(static_cast<int32_t>(plan_.tokens.size()) - 1);

  const kernels::PagedKv kv{.pool = pool_memory_.get(),
                            .block_bytes = pool_.block_bytes(),
                            .tokens_per_block = q.tokens_per_block,
                            .head_dim = llm.setup.spec.head_dim,
                            .num_layers = llm.setup.spec.num_layers,
                            .num_kv_heads = llm.setup.spec.num_kv_heads};
  const absl::Status status = llm.transformer->Forward(plan_, kv, &llm.logits);
  if (!status.ok()) {
    spdlog::error("unit {}: model '{}' step failed: {}", options_.name, llm.setup.name,
                  status.ToString());
    for (const JobEntry& entry : job.entries) Finish(entry.seq, FinishReason::kError, status);
    return;
  }
  const SteadyTime now = options_.clock->Now();
  const int64_t vocab = llm.setup.spec.vocab_size;
  std::vector<double> gaps;
  int64_t row = 0;
  for (const JobEntry& entry : job.entries) {
    Sequence* seq = entry.seq;
    seq->num_computed += entry.num_tokens;
    if (seq->num_computed < static_cast<int32_t>(seq->tokens.size())) continue;
    const std::span<const float> logits(llm.logits.data() + row * vocab, vocab);
    ++row;
    if (job.phase == JobPhase::kPrefill) {
      // The prompt (or the recomputation after a preemption) is done: decode from now on.
      q.waiting.erase(std::find(q.waiting.begin(), q.waiting.end(), seq));
      auto pos = std::find_if(q.running.begin(), q.running.end(), [&](const Sequence* other) {
        return other->request.arrival > seq->request.arrival;
      });
      q.running.insert(pos, seq);
    }
    EmitToken(seq, sampler_.Sample(logits, seq->request.sampling, seq->rng), now, &gaps);
  }
  if (!gaps.empty()) observer_->OnTokens(llm.setup.name, gaps);
  loop_stats_[job.llm].preemptions = preemptions_[job.llm];
}

void UnitEngine::Impl::EmitToken(Sequence* seq, int32_t token, SteadyTime now,
                                 std::vector<double>* gaps) {
  LoadedLlm& llm = *llms_[seq->llm];
  LlmStats& stats = loop_stats_[seq->llm];
  const SamplingParams& sampling = seq->request.sampling;
  seq->tokens.push_back(token);
  ++stats.generated_tokens;
  if (!seq->last_token_at.has_value()) {
    stats.prompt_tokens += seq->num_prompt;
    loop_entries_[seq->llm]->queued.fetch_sub(1);
    observer_->OnFirstToken(llm.setup.name, seq->num_prompt,
                            SecondsBetween(seq->request.arrival, now),
                            SecondsBetween(seq->request.arrival, *seq->first_scheduled));
  } else {
    gaps->push_back(SecondsBetween(*seq->last_token_at, now));
  }
  seq->last_token_at = now;
  seq->pending.token_ids.push_back(token);

  bool stopped = false;
  seq->pending.text += seq->stop.Push(seq->decoder.Push(token), &stopped);
  const auto& eos = llm.setup.tokenizer->eos_ids();
  const bool is_eos = !sampling.ignore_eos && std::find(eos.begin(), eos.end(), token) != eos.end();
  const bool is_stop_token = std::find(sampling.stop_token_ids.begin(),
                                       sampling.stop_token_ids.end(),
                                       token) != sampling.stop_token_ids.end();
  if (stopped) {
    Finish(seq, FinishReason::kStop);  // the matched text and anything after it are dropped
  } else if (is_eos || is_stop_token) {
    Finish(seq, FinishReason::kStop, absl::OkStatus(), /*flush_text=*/true);
  } else if (seq->num_generated() >= sampling.max_tokens ||
             static_cast<int64_t>(seq->tokens.size()) >= llm.setup.max_context) {
    Finish(seq, FinishReason::kLength, absl::OkStatus(), /*flush_text=*/true);
  } else if (!seq->pending.text.empty() || !seq->pending.token_ids.empty()) {
    seq->request.sink->OnDelta(std::move(seq->pending));
    seq->pending = StreamDelta{};
  }
}

void UnitEngine::Impl::Finish(Sequence* seq, FinishReason reason, absl::Status error,
                              bool flush_text) {
  LlmQueues& q = queues_[seq->llm];
  pool_.Free(q.pool_id, seq->blocks.ids());
  seq->blocks.mutable_ids()->clear();
  if (auto it = std::find(q.running.begin(), q.running.end(), seq); it != q.running.end()) {
    q.running.erase(it);
  }
  if (auto it = std::find(q.waiting.begin(), q.waiting.end(), seq); it != q.waiting.end()) {
    q.waiting.erase(it);
  }
  if (!seq->last_token_at.has_value()) loop_entries_[seq->llm]->queued.fetch_sub(1);
  if (flush_text) {
    bool stopped = false;
    seq->pending.text += seq->stop.Push(seq->decoder.Flush(), &stopped);
    if (!stopped) seq->pending.text += seq->stop.Flush();
  }
  if (!seq->pending.text.empty() || !seq->pending.token_ids.empty()) {
    seq->request.sink->OnDelta(std::move(seq->pending));
    seq->pending = StreamDelta{};
  }
  ++loop_stats_[seq->llm].requests_finished;
  // Stats first, so whoever the sink wakes sees this request counted as finished.
  PublishStats();
  const std::string& model = llms_[seq->llm]->setup.name;
  observer_->OnFinished(model, reason,
                        SecondsBetween(seq->request.arrival, options_.clock->Now()));
  seq->request.sink->OnFinish(FinishInfo{.reason = reason,
                                         .error = std::move(error),
                                         .prompt_tokens = seq->num_prompt,
                                         .completion_tokens = seq->num_generated()});
  std::erase_if(sequences_, [seq](const auto& owned) { return owned.get() == seq; });
  absl::MutexLock lock(&mu_);
  --in_flight_;
}

void UnitEngine::Impl::PublishStats() {
  for (size_t i = 0; i < llms_.size(); ++i) {
    LlmStats& stats = loop_stats_[i];
    const LlmQueues& q = queues_[i];
    stats.running = static_cast<int64_t>(q.running.size());
    stats.waiting = static_cast<int64_t>(q.waiting.size());
    stats.kv_blocks_used = pool_.used(q.pool_id);
    stats.kv_blocks_quota = pool_.quota(q.pool_id);
    stats.kv_blocks_total = pool_.num_blocks();
    stats.preemptions = preemptions_[i];
    observer_->OnLlmState(stats.name, stats.running, stats.waiting,
                          static_cast<double>(stats.kv_blocks_used) / pool_.num_blocks());
  }
  absl::MutexLock lock(&stats_mu_);
  stats_ = loop_stats_;
}

// --- UnitEngine ----------------------------------------------------------------------------

absl::StatusOr<std::unique_ptr<UnitEngine>> UnitEngine::Create(const UnitOptions& options,
                                                               EngineObserver* observer) {
  std::unique_ptr<Ops> ops;
  if (options.backend == config::Backend::kCpu) {
    ops = MakeCpuOps(options.cpu_threads);
#if MUXSERVE_WITH_CUDA
  } else if (options.backend == config::Backend::kCuda) {
    ASSIGN_OR_RETURN(ops, MakeCudaOps({}));
#endif
  } else {
    return absl::UnimplementedError(
        absl::StrCat("unit ", options.name, ": backend ",
                     AsAbsl(config::BackendName(options.backend)),
                     " is not available in this build; use backend: cpu"));
  }
  const int64_t num_blocks = options.kv_cache.memory_bytes / options.kv_cache.block_bytes;
  if (num_blocks < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("kv_cache.memory (", options.kv_cache.memory_bytes,
                     " bytes) holds no block of ", options.kv_cache.block_bytes, " bytes"));
  }
  ASSIGN_OR_RETURN(Buffer pool_memory, ops->Allocate(num_blocks * options.kv_cache.block_bytes));
  spdlog::info("unit {}: {} backend, KV pool of {} head blocks x {} bytes ({} MB)", options.name,
               config::BackendName(options.backend), num_blocks, options.kv_cache.block_bytes,
               (num_blocks * options.kv_cache.block_bytes) >> 20);
  return std::unique_ptr<UnitEngine>(new UnitEngine(std::make_unique<Impl>(
      options, observer, std::move(ops), std::move(pool_memory), num_blocks)));
}

UnitEngine::UnitEngine(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
UnitEngine::~UnitEngine() = default;
absl::Status UnitEngine::AddLlm(const LlmSetup& setup) { return impl_->AddLlm(setup); }
absl::Status UnitEngine::Submit(Request request) { return impl_->Submit(std::move(request)); }
void UnitEngine::Drain(Duration grace) { impl_->Drain(grace); }
std::vector<LlmStats> UnitEngine::Stats() const { return impl_->Stats(); }
const std::string& UnitEngine::name() const { return impl_->name(); }

}  // namespace muxserve::engine
