#include "muxserve/engine/unit_engine.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <deque>
#include <optional>
#include <thread>
#include <unordered_map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "muxserve/common/status.h"
#include "muxserve/engine/ops.h"
#if MUXSERVE_WITH_CUDA
#include "muxserve/engine/cuda_ops.h"
#endif
#include "muxserve/engine/scheduler.h"
#include "muxserve/engine/sequence.h"
#include "muxserve/engine/transformer.h"
#include "muxserve/kvcache/head_block_pool.h"
#include "muxserve/model/weights.h"
#include "muxserve/runtime/partition.h"
#if MUXSERVE_WITH_CUDA
#include "muxserve/runtime/device.h"
#endif
#include "spdlog/spdlog.h"


namespace muxserve::engine {
namespace {

std::string PartitionLabel(const runtime::SmPartition* partition) {
#if MUXSERVE_WITH_CUDA
  if (partition != nullptr) return partition->label();
#endif
  return partition == nullptr ? "" : "?";
}

int PartitionId([[maybe_unused]] const runtime::SmPartition* partition) {
#if MUXSERVE_WITH_CUDA
  if (partition != nullptr) return partition->id();
#endif
  return -1;
}

}  // namespace

// One tensor-parallel rank's part of a lane (the whole lane without tensor parallelism): its
// shard of the model on its own backend (CUDA: the unit's GPU of that rank) and, for ranks > 0,
// a thread that runs each of the lane's jobs beside rank 0.
struct RankLane {
  std::unique_ptr<Ops> own_ops;  // CUDA: a backend instance of its own (stream, handles, graphs)
  Ops* ops = nullptr;
#if MUXSERVE_WITH_CUDA
  CudaOps* cuda = nullptr;
#endif
  std::unique_ptr<Transformer> transformer;
  kernels::PagedKv kv{};  // this rank's pool memory; block ids are the same on every rank
  // Written by the rank, read by the loop once the job is reported done. Every rank computes the
  // same logits (the all-reduce gives every rank the same bits), so rank 0's tokens are the job's.
  std::vector<int32_t> sampled;  // per logit row
  absl::Status status;
  int64_t jobs_seen = 0;  // ranks > 0: how many of Lane::peer_jobs this rank has run
  std::thread thread;     // ranks > 0
};

// One job slot of an LLM: its prefill or its decode. A slot runs one job at a time on a worker
// thread of its own, so that jobs of different slots run at the same time (each on its SM
// partition); the loop thread plans the job and handles its results. With tensor parallelism the
// worker runs rank 0 and each other rank's thread runs its shard of the same job meanwhile.
struct Lane {
  std::string model;
  JobPhase phase = JobPhase::kPrefill;
  std::vector<std::unique_ptr<RankLane>> ranks;
  // The lane's own communicator group (tensor parallelism): a prefill and a decode job run at
  // the same time, so their collectives must not share one.
  std::vector<std::unique_ptr<runtime::Communicator>> comms;

  // Written by the loop before the job starts, read by the ranks.
  Job job;
  StepPlan plan;
  const runtime::SmPartition* partition = nullptr;  // rank 0's; the others use the same id
  std::vector<int> sample_entries;  // job entries that produce a token, in logit-row order
  std::vector<RowSampling> sampling;  // per logit row
  SteadyTime started{};
  // Written by the worker, read by the loop once the job is reported done.
  absl::Status status;  // the first failing rank's
  SteadyTime ended{};
  // The partition the previous job ran on (-1: none yet), to count re-partitions.
  int last_partition = -1;

  absl::Mutex mu;
  bool has_job ABSL_GUARDED_BY(mu) = false;
  bool stop ABSL_GUARDED_BY(mu) = false;
  std::thread worker;

  // Hands jobs to ranks > 0.
  absl::Mutex peers_mu;
  int64_t peer_jobs ABSL_GUARDED_BY(peers_mu) = 0;  // jobs handed out so far
  int peers_done ABSL_GUARDED_BY(peers_mu) = 0;     // ranks > 0 done with the latest one
  bool peers_stop ABSL_GUARDED_BY(peers_mu) = false;
};

// An LLM as the loop owns it.
struct LoadedLlm {
  LlmSetup setup;
  kvcache::KvShape kv_shape;
  std::array<std::unique_ptr<Lane>, 2> lanes;  // by JobPhase
  // Fairness: tokens asked for and served, decayed (see LlmState::fairness).
  double demanded = 0;
  double served = 0;
};

// What Submit needs to know about an LLM, readable from any thread.
struct LlmEntry {
  int index = 0;
  model::ModelSpec spec;
  kvcache::KvShape kv_shape;  // per GPU: a tensor-parallel rank's share of the KV heads
  int64_t max_context = 0;
  int64_t tokens_per_block = 0;
  std::shared_ptr<const model::Tokenizer> tokenizer;
  std::atomic<int64_t> queued{0};  // submitted, no first token yet
};

// Which SMs each job runs on. muxserve: a prefill job gets the prefill partition while decode
// work exists, a decode job the decode partition while a prefill runs, and either alone the
// whole GPU. temporal: the whole GPU. spatial: each LLM its own partition.
struct PartitionPlan {
#if MUXSERVE_WITH_CUDA
  std::unique_ptr<runtime::PartitionSet> set;
#endif
  const runtime::SmPartition* whole = nullptr;
  const runtime::SmPartition* prefill = nullptr;
  const runtime::SmPartition* decode = nullptr;
  std::unordered_map<std::string, const runtime::SmPartition*> by_llm;  // spatial
#if MUXSERVE_WITH_CUDA
  // Tensor parallelism: the same palette on the unit's other GPUs, by rank - 1; a job's ranks
  // run on the partitions of the same id on their GPUs.
  std::vector<std::unique_ptr<runtime::PartitionSet>> peer_sets;
#endif
};

class UnitEngine::Impl {
 public:
  Impl(const UnitOptions& options, EngineObserver* observer,
       std::vector<std::unique_ptr<Ops>> rank_ops, std::vector<Buffer> pool_memory,
       int64_t num_blocks, PartitionPlan partitions)
      : options_(options),
        observer_(observer != nullptr ? observer : &null_observer_),
        rank_ops_(std::move(rank_ops)),
        pool_memory_(std::move(pool_memory)),
        partitions_(std::move(partitions)),
        pool_(num_blocks, options.kv_cache.block_bytes,
              static_cast<int64_t>(DTypeSize(rank_ops_.front()->dtype()))),
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
    for (auto& llm : llms_) StopLanes(*llm);
    absl::MutexLock lock(&mu_);
    for (auto& llm : pending_llms_) StopLanes(*llm);
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
  // Loads the weights (`share_with` null) or shares those of `share_with` (the LLM's other lane).
  absl::StatusOr<std::unique_ptr<Lane>> MakeLane(const LlmSetup& setup, JobPhase phase,
                                                 const model::Weights* weights,
                                                 const Lane* share_with);
#if MUXSERVE_WITH_CUDA
  // muxserve mode: decode streams raised over prefill ones (scheduler.decode_priority), so that
  // a decode step's small kernels go ahead of a prefill's waiting blocks, and by_rate the
  // popular LLMs' ahead of the others'.
  runtime::StreamPriority LaneStreamPriority(const std::string& model, JobPhase phase) const;
#endif
  // The partition of `rank`'s GPU with the id of rank 0's `partition`.
  const runtime::SmPartition* RankPartition(const runtime::SmPartition* partition,
                                            int rank) const;
  // The partitions a lane may run on (all of them prepared at load, off the hot path).
  std::vector<const runtime::SmPartition*> LanePartitions(const std::string& model,
                                                          JobPhase phase) const;
  void StartWorker(Lane* lane);
  static void StopLanes(LoadedLlm& llm);
  void Work(Lane* lane);
  // Runs the lane's job on the calling (worker) thread, and on the other ranks' threads.
  void RunJob(Lane* lane);
  // Runs the lane's job as `rank`.
  absl::Status RunRank(Lane* lane, int rank);
  // The thread of a rank > 0: runs each job the worker hands it.
  void PeerWork(Lane* lane, int rank);

  void Loop();
  // Moves newly added LLMs and submitted requests into the loop's own state, and takes the
  // lanes whose jobs ended; waits first when there is nothing to do.
  bool Intake(std::vector<Lane*>* done);
  void ExpireAndCancel();
  void Launch(const Job& job, bool prefill_active, bool decode_active);
  void Complete(Lane* lane);
  void EmitToken(Sequence* seq, int32_t token, SteadyTime now, std::vector<double>* gaps);
  // Ends a request: frees its blocks, sends what it still holds and calls OnFinish. With
  // `flush_text`, text held back for UTF-8 or stop-string matching is sent first.
  void Finish(Sequence* seq, FinishReason reason, absl::Status error = absl::OkStatus(),
              bool flush_text = false);
  void FinishIdle(FinishReason reason);
  void PublishStats();
  bool HasWork() const;

  class NullObserver final : public EngineObserver {
   public:
    void OnFirstToken(const std::string&, int32_t, double, double) override {}
    void OnTokens(const std::string&, std::span<const double>) override {}
    void OnFinished(const std::string&, FinishReason, double) override {}
    void OnLlmState(const LlmState&) override {}
    void OnJob(const JobReport&) override {}
  };

  const UnitOptions options_;
  NullObserver null_observer_;
  EngineObserver* observer_;
  // By rank: the unit's allocator on that rank's GPU (and the CPU backend's instance for it).
  std::vector<std::unique_ptr<Ops>> rank_ops_;
  std::vector<Buffer> pool_memory_;  // by rank: the same head blocks, each rank's KV heads
  PartitionPlan partitions_;
  // The CPU backend runs one job at a time: its kernels already use every core.
  absl::Mutex cpu_compute_mu_;

  // Shared with Submit/AddLlm/Drain and the workers.
  mutable absl::Mutex mu_;
  std::unordered_map<std::string, std::shared_ptr<LlmEntry>> entries_ ABSL_GUARDED_BY(mu_);
  std::vector<std::unique_ptr<LoadedLlm>> pending_llms_ ABSL_GUARDED_BY(mu_);
  std::vector<std::unique_ptr<Sequence>> inbox_ ABSL_GUARDED_BY(mu_);
  std::vector<Lane*> done_lanes_ ABSL_GUARDED_BY(mu_);  // jobs ended, not yet handled
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
  int jobs_running_ = 0;
  bool launched_last_ = false;
  bool abort_all_seen_ = false;  // every request is to be aborted (drain ran out, or stopping)
  SteadyTime fairness_decayed_at_{};

  mutable absl::Mutex stats_mu_;
  std::vector<LlmStats> stats_ ABSL_GUARDED_BY(stats_mu_);

  std::thread loop_;
};

absl::StatusOr<std::unique_ptr<Lane>> UnitEngine::Impl::MakeLane(const LlmSetup& setup,
                                                                 JobPhase phase,
                                                                 const model::Weights* weights,
                                                                 const Lane* share_with) {
  auto lane = std::make_unique<Lane>();
  lane->model = setup.name;
  lane->phase = phase;
  const int tp = options_.tensor_parallel;
  if (tp > 1) {
#if MUXSERVE_WITH_CUDA
    if (options_.backend == config::Backend::kCuda) {
      ASSIGN_OR_RETURN(lane->comms, runtime::MakeNcclCommunicators(options_.devices));
    }
#endif
    if (lane->comms.empty()) lane->comms = runtime::MakeInProcessCommunicators(tp);
  }
  const config::SchedulerConfig& sched = options_.scheduler;
  const bool prefill = phase == JobPhase::kPrefill;
  const int64_t max_tokens = prefill ? sched.max_prefill_tokens : sched.max_batch_size;
  for (int rank = 0; rank < tp; ++rank) {
    auto slot = std::make_unique<RankLane>();
    slot->ops = rank_ops_[rank].get();
#if MUXSERVE_WITH_CUDA
    if (options_.backend == config::Backend::kCuda) {
      const runtime::StreamPriority priority = LaneStreamPriority(setup.name, phase);
      if (rank == 0 && priority != runtime::StreamPriority::Normal()) {
        spdlog::info("unit {}: model '{}' decodes at stream priority rank {} (0: the greatest)",
                     options_.name, setup.name, priority.raised_rank);
      }
      ASSIGN_OR_RETURN(std::unique_ptr<CudaOps> cuda,
                       MakeCudaOps({.device = options_.devices[rank],
                                    .dtype = setup.dtype,
                                    .kernels = {},
                                    .stream_priority = priority}));
      slot->cuda = cuda.get();
      slot->ops = cuda.get();
      slot->own_ops = std::move(cuda);
    }
#endif
    runtime::Communicator* comm = tp > 1 ? lane->comms[rank].get() : nullptr;
    if (share_with != nullptr) {
      ASSIGN_OR_RETURN(slot->transformer,
                       share_with->ranks[rank]->transformer->ShareWeights(
                           slot->ops, max_tokens, sched.max_batch_size, comm));
    } else {
      ASSIGN_OR_RETURN(slot->transformer, Transformer::Load(setup.spec, *weights, slot->ops,
                                                            max_tokens, sched.max_batch_size, comm));
    }
#if MUXSERVE_WITH_CUDA
    if (slot->cuda != nullptr) {
      for (const runtime::SmPartition* partition : LanePartitions(setup.name, phase)) {
        RETURN_IF_ERROR(slot->cuda->UsePartition(RankPartition(partition, rank)));
      }
      // Leaves the calling thread in the primary context, which outlives the partitions.
      RETURN_IF_ERROR(slot->cuda->UsePartition(nullptr));
    }
#endif
    lane->ranks.push_back(std::move(slot));
  }
  return lane;
}

#if MUXSERVE_WITH_CUDA
runtime::StreamPriority UnitEngine::Impl::LaneStreamPriority(const std::string& model,
                                                             JobPhase phase) const {
  const config::SchedulerConfig& sched = options_.scheduler;
  if (phase == JobPhase::kPrefill || sched.mode != config::SchedulerMode::kMuxserve) {
    return runtime::StreamPriority::Normal();
  }
  switch (sched.decode_priority) {
    case config::DecodePriority::kNone:
      return runtime::StreamPriority::Normal();
    case config::DecodePriority::kUniform:
      return runtime::StreamPriority::Raised(0);
    case config::DecodePriority::kByRate:
      break;
  }
  int unranked = 0;
  for (const auto& [name, rank] : options_.rate_ranks) {
    if (name == model) return runtime::StreamPriority::Raised(rank);
    unranked = std::max(unranked, rank + 1);
  }
  return runtime::StreamPriority::Raised(unranked);
}
#endif

const runtime::SmPartition* UnitEngine::Impl::RankPartition(
    const runtime::SmPartition* partition, [[maybe_unused]] int rank) const {
#if MUXSERVE_WITH_CUDA
  if (partition != nullptr && rank > 0) {
    return partitions_.peer_sets[rank - 1]->partition(partition->id());
  }
#endif
  return partition;
}

std::vector<const runtime::SmPartition*> UnitEngine::Impl::LanePartitions(
    const std::string& model, JobPhase phase) const {
  std::vector<const runtime::SmPartition*> out;
  if (partitions_.whole == nullptr) return out;
  switch (options_.scheduler.mode) {
    case config::SchedulerMode::kMuxserve:
      out = {partitions_.whole,
             phase == JobPhase::kPrefill ? partitions_.prefill : partitions_.decode};
      break;
    case config::SchedulerMode::kTemporal:
      out = {partitions_.whole};
      break;
    case config::SchedulerMode::kSpatial: {
      auto it = partitions_.by_llm.find(model);
      out = {it != partitions_.by_llm.end() ? it->second : partitions_.whole};
      break;
    }
  }
  return out;
}

void UnitEngine::Impl::StartWorker(Lane* lane) {
  lane->worker = std::thread([this, lane] { Work(lane); });
  for (size_t rank = 1; rank < lane->ranks.size(); ++rank) {
    lane->ranks[rank]->thread =
        std::thread([this, lane, rank] { PeerWork(lane, static_cast<int>(rank)); });
  }
}

void UnitEngine::Impl::StopLanes(LoadedLlm& llm) {
  for (auto& lane : llm.lanes) {
    if (lane == nullptr || !lane->worker.joinable()) continue;
    {
      absl::MutexLock lock(&lane->mu);
      lane->stop = true;
    }
    lane->worker.join();
    {
      absl::MutexLock lock(&lane->peers_mu);
      lane->peers_stop = true;
    }
    for (size_t rank = 1; rank < lane->ranks.size(); ++rank) lane->ranks[rank]->thread.join();
  }
}

void UnitEngine::Impl::Work(Lane* lane) {
  while (true) {
    {
      absl::MutexLock lock(&lane->mu);
      auto ready = [lane]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(lane->mu) {
        return lane->has_job || lane->stop;
      };
      lane->mu.Await(absl::Condition(&ready));
      if (lane->stop && !lane->has_job) return;
      lane->has_job = false;
    }
    RunJob(lane);
    absl::MutexLock lock(&mu_);
    done_lanes_.push_back(lane);
  }
}

void UnitEngine::Impl::PeerWork(Lane* lane, int rank) {
  RankLane& slot = *lane->ranks[rank];
  while (true) {
    {
      absl::MutexLock lock(&lane->peers_mu);
      auto ready = [lane, &slot]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(lane->peers_mu) {
        return lane->peer_jobs > slot.jobs_seen || lane->peers_stop;
      };
      lane->peers_mu.Await(absl::Condition(&ready));
      if (lane->peer_jobs == slot.jobs_seen) return;  // stopped
      slot.jobs_seen = lane->peer_jobs;
    }
    slot.status = RunRank(lane, rank);
    absl::MutexLock lock(&lane->peers_mu);
    ++lane->peers_done;
  }
}

absl::Status UnitEngine::Impl::RunRank(Lane* lane, int rank) {
  RankLane& slot = *lane->ranks[rank];
  slot.kv.pool = pool_memory_[rank].get();
#if MUXSERVE_WITH_CUDA
  if (slot.cuda != nullptr) {
    RETURN_IF_ERROR(slot.cuda->UsePartition(RankPartition(lane->partition, rank)));
  }
#endif
  return slot.transformer->Sample(lane->plan, slot.kv, lane->sampling, &slot.sampled);
}

void UnitEngine::Impl::RunJob(Lane* lane) {
  // The CPU backend's lanes take turns, all ranks of a job together: its kernels already use
  // every core, and a rank's backend instance serves every lane of that rank.
  std::optional<absl::MutexLock> turn;
  if (lane->ranks[0]->own_ops == nullptr) turn.emplace(&cpu_compute_mu_);
  const int peers = static_cast<int>(lane->ranks.size()) - 1;
  if (peers > 0) {
    absl::MutexLock lock(&lane->peers_mu);
    lane->peers_done = 0;
    ++lane->peer_jobs;
  }
  lane->status = RunRank(lane, 0);
  if (peers > 0) {
    absl::MutexLock lock(&lane->peers_mu);
    auto all_done = [lane, peers]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(lane->peers_mu) {
      return lane->peers_done == peers;
    };
    lane->peers_mu.Await(absl::Condition(&all_done));
    for (int rank = 1; rank <= peers && lane->status.ok(); ++rank) {
      if (!lane->ranks[rank]->status.ok()) {
        lane->status = absl::Status(
            lane->ranks[rank]->status.code(),
            absl::StrCat("rank ", rank, ": ", lane->ranks[rank]->status.message()));
      }
    }
  }
  lane->ended = options_.clock->Now();
}

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
  std::unique_ptr<model::Weights> weights;
  if (setup.random_weights_seed.has_value()) {
    ASSIGN_OR_RETURN(weights, model::Weights::Random(setup.spec, *setup.random_weights_seed));
  } else {
    ASSIGN_OR_RETURN(weights, model::Weights::Load(setup.model_dir, setup.spec));
  }
  auto llm = std::make_unique<LoadedLlm>();
  llm->setup = setup;
  if (llm->setup.max_context <= 0) llm->setup.max_context = setup.spec.max_position_embeddings;
  // The prefill lane loads the weights; the decode lane shares them.
  auto& prefill = llm->lanes[static_cast<size_t>(JobPhase::kPrefill)];
  auto& decode = llm->lanes[static_cast<size_t>(JobPhase::kDecode)];
  ASSIGN_OR_RETURN(prefill, MakeLane(setup, JobPhase::kPrefill, weights.get(), nullptr));
  ASSIGN_OR_RETURN(decode, MakeLane(setup, JobPhase::kDecode, nullptr, prefill.get()));
  const model::ModelSpec& shard = prefill->ranks[0]->transformer->shard_spec();
  llm->kv_shape = {.num_layers = shard.num_layers,
                   .num_kv_heads = shard.num_kv_heads,
                   .head_dim = shard.head_dim};
  for (auto& lane : llm->lanes) StartWorker(lane.get());
  auto entry = std::make_shared<LlmEntry>();
  entry->spec = setup.spec;
  entry->kv_shape = llm->kv_shape;
  entry->max_context = llm->setup.max_context;
  entry->tokens_per_block = tokens_per_block;
  entry->tokenizer = setup.tokenizer;
  spdlog::info("unit {}: model '{}' loaded ({} MB of weights, {} layers, KV {} tokens/block)",
               options_.name, setup.name, prefill->ranks[0]->transformer->weight_bytes() >> 20,
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
      TokenBlocksFor(tokens, entry->tokens_per_block) * entry->kv_shape.blocks_per_token_block();
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
  auto seq = std::make_unique<Sequence>(std::move(request), entry->index, entry->kv_shape,
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

bool UnitEngine::Impl::Intake(std::vector<Lane*>* done) {
  std::vector<std::unique_ptr<LoadedLlm>> new_llms;
  std::vector<std::unique_ptr<Sequence>> new_seqs;
  bool abort_all = false;
  bool stopping = false;
  {
    absl::MutexLock lock(&mu_);
    auto has_input = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return !inbox_.empty() || !pending_llms_.empty() || !done_lanes_.empty() || abort_all_ ||
             stopping_;
    };
    // Wait while jobs run (for one to end), or when there is nothing to plan; a unit with
    // work that could not start anything last time retries shortly.
    if (jobs_running_ > 0 || !HasWork()) {
      mu_.AwaitWithTimeout(absl::Condition(&has_input), absl::Milliseconds(50));
    } else if (!launched_last_) {
      mu_.AwaitWithTimeout(absl::Condition(&has_input), absl::Milliseconds(1));
    }
    new_llms.swap(pending_llms_);
    new_seqs.swap(inbox_);
    done->swap(done_lanes_);
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
    // Quota share: expected rate x KV bytes per token (MuxServe's rule, GQA-aware), in the dtype
    // the LLM's backend keeps its KV in.
    const DType kv_dtype = llm->lanes[0]->ranks[0]->ops->dtype();
    const double weight = llm->setup.rate * static_cast<double>(spec.KvBytesPerToken(kv_dtype));
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
    llms_[seq->llm]->demanded +=
        static_cast<double>(seq->num_prompt + seq->request.sampling.max_tokens);
    queues_[seq->llm].waiting.push_back(seq.get());
    sequences_.push_back(std::move(seq));
  }
  abort_all_seen_ = abort_all;
  return !stopping;
}

bool UnitEngine::Impl::HasWork() const {
  for (const LlmQueues& q : queues_) {
    if (!q.waiting.empty() || !q.running.empty()) return true;
  }
  return false;
}

void UnitEngine::Impl::FinishIdle(FinishReason reason) {
  std::vector<Sequence*> idle;
  for (LlmQueues& q : queues_) {
    for (Sequence* seq : q.running) {
      if (!seq->in_flight) idle.push_back(seq);
    }
    for (Sequence* seq : q.waiting) {
      if (!seq->in_flight) idle.push_back(seq);
    }
  }
  for (Sequence* seq : idle) Finish(seq, reason);
}

void UnitEngine::Impl::ExpireAndCancel() {
  const SteadyTime now = options_.clock->Now();
  std::vector<Sequence*> done;
  for (LlmQueues& q : queues_) {
    for (Sequence* seq : q.waiting) done.push_back(seq);
    for (Sequence* seq : q.running) done.push_back(seq);
  }
  for (Sequence* seq : done) {
    if (seq->in_flight) continue;  // handled once its job ends
    if (seq->request.cancel->IsCancelled()) {
      Finish(seq, FinishReason::kAbort);
    } else if (seq->request.deadline.has_value() && now >= *seq->request.deadline) {
      Finish(seq, FinishReason::kError,
             absl::DeadlineExceededError("the request's deadline passed"));
    }
  }
}

void UnitEngine::Impl::Loop() {
  std::vector<Lane*> done;
  while (Intake(&done)) {
    for (Lane* lane : done) Complete(lane);
    done.clear();
    // After the ended jobs are handled, so that their sequences are idle and go too.
    if (abort_all_seen_) FinishIdle(FinishReason::kAbort);
    ExpireAndCancel();
    scheduler_->Next(queues_, pool_, &jobs_, &preemptions_);
    bool prefill_active = false;
    bool decode_active = false;
    for (const LlmQueues& q : queues_) {
      prefill_active |= q.prefill_in_flight;
      decode_active |= q.decode_in_flight || !q.running.empty();
    }
    for (const Job& job : jobs_) {
      prefill_active |= job.phase == JobPhase::kPrefill;
      decode_active |= job.phase == JobPhase::kDecode;
    }
    for (const Job& job : jobs_) Launch(job, prefill_active, decode_active);
    launched_last_ = !jobs_.empty();
    PublishStats();
  }
  // Stopping: let running jobs end, then nothing may be left without its OnFinish.
  while (jobs_running_ > 0) {
    {
      absl::MutexLock lock(&mu_);
      auto any_done = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return !done_lanes_.empty();
      };
      mu_.Await(absl::Condition(&any_done));
      done.swap(done_lanes_);
    }
    for (Lane* lane : done) Complete(lane);
    done.clear();
  }
  FinishIdle(FinishReason::kAbort);
  PublishStats();
}

void UnitEngine::Impl::Launch(const Job& job, bool prefill_active, bool decode_active) {
  LoadedLlm& llm = *llms_[job.llm];
  LlmQueues& q = queues_[job.llm];
  Lane& lane = *llm.lanes[static_cast<size_t>(job.phase)];
  const bool prefill = job.phase == JobPhase::kPrefill;
  lane.job = job;
  lane.started = options_.clock->Now();
  StepPlan& plan = lane.plan;
  plan.Clear();
  lane.sample_entries.clear();
  lane.sampling.clear();
  for (size_t e = 0; e < job.entries.size(); ++e) {
    const JobEntry& entry = job.entries[e];
    Sequence* seq = entry.seq;
    seq->in_flight = true;
    if (!seq->first_scheduled.has_value()) seq->first_scheduled = lane.started;
    kernels::StepSequence step{
        .q_start = static_cast<int32_t>(plan.tokens.size()),
        .q_len = entry.num_tokens,
        .context_len = seq->num_computed + entry.num_tokens,
        .table_offset = static_cast<int32_t>(plan.block_tables.size())};
    for (int32_t i = 0; i < entry.num_tokens; ++i) {
      plan.tokens.push_back(seq->tokens[seq->num_computed + i]);
      plan.positions.push_back(seq->num_computed + i);
    }
    plan.block_tables.insert(plan.block_tables.end(), seq->blocks.ids().begin(),
                             seq->blocks.ids().end());
    plan.seqs.push_back(step);
    if (step.context_len == static_cast<int32_t>(seq->tokens.size())) {
      plan.logit_rows.push_back(step.q_start + step.q_len - 1);
      lane.sample_entries.push_back(static_cast<int>(e));
      const SamplingParams& sampling = seq->request.sampling;
      // Each draw's seed comes from the sequence's own generator: seeded requests repeat.
      lane.sampling.push_back({.temperature = sampling.temperature,
                               .top_k = sampling.top_k,
                               .top_p = sampling.top_p,
                               .seed = seq->rng()});
    }
  }
  // A chunk that ends before the prompt does samples nothing; the forward still needs a row.
  if (plan.logit_rows.empty()) {
    plan.logit_rows.push_back(static_cast<int32_t>(plan.tokens.size()) - 1);
    lane.sampling.push_back({});
  }
  for (auto& rank : lane.ranks) {
    // Each rank reads its own pool memory (RunRank), laid out the same.
    rank->kv = {.pool = nullptr,
                .block_bytes = pool_.block_bytes(),
                .tokens_per_block = q.tokens_per_block,
                .head_dim = llm.kv_shape.head_dim,
                .num_layers = llm.kv_shape.num_layers,
                .num_kv_heads = llm.kv_shape.num_kv_heads};
  }
  // The SMs this job runs on (see PartitionPlan).
  lane.partition = nullptr;
  if (partitions_.whole != nullptr) {
    switch (options_.scheduler.mode) {
      case config::SchedulerMode::kMuxserve:
        lane.partition = prefill ? (decode_active ? partitions_.prefill : partitions_.whole)
                                 : (prefill_active ? partitions_.decode : partitions_.whole);
        break;
      case config::SchedulerMode::kTemporal:
        lane.partition = partitions_.whole;
        break;
      case config::SchedulerMode::kSpatial:
        lane.partition = LanePartitions(llm.setup.name, job.phase).front();
        break;
    }
  }
  (prefill ? q.prefill_in_flight : q.decode_in_flight) = true;
  ++jobs_running_;
  absl::MutexLock lock(&lane.mu);
  lane.has_job = true;
}

void UnitEngine::Impl::Complete(Lane* lane) {
  --jobs_running_;
  const Job& job = lane->job;
  LoadedLlm& llm = *llms_[job.llm];
  LlmQueues& q = queues_[job.llm];
  const bool prefill = job.phase == JobPhase::kPrefill;
  (prefill ? q.prefill_in_flight : q.decode_in_flight) = false;
  JobReport report{.model = llm.setup.name,
                   .prefill = prefill,
                   .partition = lane->partition != nullptr ? PartitionLabel(lane->partition)
                                : lane->ranks[0]->own_ops != nullptr ? "gpu"
                                                           : "cpu",
                   .tokens = lane->plan.num_tokens(),
                   .started = lane->started,
                   .ended = lane->ended,
                   .seconds = SecondsBetween(lane->started, lane->ended)};
  const int partition = PartitionId(lane->partition);
  report.repartitioned = lane->last_partition != -1 && lane->last_partition != partition;
  lane->last_partition = partition;
  for (const JobEntry& entry : job.entries) entry.seq->in_flight = false;
  if (!lane->status.ok()) {
    spdlog::error("unit {}: model '{}' step failed: {}", options_.name, llm.setup.name,
                  lane->status.ToString());
    for (const JobEntry& entry : job.entries) {
      Finish(entry.seq, FinishReason::kError, lane->status);
    }
    observer_->OnJob(report);
    return;
  }
  const SteadyTime now = lane->ended;
  std::vector<double> gaps;
  size_t next_sample = 0;
  for (size_t e = 0; e < job.entries.size(); ++e) {
    Sequence* seq = job.entries[e].seq;
    const int32_t computed_before = seq->num_computed;
    seq->num_computed += job.entries[e].num_tokens;
    if (prefill) {
      // Tokens computed again after a preemption are not served twice.
      const int32_t again =
          std::max(0, std::min(seq->num_computed, seq->recompute_tokens) - computed_before);
      report.recomputed_tokens += again;
      llm.served += job.entries[e].num_tokens - again;
      if (seq->num_computed >= seq->recompute_tokens) seq->recompute_tokens = 0;
    }
    if (next_sample >= lane->sample_entries.size() ||
        lane->sample_entries[next_sample] != static_cast<int>(e)) {
      continue;  // a prompt chunk: no token yet
    }
    const int32_t token = lane->ranks[0]->sampled[next_sample++];
    if (prefill) {
      // The prompt (or the recomputation after a preemption) is done: decode from now on.
      q.waiting.erase(std::find(q.waiting.begin(), q.waiting.end(), seq));
      auto pos = std::find_if(q.running.begin(), q.running.end(), [&](const Sequence* other) {
        return other->request.arrival > seq->request.arrival;
      });
      q.running.insert(pos, seq);
    }
    llm.served += 1;
    EmitToken(seq, token, now, &gaps);
  }
  if (!gaps.empty()) observer_->OnTokens(llm.setup.name, gaps);
  loop_stats_[job.llm].recomputed_tokens += report.recomputed_tokens;
  observer_->OnJob(report);
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
  // Fairness counts decay with a time constant of a minute: the ratio follows recent demand.
  constexpr double kFairnessSeconds = 60.0;
  const SteadyTime now = options_.clock->Now();
  const double decay =
      fairness_decayed_at_ == SteadyTime{}
          ? 1.0
          : std::exp(-std::max(0.0, SecondsBetween(fairness_decayed_at_, now)) / kFairnessSeconds);
  fairness_decayed_at_ = now;
  double served_total = 0;
  double demanded_total = 0;
  for (auto& llm : llms_) {
    llm->served *= decay;
    llm->demanded *= decay;
    served_total += llm->served;
    demanded_total += llm->demanded;
  }
  for (size_t i = 0; i < llms_.size(); ++i) {
    LlmStats& stats = loop_stats_[i];
    const LlmQueues& q = queues_[i];
    const LoadedLlm& llm = *llms_[i];
    stats.running = static_cast<int64_t>(q.running.size());
    stats.waiting = static_cast<int64_t>(q.waiting.size());
    stats.kv_blocks_used = pool_.used(q.pool_id);
    stats.kv_blocks_quota = pool_.quota(q.pool_id);
    stats.kv_blocks_total = pool_.num_blocks();
    stats.preemptions = preemptions_[i];
    stats.fairness = llm.demanded > 0 && served_total > 0
                         ? (llm.served / served_total) / (llm.demanded / demanded_total)
                         : 0.0;
    observer_->OnLlmState({.model = stats.name,
                           .running = stats.running,
                           .waiting = stats.waiting,
                           .kv_blocks_used = stats.kv_blocks_used,
                           .kv_blocks_quota = stats.kv_blocks_quota,
                           .kv_blocks_total = stats.kv_blocks_total,
                           .fairness = stats.fairness});
  }
  absl::MutexLock lock(&stats_mu_);
  stats_ = loop_stats_;
}

namespace {

#if MUXSERVE_WITH_CUDA
using runtime::kSmStep;
using runtime::RoundSms;

// The unit's palette of partitions (see PartitionPlan), made once: a green context costs ms.
absl::StatusOr<PartitionPlan> MakePartitionPlan(const UnitOptions& options) {
  ASSIGN_OR_RETURN(std::vector<runtime::DeviceInfo> devices, runtime::ListCudaDevices());
  for (int device : options.devices) {
    if (device < 0 || device >= static_cast<int>(devices.size())) {
      return absl::FailedPreconditionError(absl::StrCat(
          "unit ", options.name, ": CUDA device ", device, " does not exist (",
          devices.size(), " visible)"));
    }
  }
  // SM counts from the first GPU: a unit's GPUs are of one kind.
  const int sms = devices[options.devices.front()].sm_count;
  std::vector<std::vector<int>> splits = {{0}};
  switch (options.scheduler.mode) {
    case config::SchedulerMode::kMuxserve:
      splits.push_back({RoundSms(options.scheduler.decode_sm_share * sms), 0});
      break;
    case config::SchedulerMode::kTemporal:
      break;
    case config::SchedulerMode::kSpatial: {
      std::vector<int> split;
      const int models = static_cast<int>(options.spatial_sm_shares.size());
      if (models * kSmStep > sms) {
        return absl::InvalidArgumentError(absl::StrCat(
            "unit ", options.name, ": spatial mode gives each of its ", models,
            " models at least ", kSmStep, " SMs, more than the GPU's ", sms));
      }
      int left = sms;
      for (int i = 0; i < models; ++i) {
        // Each later model keeps at least one step of SMs; the last takes what is left.
        const int later = models - i - 1;
        const int count =
            later == 0 ? 0
                       : std::min(RoundSms(options.spatial_sm_shares[i].second * sms),
                                  left - later * kSmStep);
        split.push_back(count);
        left -= count;
      }
      if (!split.empty()) splits.push_back(split);
      break;
    }
  }
  // auto: exclusive partitions where the mode needs fixed shares (spatial); elsewhere the jobs
  // share the whole GPU, which measured faster on the H100 than a fixed decode/prefill split
  // (docs/benchmarks.md: decode reaches full bandwidth on part of the SMs and fills in around a
  // prefill's blocks).
  config::PartitionBackend backend = options.partitions;
  if (backend == config::PartitionBackend::kAuto &&
      options.scheduler.mode != config::SchedulerMode::kSpatial) {
    backend = config::PartitionBackend::kNone;
  }
  PartitionPlan plan;
  ASSIGN_OR_RETURN(plan.set,
                   runtime::PartitionSet::Create(backend, options.devices.front(), splits));
  for (size_t rank = 1; rank < options.devices.size(); ++rank) {
    ASSIGN_OR_RETURN(plan.peer_sets.emplace_back(),
                     runtime::PartitionSet::Create(backend, options.devices[rank], splits));
  }
  plan.whole = plan.set->split(0).front();
  if (options.scheduler.mode == config::SchedulerMode::kMuxserve) {
    plan.decode = plan.set->split(1)[0];
    plan.prefill = plan.set->split(1)[1];
  } else if (options.scheduler.mode == config::SchedulerMode::kSpatial &&
             plan.set->num_splits() > 1) {
    for (size_t i = 0; i < options.spatial_sm_shares.size(); ++i) {
      plan.by_llm[options.spatial_sm_shares[i].first] = plan.set->split(1)[i];
    }
  }
  std::vector<std::string> labels;
  for (int i = 0; i < plan.set->size(); ++i) labels.push_back(plan.set->partition(i)->label());
  spdlog::info("unit {}: {} partitions for {} mode: {} (made in {:.1f} ms)", options.name,
               config::PartitionBackendName(plan.set->backend()),
               config::SchedulerModeName(options.scheduler.mode), absl::StrJoin(labels, ", "),
               plan.set->creation_ms());
  return plan;
}
#endif

}  // namespace

// --- UnitEngine ----------------------------------------------------------------------------

absl::StatusOr<std::unique_ptr<UnitEngine>> UnitEngine::Create(const UnitOptions& options,
                                                               EngineObserver* observer) {
  const int tp = options.tensor_parallel;
  if (tp < 1 || tp > 8 || (tp & (tp - 1)) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("unit ", options.name, ": tensor_parallel ", tp, " is not 1, 2, 4 or 8"));
  }
  std::vector<std::unique_ptr<Ops>> rank_ops;
  PartitionPlan partitions;
  if (options.backend == config::Backend::kCpu) {
    // Ranks on the CPU share its cores.
    for (int rank = 0; rank < tp; ++rank) rank_ops.push_back(MakeCpuOps(options.cpu_threads));
#if MUXSERVE_WITH_CUDA
  } else if (options.backend == config::Backend::kCuda) {
    if (static_cast<int>(options.devices.size()) != tp) {
      return absl::InvalidArgumentError(
          absl::StrCat("unit ", options.name, ": tensor_parallel ", tp, " needs ", tp,
                       " GPUs, got ", options.devices.size()));
    }
    for (int device : options.devices) {
      ASSIGN_OR_RETURN(rank_ops.emplace_back(), MakeCudaOps({.device = device, .kernels = {}}));
    }
    ASSIGN_OR_RETURN(partitions, MakePartitionPlan(options));
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
  // One pool per GPU, the same size on each: block ids are mirrored across the ranks.
  std::vector<Buffer> pool_memory;
  for (const std::unique_ptr<Ops>& ops : rank_ops) {
    ASSIGN_OR_RETURN(pool_memory.emplace_back(),
                     ops->Allocate(num_blocks * options.kv_cache.block_bytes));
  }
  std::string mesh;
  if (tp > 1) {
    mesh = options.backend == config::Backend::kCuda
               ? absl::StrCat(", tensor parallel over GPUs ", absl::StrJoin(options.devices, ","))
               : absl::StrCat(", tensor parallel over ", tp, " CPU ranks");
  }
  spdlog::info("unit {}: {} backend{}, {} scheduling, KV pool of {} head blocks x {} bytes ({} MB{})",
               options.name, config::BackendName(options.backend), mesh,
               config::SchedulerModeName(options.scheduler.mode), num_blocks,
               options.kv_cache.block_bytes, (num_blocks * options.kv_cache.block_bytes) >> 20,
               tp > 1 ? " on each" : "");
  return std::unique_ptr<UnitEngine>(new UnitEngine(
      std::make_unique<Impl>(options, observer, std::move(rank_ops), std::move(pool_memory),
                             num_blocks, std::move(partitions))));
}

UnitEngine::UnitEngine(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
UnitEngine::~UnitEngine() = default;
absl::Status UnitEngine::AddLlm(const LlmSetup& setup) { return impl_->AddLlm(setup); }
absl::Status UnitEngine::Submit(Request request) { return impl_->Submit(std::move(request)); }
void UnitEngine::Drain(Duration grace) { impl_->Drain(grace); }
std::vector<LlmStats> UnitEngine::Stats() const { return impl_->Stats(); }
const std::string& UnitEngine::name() const { return impl_->name(); }

}  // namespace muxserve::engine
