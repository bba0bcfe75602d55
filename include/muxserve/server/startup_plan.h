// The placement plan at daemon start-up: the planner runs on the loaded config as `muxserve plan`
// does, the daemon logs its table, and applies what fits its one unit on one device.
#pragma once

#include <optional>

#include "absl/status/statusor.h"
#include "muxserve/config/config.h"
#include "muxserve/engine/unit_engine.h"
#include "muxserve/planner/placement.h"

namespace muxserve::server {

// Plans the config's models and logs the plan table (info), or the planner's error (warning):
// planning never stops the daemon. Also warns when the plan wants more units or GPUs than the
// daemon serves. nullopt when planning failed or there are no models.
std::optional<planner::ConfigPlan> PlanAtStartup(const config::Config& config);

// The decode SM share the plan gives the LLMs of its first unit (where the daemon serves every
// model), clamped to what the engine can split; nullopt for an empty plan.
std::optional<double> PlannedDecodeSmShare(const planner::ConfigPlan& plan);

// The options of the daemon's one unit from the config, with scheduler.decode_sm_share from the
// plan when the YAML leaves it unset (muxserve mode). Name, backend and spatial shares are left to
// the caller.
engine::UnitOptions ResolveUnitOptions(const config::Config& config,
                                       const planner::ConfigPlan* plan);

}  // namespace muxserve::server
