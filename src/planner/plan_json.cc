// The plan as JSON: the format docs/planner.md ("Plan JSON") describes.
#include "muxserve/planner/placement.h"
#include "nlohmann/json.hpp"

namespace muxserve::planner {

std::string PlacementToJson(const PlacementProblem& problem, const Placement& placement) {
  const config::ClusterConfig& cluster = problem.cluster;
  nlohmann::json units = nlohmann::json::array();
  for (const UnitPlan& unit : placement.units) {
    nlohmann::json llms = nlohmann::json::array();
    for (const LlmPlan& llm : unit.llms) {
      const PlannerModel& model = problem.models[llm.model];
      llms.push_back({{"name", model.name},
                      {"rate", model.rate},
                      {"prefill_sm_share", llm.prefill_sm_share},
                      {"decode_sm_share", llm.decode_sm_share},
                      {"weight_bytes", llm.weight_bytes},
                      {"workspace_bytes", llm.workspace_bytes},
                      {"kv_quota_bytes", llm.kv_quota_bytes},
                      {"max_batch", llm.max_batch},
                      {"decode_batch", llm.decode_batch},
                      {"capacity", llm.capacity},
                      {"throughput", llm.throughput}});
    }
    units.push_back({{"node", unit.node},
                     {"gpus", unit.gpus},
                     {"memory_bytes", unit.memory_bytes},
                     {"kv_pool_bytes", unit.kv_pool_bytes},
                     {"sm_load", unit.sm_load},
                     {"bandwidth_load", unit.bandwidth_load},
                     {"throughput", unit.Throughput()},
                     {"llms", std::move(llms)}});
  }
  nlohmann::json root = {{"cluster",
                          {{"nodes", cluster.nodes},
                           {"gpus_per_node", cluster.gpus_per_node},
                           {"gpu",
                            {{"name", cluster.gpu.name},
                             {"memory_bytes", cluster.gpu.memory_bytes},
                             {"sm_count", cluster.gpu.sm_count},
                             {"bandwidth", cluster.gpu.bandwidth},
                             {"flops", cluster.gpu.flops}}}}},
                         {"cost_model", placement.cost_model},
                         {"mesh_group", placement.mesh_group},
                         {"mesh_groups_searched", placement.mesh_groups_searched},
                         {"plan_seconds", placement.plan_seconds},
                         {"total_rate", placement.total_rate},
                         {"total_throughput", placement.total_throughput},
                         {"weighted_throughput", placement.weighted_throughput},
                         {"units", std::move(units)}};
  return root.dump(2) + "\n";
}

}  // namespace muxserve::planner
