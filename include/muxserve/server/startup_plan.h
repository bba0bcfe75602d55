// The placement plan at daemon start-up: the planner runs on the loaded config as `muxserve plan`
// does, the daemon logs its table and serves its units (each on its GPUs, tensor parallel over
// them), or one unit of every model when there is no plan.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "muxserve/config/config.h"
#include "muxserve/engine/unit_engine.h"
#include "muxserve/planner/placement.h"

namespace muxserve::server {

// Plans the config's models and logs the plan table (info), or the planner's error (warning):
// planning never stops the daemon. nullopt when planning failed or there are no models.
std::optional<planner::ConfigPlan> PlanAtStartup(const config::Config& config);

// The decode SM share the plan gives the LLMs of unit `unit`, clamped to what the engine can
// split; nullopt for an empty unit or plan.
std::optional<double> PlannedDecodeSmShare(const planner::ConfigPlan& plan, size_t unit = 0);

// The options of one unit from the config, with scheduler.decode_sm_share from the plan's unit
// `unit` when the YAML leaves it unset (muxserve mode). Name, devices, backend and spatial shares
// are left to the caller.
engine::UnitOptions ResolveUnitOptions(const config::Config& config,
                                       const planner::ConfigPlan* plan, size_t unit = 0);

// Spatial mode: each model's share of the SMs, its models[].sm_share where set; the models
// without one split what is left by `split`: in proportion to weights + KV quota (the unit's
// `kv_memory_bytes` shared out by rate x KV bytes per token, as the engine sets quotas) for
// kMemory, or to rate x FLOPs per token for kCompute. INVALID_ARGUMENT when the set shares add
// up to more than 1; a model's config.json that cannot be read is its error.
absl::StatusOr<std::vector<std::pair<std::string, double>>> SpatialSmShares(
    const std::vector<config::ModelConfig>& models, config::SpatialSplit split,
    int64_t kv_memory_bytes);

// decode_priority: by_rate: each model's rank by expected rate, 0 for the most requested; equal
// rates share a rank, and the next rate down takes the next rank.
std::vector<std::pair<std::string, int>> RateRanks(const std::vector<config::ModelConfig>& models);

// One unit the daemon serves: its engine's options and its models, by name.
struct UnitSetup {
  engine::UnitOptions options;
  std::vector<std::string> models;
};
// What this daemon (node 0 of the cluster) serves.
struct ServingLayout {
  std::vector<UnitSetup> units;
  // Models the plan puts on another node -> why this daemon does not serve them.
  std::map<std::string, std::string> elsewhere;
};
// The plan's units on node 0 ("unit<i>" as the plan table numbers them; GPUs as the node's
// device ordinals; tensor parallel over a unit's GPUs), or without a plan one unit "unit0" of
// every model on GPU 0. Each unit is logged.
ServingLayout ResolveServingLayout(const config::Config& config, const planner::ConfigPlan* plan);

}  // namespace muxserve::server
