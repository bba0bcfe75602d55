#include "muxserve/server/startup_plan.h"

#include <algorithm>
#include <functional>
#include <string>
#include <vector>

#include "absl/algorithm/container.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "muxserve/common/status.h"
#include "muxserve/model/model_spec.h"
#include "spdlog/spdlog.h"

namespace muxserve::server {
namespace {

// "unit0 (node0 GPUs 0,1: a, b)", as the plan table numbers units.
std::string DescribeUnit(const planner::ConfigPlan& plan, size_t index) {
  const planner::UnitPlan& unit = plan.placement.units[index];
  std::vector<std::string> models;
  for (const planner::LlmPlan& llm : unit.llms)
    models.push_back(plan.problem.models[llm.model].name);
  return absl::StrCat("unit", index, " (node", unit.node, " GPU", unit.gpus.size() > 1 ? "s " : " ",
                      absl::StrJoin(unit.gpus, ","), ": ", absl::StrJoin(models, ", "), ")");
}

}  // namespace

absl::StatusOr<std::vector<std::pair<std::string, double>>> SpatialSmShares(
    const std::vector<config::ModelConfig>& models, config::SpatialSplit split,
    int64_t kv_memory_bytes) {
  double pinned = 0;
  for (const config::ModelConfig& model : models) pinned += model.sm_share;
  if (pinned > 1.0) {
    return absl::InvalidArgumentError(
        absl::StrCat("models[].sm_share: the shares add up to ", pinned, ", more than 1"));
  }
  std::vector<model::ModelSpec> specs;
  double kv_weight_total = 0;
  for (const config::ModelConfig& model : models) {
    model::ModelSpec spec;
    if (model.synthetic.has_value()) {
      spec = model.synthetic->spec;
    } else {
      ASSIGN_OR_RETURN(spec, model::LoadModelSpec(model.path));
    }
    const DType dtype = spec.GpuDType(model.dtype);
    kv_weight_total += model.rate * static_cast<double>(spec.KvBytesPerToken(dtype));
    specs.push_back(std::move(spec));
  }
  std::vector<double> demands;
  double demand_total = 0;
  for (size_t i = 0; i < models.size(); ++i) {
    const config::ModelConfig& model = models[i];
    const DType dtype = specs[i].GpuDType(model.dtype);
    if (model.sm_share > 0) {  // takes no part in the split
      demands.push_back(0);
      continue;
    }
    double demand = 0;
    if (split == config::SpatialSplit::kCompute) {
      demand = model.rate * specs[i].FlopsPerToken(0);
    } else {
      const double kv_share =
          kv_weight_total > 0
              ? model.rate * static_cast<double>(specs[i].KvBytesPerToken(dtype)) / kv_weight_total
              : 1.0 / static_cast<double>(models.size());
      demand = static_cast<double>(specs[i].WeightBytes(dtype)) +
               kv_share * static_cast<double>(kv_memory_bytes);
    }
    demands.push_back(demand);
    demand_total += demand;
  }
  std::vector<std::pair<std::string, double>> shares;
  for (size_t i = 0; i < models.size(); ++i) {
    const double share = models[i].sm_share > 0 ? models[i].sm_share
                         : demand_total > 0     ? (1.0 - pinned) * demands[i] / demand_total
                                                : 0.0;
    shares.emplace_back(models[i].name, share);
  }
  return shares;
}

std::vector<std::pair<std::string, int>> RateRanks(const std::vector<config::ModelConfig>& models) {
  std::vector<double> distinct_rates;
  for (const config::ModelConfig& model : models) distinct_rates.push_back(model.rate);
  absl::c_sort(distinct_rates, std::greater<>());
  distinct_rates.erase(std::unique(distinct_rates.begin(), distinct_rates.end()),
                       distinct_rates.end());
  std::vector<std::pair<std::string, int>> ranks;
  for (const config::ModelConfig& model : models) {
    const auto at = absl::c_find(distinct_rates, model.rate);
    ranks.emplace_back(model.name, static_cast<int>(at - distinct_rates.begin()));
  }
  return ranks;
}

std::optional<planner::ConfigPlan> PlanAtStartup(const config::Config& config) {
  if (config.models.empty()) return std::nullopt;
  absl::StatusOr<planner::ConfigPlan> plan = planner::PlanFromConfig(config);
  if (!plan.ok()) {
    spdlog::warn("muxserved: no placement plan ({}); serving every model on one unit as configured",
                 std::string(plan.status().message()));
    return std::nullopt;
  }
  const std::string table = planner::FormatPlacement(plan->problem, plan->placement);
  spdlog::info("muxserved: placement plan (as `muxserve plan` prints it):\n{}",
               std::string(absl::StripSuffix(table, "\n")));
  return *std::move(plan);
}

std::optional<double> PlannedDecodeSmShare(const planner::ConfigPlan& plan, size_t unit) {
  if (unit >= plan.placement.units.size() || plan.placement.units[unit].llms.empty()) {
    return std::nullopt;
  }
  // The engine gives every decode job of a unit one partition size, while the plan sizes a share
  // per LLM: weighting by rate gives the LLMs with the most decode work about what was planned
  // for them.
  double weighted = 0, rates = 0;
  for (const planner::LlmPlan& llm : plan.placement.units[unit].llms) {
    const double rate = plan.problem.models[llm.model].rate;
    weighted += rate * llm.decode_sm_share;
    rates += rate;
  }
  // Both the decode and the prefill partition keep at least the planner's smallest share step.
  const double step = plan.problem.options.sm_shares.front();
  return std::clamp(weighted / rates, step, 1 - step);
}

engine::UnitOptions ResolveUnitOptions(const config::Config& config,
                                       const planner::ConfigPlan* plan, size_t unit) {
  engine::UnitOptions options;
  options.cpu_threads = config.runtime.cpu_threads;
  options.kv_cache = config.kv_cache;
  options.scheduler = config.scheduler;
  options.max_queued_requests = config.server.max_queued_requests;
  options.partitions = config.runtime.partitions;
  if (config.scheduler.mode == config::SchedulerMode::kMuxserve &&
      !config.scheduler.decode_sm_share_set && plan != nullptr) {
    if (std::optional<double> share = PlannedDecodeSmShare(*plan, unit)) {
      options.scheduler.decode_sm_share = *share;
      spdlog::info(
          "muxserved: unit{}: decode share {:.1f}% of the SMs beside a prefill (the plan's; "
          "scheduler.decode_sm_share is unset; used with green or mps partitions)",
          unit, 100 * *share);
    }
  }
  return options;
}

ServingLayout ResolveServingLayout(const config::Config& config, const planner::ConfigPlan* plan) {
  ServingLayout layout;
  if (plan == nullptr) {
    UnitSetup unit{.options = ResolveUnitOptions(config, nullptr), .models = {}};
    unit.options.name = "unit0";
    for (const config::ModelConfig& model : config.models) unit.models.push_back(model.name);
    layout.units.push_back(std::move(unit));
    return layout;
  }
  const std::vector<planner::UnitPlan>& units = plan->placement.units;
  for (size_t i = 0; i < units.size(); ++i) {
    const planner::UnitPlan& planned = units[i];
    std::vector<std::string> models;
    for (const planner::LlmPlan& llm : planned.llms) {
      models.push_back(plan->problem.models[llm.model].name);
    }
    if (planned.node != 0) {
      for (const std::string& model : models) {
        layout.elsewhere[model] = absl::StrCat(
            "the plan places it on node ", planned.node, " (", DescribeUnit(*plan, i),
            "); this daemon serves node 0: start muxserved there");
      }
      spdlog::warn("muxserved: {} is on node {}: not served by this daemon",
                   DescribeUnit(*plan, i), planned.node);
      continue;
    }
    UnitSetup unit{.options = ResolveUnitOptions(config, plan, i), .models = std::move(models)};
    unit.options.name = absl::StrCat("unit", i);
    // On node 0 the cluster-wide GPU ids are the node's CUDA ordinals.
    unit.options.devices.assign(planned.gpus.begin(), planned.gpus.end());
    unit.options.tensor_parallel = static_cast<int>(planned.gpus.size());
    spdlog::info("muxserved: serving {}{}", DescribeUnit(*plan, i),
                 planned.gpus.size() > 1
                     ? absl::StrCat(", tensor parallel over ", planned.gpus.size(), " ranks")
                     : std::string());
    layout.units.push_back(std::move(unit));
  }
  return layout;
}

}  // namespace muxserve::server
