#include "muxserve/server/startup_plan.h"

#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
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
  const std::vector<planner::UnitPlan>& units = plan->placement.units;
  if (units.size() > 1 || (units.size() == 1 && units.front().gpus.size() > 1)) {
    std::vector<std::string> described;
    for (size_t i = 0; i < units.size(); ++i) described.push_back(DescribeUnit(*plan, i));
    spdlog::warn(
        "muxserved: the plan uses {} unit(s) over more than one GPU: {}; this daemon serves every "
        "model on one unit on one device (multi-unit serving is not wired yet)",
        units.size(), absl::StrJoin(described, "; "));
  }
  return *std::move(plan);
}

std::optional<double> PlannedDecodeSmShare(const planner::ConfigPlan& plan) {
  if (plan.placement.units.empty() || plan.placement.units.front().llms.empty()) {
    return std::nullopt;
  }
  // The engine gives every decode job of a unit one partition size, while the plan sizes a share
  // per LLM: weighting by rate gives the LLMs with the most decode work about what was planned
  // for them.
  double weighted = 0, rates = 0;
  for (const planner::LlmPlan& llm : plan.placement.units.front().llms) {
    const double rate = plan.problem.models[llm.model].rate;
    weighted += rate * llm.decode_sm_share;
    rates += rate;
  }
  // Both the decode and the prefill partition keep at least the planner's smallest share step.
  const double step = plan.problem.options.sm_shares.front();
  return std::clamp(weighted / rates, step, 1 - step);
}

engine::UnitOptions ResolveUnitOptions(const config::Config& config,
                                       const planner::ConfigPlan* plan) {
  engine::UnitOptions options;
  options.cpu_threads = config.runtime.cpu_threads;
  options.kv_cache = config.kv_cache;
  options.scheduler = config.scheduler;
  options.max_queued_requests = config.server.max_queued_requests;
  options.partitions = config.runtime.partitions;
  if (config.scheduler.mode == config::SchedulerMode::kMuxserve &&
      !config.scheduler.decode_sm_share_set && plan != nullptr) {
    if (std::optional<double> share = PlannedDecodeSmShare(*plan)) {
      options.scheduler.decode_sm_share = *share;
      spdlog::info(
          "muxserved: decode share {:.1f}% of the SMs beside a prefill (the plan's; "
          "scheduler.decode_sm_share is unset; used with green or mps partitions)",
          100 * *share);
    }
  }
  return options;
}

}  // namespace muxserve::server
