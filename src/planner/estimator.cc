#include "estimator.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace muxserve::planner {
namespace {

double AsDouble(int64_t value) { return static_cast<double>(value); }

}  // namespace

double UnitPlan::Throughput() const {
  double sum = 0;
  for (const LlmPlan& llm : llms) sum += llm.throughput;
  return sum;
}

Estimator::Estimator(const PlacementProblem& problem, const CostModel& cost)
    : problem_(problem), cost_(cost) {
  for (const PlannerModel& model : problem.models) {
    ModelFacts facts;
    facts.weight_bytes = model.shape.spec.WeightBytes(model.shape.dtype);
    facts.kv_bytes_per_token = model.shape.spec.KvBytesPerToken(model.shape.dtype);
    facts.request_kv_bytes = facts.kv_bytes_per_token * (model.prompt_tokens + model.output_tokens);
    facts.kv_demand = model.rate * AsDouble(facts.request_kv_bytes);
    facts_.push_back(facts);
  }
}

// Activations of one prefill job (hidden states kept whole on every GPU; attention and MLP
// intermediates split by tensor parallelism) plus fp32 logits of one decode batch, per GPU.
int64_t Estimator::WorkspaceBytes(int model, int mesh_gpus) const {
  const model::ModelSpec& spec = problem_.models[model].shape.spec;
  const int64_t dtype_bytes = static_cast<int64_t>(DTypeSize(problem_.models[model].shape.dtype));
  const int64_t split = spec.q_size() + 2 * spec.kv_size() + 2 * spec.intermediate_size;
  const int64_t per_token = 3 * spec.hidden_size + split / mesh_gpus;
  const int64_t activations = problem_.options.max_prefill_tokens * per_token * dtype_bytes;
  const int64_t logits = problem_.options.max_batch_size * spec.vocab_size * 4;
  return mesh_gpus * (activations + logits);
}

int64_t Estimator::MemoryNeed(int model, int mesh_gpus) const {
  return facts_[model].weight_bytes + WorkspaceBytes(model, mesh_gpus) +
         problem_.options.min_kv_sequences * facts_[model].request_kv_bytes;
}

int64_t Estimator::UsableMemory(int mesh_gpus) const {
  const double per_gpu =
      AsDouble(problem_.cluster.gpu.memory_bytes) * (1 - problem_.options.reserved_memory_fraction);
  return static_cast<int64_t>(per_gpu) * mesh_gpus;
}

bool Estimator::SplitsOver(int model, int mesh_gpus) const {
  const model::ModelSpec& spec = problem_.models[model].shape.spec;
  const bool kv_splits = spec.num_kv_heads % mesh_gpus == 0 || mesh_gpus % spec.num_kv_heads == 0;
  return spec.num_heads % mesh_gpus == 0 && kv_splits && spec.intermediate_size % mesh_gpus == 0;
}

bool Estimator::FitsAlone(int model, int mesh_gpus) const {
  return SplitsOver(model, mesh_gpus) && MemoryNeed(model, mesh_gpus) <= UsableMemory(mesh_gpus);
}

// The smallest share whose prefill latency stays within the slack of the whole GPU's: prompts
// wait a bounded time, and the most SMs are left for decode jobs.
const Estimator::PrefillChoice& Estimator::Prefill(int model, int mesh_gpus) const {
  auto [it, inserted] = prefill_cache_.try_emplace({model, mesh_gpus});
  PrefillChoice& choice = it->second;
  if (!inserted) return choice;
  const PlannerModel& llm = problem_.models[model];
  choice.batch = std::clamp<int64_t>(problem_.options.max_prefill_tokens / llm.prompt_tokens, 1,
                                     problem_.options.max_batch_size);
  choice.sm_share = 1.0;
  choice.seconds =
      cost_.PrefillSeconds(llm.shape, choice.batch, llm.prompt_tokens, {1.0, mesh_gpus});
  for (double share : problem_.options.sm_shares) {
    const double seconds =
        cost_.PrefillSeconds(llm.shape, choice.batch, llm.prompt_tokens, {share, mesh_gpus});
    if (seconds <= problem_.options.prefill_latency_slack * choice.seconds) {
      choice.sm_share = share;
      choice.seconds = seconds;
      break;
    }
  }
  choice.bytes_per_gpu =
      (AsDouble(facts_[model].weight_bytes) +
       AsDouble(choice.batch * llm.prompt_tokens) * AsDouble(facts_[model].kv_bytes_per_token)) /
      mesh_gpus;
  return choice;
}

// Little's law for continuous batching: a decode job runs back to back while the batch is B =
// rate x output x step(B), so take the smallest batch that keeps up with the rate.
Estimator::DecodeChoice Estimator::DecodeAt(int model, int mesh_gpus, int64_t max_batch,
                                            size_t share_index) const {
  auto [it, inserted] = decode_cache_.try_emplace({model, mesh_gpus, max_batch, share_index});
  DecodeChoice& choice = it->second;
  if (!inserted) return choice;
  const PlannerModel& llm = problem_.models[model];
  const int64_t context = llm.prompt_tokens + llm.output_tokens / 2;
  const double steps = AsDouble(llm.output_tokens);
  choice.sm_share = problem_.options.sm_shares[share_index];
  const JobPlace place{choice.sm_share, mesh_gpus};
  auto rate_at = [&](int64_t batch) {
    return AsDouble(batch) / (steps * cost_.DecodeSeconds(llm.shape, batch, context, place));
  };
  choice.capacity = rate_at(max_batch);
  int64_t low = 1, high = max_batch;
  while (low < high) {
    const int64_t mid = low + (high - low) / 2;
    if (rate_at(mid) >= llm.rate) {
      high = mid;
    } else {
      low = mid + 1;
    }
  }
  choice.batch = low;
  const double step = cost_.DecodeSeconds(llm.shape, low, context, place);
  choice.duty = std::min(1.0, llm.rate * steps * step / AsDouble(low));
  const double step_bytes = (AsDouble(facts_[model].weight_bytes) +
                             AsDouble(low * context) * AsDouble(facts_[model].kv_bytes_per_token)) /
                            mesh_gpus;
  choice.bandwidth_use = choice.duty * step_bytes / step / problem_.cluster.gpu.bandwidth;
  return choice;
}

size_t Estimator::SmallestDecodeShare(int model, int mesh_gpus, int64_t max_batch) const {
  auto [it, inserted] = smallest_share_cache_.try_emplace({model, mesh_gpus, max_batch}, 0);
  if (!inserted) return it->second;
  // Within this fraction of the best capacity a share counts as the best: decode saturates
  // bandwidth at about half the SMs, and the SMs beyond the knee only add load.
  constexpr double kKnee = 0.95;
  const double wanted = problem_.models[model].rate * (1 + problem_.options.decode_headroom);
  const size_t count = problem_.options.sm_shares.size();
  std::vector<double> capacities(count);
  for (size_t i = 0; i < count; ++i) {
    capacities[i] = DecodeAt(model, mesh_gpus, max_batch, i).capacity;
    if (capacities[i] >= wanted) return it->second = i;
  }
  const double best = *std::max_element(capacities.begin(), capacities.end());
  size_t knee = 0;
  while (capacities[knee] < kKnee * best) ++knee;
  return it->second = knee;
}

bool Estimator::Estimate(const std::vector<int>& models, int mesh_gpus, UnitPlan* unit) const {
  const PlannerOptions& options = problem_.options;
  unit->llms.clear();
  unit->memory_bytes = UsableMemory(mesh_gpus);
  int64_t fixed = 0, minimum_kv = 0;
  double kv_demand = 0;
  for (int model : models) {
    if (!SplitsOver(model, mesh_gpus)) return false;
    fixed += facts_[model].weight_bytes + WorkspaceBytes(model, mesh_gpus);
    minimum_kv += options.min_kv_sequences * facts_[model].request_kv_bytes;
    kv_demand += facts_[model].kv_demand;
  }
  if (fixed + minimum_kv > unit->memory_bytes) return false;
  unit->kv_pool_bytes = unit->memory_bytes - fixed;
  const double spare_kv = AsDouble(unit->kv_pool_bytes - minimum_kv);

  // Pass 1: quotas, prefill shares and the smallest sufficient decode shares.
  std::vector<size_t> decode_shares;
  double widest_prefill = 0;
  for (int model : models) {
    const ModelFacts& facts = facts_[model];
    LlmPlan plan;
    plan.model = model;
    plan.weight_bytes = facts.weight_bytes;
    plan.workspace_bytes = WorkspaceBytes(model, mesh_gpus);
    // Quotas: the minimum, then the rest in proportion to rate x KV bytes of a request.
    plan.kv_quota_bytes = options.min_kv_sequences * facts.request_kv_bytes +
                          static_cast<int64_t>(spare_kv * facts.kv_demand / kv_demand);
    plan.max_batch = std::min(options.max_batch_size, plan.kv_quota_bytes / facts.request_kv_bytes);
    const PrefillChoice& prefill = Prefill(model, mesh_gpus);
    plan.prefill_sm_share = prefill.sm_share;
    widest_prefill = std::max(widest_prefill, prefill.sm_share);
    decode_shares.push_back(SmallestDecodeShare(model, mesh_gpus, plan.max_batch));
    unit->llms.push_back(plan);
  }
  // Pass 2: SMs that no job needs go to the decode jobs in equal parts (lower latency per token),
  // keeping room for the widest prefill job to run beside all of them.
  const std::vector<double>& shares = options.sm_shares;
  double decode_sum = 0;
  for (size_t index : decode_shares) decode_sum += shares[index];
  const double spare = (1 - widest_prefill - decode_sum) / AsDouble(models.size());
  if (spare > 0) {
    for (size_t& index : decode_shares) {
      const double target = shares[index] + spare;
      while (index + 1 < shares.size() && shares[index + 1] <= target + 1e-9) ++index;
    }
  }
  double sm_load = 0, bandwidth_load = 0;
  for (size_t i = 0; i < unit->llms.size(); ++i) {
    LlmPlan& plan = unit->llms[i];
    const int model = plan.model;
    const PlannerModel& llm = problem_.models[model];
    const PrefillChoice& prefill = Prefill(model, mesh_gpus);
    const DecodeChoice decode = DecodeAt(model, mesh_gpus, plan.max_batch, decode_shares[i]);
    plan.decode_sm_share = decode.sm_share;
    plan.decode_batch = decode.batch;
    // Capacity before contention: decode at the quota's batch, prefill back to back.
    plan.capacity = std::min(decode.capacity, AsDouble(prefill.batch) / prefill.seconds);
    const double prefill_duty = std::min(1.0, llm.rate * prefill.seconds / AsDouble(prefill.batch));
    sm_load += decode.duty * decode.sm_share + prefill_duty * prefill.sm_share;
    bandwidth_load += decode.bandwidth_use + prefill_duty * prefill.bytes_per_gpu /
                                                 prefill.seconds / problem_.cluster.gpu.bandwidth;
  }
  unit->sm_load = sm_load;
  unit->bandwidth_load = bandwidth_load;
  // Jobs overlap freely on disjoint partitions until the SMs or HBM bandwidth are oversubscribed;
  // beyond that every job stretches by the overload, and only 1/stretch of each LLM's rate can be
  // served (the loads above are those of serving the whole rate).
  const double stretch = std::max({1.0, sm_load, bandwidth_load});
  for (LlmPlan& plan : unit->llms) {
    plan.capacity /= stretch;
    plan.throughput = std::min(problem_.models[plan.model].rate / stretch, plan.capacity);
  }
  return true;
}

UnitScore Estimator::Score(const std::vector<int>& models, int mesh_gpus) const {
  std::vector<int> key_models = models;
  std::sort(key_models.begin(), key_models.end());
  auto [it, inserted] = score_cache_.try_emplace({mesh_gpus, std::move(key_models)});
  if (!inserted) return it->second;
  UnitPlan unit;
  UnitScore score;
  score.feasible = Estimate(models, mesh_gpus, &unit);
  if (score.feasible) {
    for (const LlmPlan& llm : unit.llms) {
      score.weighted += problem_.models[llm.model].rate * llm.throughput;
    }
    score.load = std::max(unit.sm_load, unit.bandwidth_load);
  }
  it->second = score;
  return score;
}

}  // namespace muxserve::planner
