// The placement planner: which LLMs share which GPUs (units), with what SM shares and KV quotas.
// An enumeration-based greedy in MuxServe's manner, with its defects fixed (docs/planner.md):
// sizes and FLOPs come from each model's config, KV sizing is GQA-aware, and co-located prefill
// and decode jobs overlap on SM partitions instead of being assumed serialized.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "muxserve/config/config.h"
#include "muxserve/planner/cost_model.h"

namespace muxserve::planner {

// One LLM to place, with its expected load.
struct PlannerModel {
  std::string name;
  ModelShape shape;
  double rate = 1.0;            // requests per second
  int64_t prompt_tokens = 161;  // mean lengths of its requests
  int64_t output_tokens = 337;
};

struct PlannerOptions {
  // Per GPU, held back from weights and KV: CUDA context, cuBLAS workspace, fragmentation.
  double reserved_memory_fraction = 0.05;
  int64_t max_prefill_tokens = 2048;  // prompt tokens in one prefill job (scheduler setting)
  int64_t max_batch_size = 256;       // sequences in one decode job (scheduler setting)
  // An LLM is only placed where its KV quota holds this many whole requests.
  int64_t min_kv_sequences = 1;
  // SM shares a job may get, as fractions of each GPU's SMs.
  std::vector<double> sm_shares = {0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875, 1.0};
  // A decode share must serve the rate with this headroom before a smaller one is preferred.
  double decode_headroom = 0.1;
  // Prefill jobs get the smallest share whose latency is within this factor of the whole GPU's.
  double prefill_latency_slack = 2.0;
};

struct PlacementProblem {
  config::ClusterConfig cluster;
  std::vector<PlannerModel> models;
  PlannerOptions options;
};

// One LLM inside a unit.
struct LlmPlan {
  int model = 0;  // index into PlacementProblem::models
  double prefill_sm_share = 1.0;
  double decode_sm_share = 1.0;
  int64_t weight_bytes = 0;     // over the whole unit
  int64_t workspace_bytes = 0;  // activations and logits of one job, over the whole unit
  int64_t kv_quota_bytes = 0;
  int64_t max_batch = 0;     // concurrent requests the KV quota holds
  int64_t decode_batch = 0;  // batch at which decode keeps up with the rate (or max_batch)
  double capacity = 0;       // requests/s it could serve on this unit, contention included
  double throughput = 0;     // predicted requests/s served: min(rate, capacity)
};

struct UnitPlan {
  int node = 0;
  std::vector<int64_t> gpus;  // cluster-wide ids
  std::vector<LlmPlan> llms;
  int64_t memory_bytes = 0;   // usable: all GPUs of the unit less the reserve
  int64_t kv_pool_bytes = 0;  // what is left for KV after weights and workspaces
  double sm_load = 0;         // SM-time demanded per unit of time (> 1: jobs queue)
  double bandwidth_load = 0;  // HBM bytes demanded / bandwidth
  double Throughput() const;  // sum of the LLMs' predicted throughput
};

struct Placement {
  std::vector<UnitPlan> units;  // units with at least one LLM
  double total_rate = 0;        // sum of the rates
  double total_throughput = 0;  // sum of the predicted throughputs
  // MuxServe's objective: sum(rate * throughput) / sum(rate).
  double weighted_throughput = 0;
  std::string mesh_group;  // e.g. "node0 [4 2 1 1], node1 [8]"; "pinned" for a YAML placement
  int64_t mesh_groups_searched = 0;
  std::string cost_model;  // CostModel::Describe() after planning
  double plan_seconds = 0;
};

// The LLMs of `config` with their shapes (synthetic specs, or config.json of each `path`).
absl::StatusOr<PlacementProblem> ProblemFromConfig(const config::Config& config);

// The cost model the config asks for: its cost table, or the roofline estimate.
absl::StatusOr<std::unique_ptr<CostModel>> CostModelFromConfig(const config::Config& config);

// What `muxserve plan` and the daemon's start-up run: the YAML's pinned units sized
// (EvaluatePinned) when it pins them, else the greedy's placement (PlanPlacement).
absl::StatusOr<Placement> PlaceFromConfig(const config::Config& config,
                                          const PlacementProblem& problem, const CostModel& cost);

// A config's problem and its placement (ProblemFromConfig, CostModelFromConfig, PlaceFromConfig).
struct ConfigPlan {
  PlacementProblem problem;
  Placement placement;
};
absl::StatusOr<ConfigPlan> PlanFromConfig(const config::Config& config);

// The enumeration-based greedy. Errors (INVALID_ARGUMENT / RESOURCE_EXHAUSTED) name the model,
// what it needs and what the cluster offers.
absl::StatusOr<Placement> PlanPlacement(const PlacementProblem& problem, const CostModel& cost);

// Sizes SM shares and KV quotas of a placement the YAML pins.
absl::StatusOr<Placement> EvaluatePinned(const PlacementProblem& problem,
                                         const std::vector<config::PinnedUnit>& units,
                                         const CostModel& cost);

// The same estimator over every assignment of the LLMs to the meshes of every mesh group: the
// optimum the greedy is tested against. Exponential: small problems only (<= 8 LLMs).
absl::StatusOr<Placement> PlanExhaustive(const PlacementProblem& problem, const CostModel& cost);

// The power-of-two splits of one node's GPUs, largest mesh first: 10 of them for 8 GPUs.
std::vector<std::vector<int>> NodeMeshPatterns(int gpus_per_node);

// The placement as JSON (docs/planner.md: "Plan JSON") and as a text table.
std::string PlacementToJson(const PlacementProblem& problem, const Placement& placement);
std::string FormatPlacement(const PlacementProblem& problem, const Placement& placement);

}  // namespace muxserve::planner
