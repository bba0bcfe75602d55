#include "muxserve/planner/placement.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <functional>
#include <numeric>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "estimator.h"
#include "muxserve/common/status.h"

namespace muxserve::planner {
namespace {

constexpr double kTieTolerance = 1e-9;

struct Mesh {
  int node = 0;
  int size = 0;
  int first_gpu = 0;  // local id on its node
};

// A mesh group: the meshes of every node, node by node.
struct MeshGroup {
  std::vector<Mesh> meshes;
  std::string name;
};

// The result of one search over one mesh group.
struct GroupResult {
  bool feasible = false;
  std::vector<std::vector<int>> members;  // per mesh
  double weighted = 0;                    // sum of rate * throughput
  double max_load = 0;
  int unplaced_model = -1;  // the model the greedy could not place
};

// Decimal units, as GPU memory is sold: "13.5 GB", "48.2 MB".
std::string Gigabytes(int64_t bytes) {
  const double value = static_cast<double>(bytes);
  if (value >= 1e9) return absl::StrFormat("%.1f GB", value / 1e9);
  if (value >= 1e6) return absl::StrFormat("%.1f MB", value / 1e6);
  return absl::StrFormat("%.1f KB", value / 1e3);
}

// Greater score first: the objective, then the lower peak load (more headroom), then fewer
// GPUs in use.
bool Better(double weighted, double load, double best_weighted, double best_load) {
  const double scale = std::max({1.0, std::abs(weighted), std::abs(best_weighted)});
  if (weighted > best_weighted + kTieTolerance * scale) return true;
  if (weighted < best_weighted - kTieTolerance * scale) return false;
  return load < best_load - kTieTolerance;
}

void EnumeratePatterns(int remaining, int largest, std::vector<int>* current,
                       std::vector<std::vector<int>>* out) {
  if (remaining == 0) {
    out->push_back(*current);
    return;
  }
  for (int size = std::min(largest, remaining); size >= 1; size /= 2) {
    current->push_back(size);
    EnumeratePatterns(remaining - size, size, current, out);
    current->pop_back();
  }
}

// Every multiset of node patterns (nodes are identical, so order does not matter).
std::vector<MeshGroup> MeshGroups(const config::ClusterConfig& cluster) {
  const std::vector<std::vector<int>> patterns =
      NodeMeshPatterns(static_cast<int>(cluster.gpus_per_node));
  std::vector<MeshGroup> groups;
  std::vector<size_t> choice(static_cast<size_t>(cluster.nodes), 0);
  std::function<void(size_t, size_t)> recurse = [&](size_t node, size_t first) {
    if (node == choice.size()) {
      MeshGroup group;
      std::vector<std::string> parts;
      for (size_t n = 0; n < choice.size(); ++n) {
        int local = 0;
        for (int size : patterns[choice[n]]) {
          group.meshes.push_back({static_cast<int>(n), size, local});
          local += size;
        }
        parts.push_back(
            absl::StrCat("node", n, " [", absl::StrJoin(patterns[choice[n]], " "), "]"));
      }
      group.name = absl::StrJoin(parts, ", ");
      groups.push_back(std::move(group));
      return;
    }
    for (size_t p = first; p < patterns.size(); ++p) {
      choice[node] = p;
      recurse(node + 1, p);
    }
  };
  recurse(0, 0);
  return groups;
}

// The greedy on one mesh group: LLMs by computation demand, each to the mesh where the
// objective gains most.
GroupResult Greedy(const Estimator& estimator, const MeshGroup& group,
                   const std::vector<int>& order) {
  GroupResult result;
  result.members.resize(group.meshes.size());
  std::vector<UnitScore> scores(group.meshes.size());
  for (int model : order) {
    int best = -1;
    double best_gain = 0, best_load = 0;
    UnitScore best_score;
    std::vector<int> tried_empty_sizes;
    for (size_t m = 0; m < group.meshes.size(); ++m) {
      const int size = group.meshes[m].size;
      if (result.members[m].empty()) {
        // Empty meshes of one size are interchangeable.
        if (std::find(tried_empty_sizes.begin(), tried_empty_sizes.end(), size) !=
            tried_empty_sizes.end()) {
          continue;
        }
        tried_empty_sizes.push_back(size);
      }
      if (!estimator.FitsAlone(model, size)) continue;
      std::vector<int> members = result.members[m];
      members.push_back(model);
      const UnitScore score = estimator.Score(members, size);
      if (!score.feasible) continue;
      const double gain = score.weighted - scores[m].weighted;
      if (best < 0 || Better(gain, score.load, best_gain, best_load)) {
        best = static_cast<int>(m);
        best_gain = gain;
        best_load = score.load;
        best_score = score;
      }
    }
    if (best < 0) {
      result.unplaced_model = model;
      return result;
    }
    result.members[best].push_back(model);
    scores[best] = best_score;
  }
  result.feasible = true;
  for (const UnitScore& score : scores) {
    result.weighted += score.weighted;
    result.max_load = std::max(result.max_load, score.load);
  }
  return result;
}

// The greedy, and when an LLM finds no room (a bin-packing failure: memory went to LLMs of higher
// demand), again with that LLM moved to the front, until all fit or the front one fails.
GroupResult RepairedGreedy(const Estimator& estimator, const MeshGroup& group,
                           std::vector<int> order) {
  GroupResult result = Greedy(estimator, group, order);
  for (size_t attempt = 1; attempt < order.size() && !result.feasible; ++attempt) {
    auto failed = std::find(order.begin(), order.end(), result.unplaced_model);
    if (failed == order.begin()) break;
    std::rotate(order.begin(), failed, failed + 1);
    result = Greedy(estimator, group, order);
  }
  return result;
}

UnitScore ScoreOf(const Estimator& estimator, const std::vector<int>& members, int mesh_size) {
  if (members.empty()) return UnitScore{true, 0, 0};
  return estimator.Score(members, mesh_size);
}

// Local search after the greedy: moves one LLM to another mesh while that raises the objective
// (the greedy decides each LLM before knowing the later ones).
void ImproveByMoves(const Estimator& estimator, const MeshGroup& group, GroupResult* result) {
  constexpr int kMaxPasses = 4;
  const size_t meshes = group.meshes.size();
  std::vector<UnitScore> scores(meshes);
  for (size_t m = 0; m < meshes; ++m) {
    scores[m] = ScoreOf(estimator, result->members[m], group.meshes[m].size);
  }
  bool improved = true;
  for (int pass = 0; pass < kMaxPasses && improved; ++pass) {
    improved = false;
    for (size_t from = 0; from < meshes; ++from) {
      size_t i = 0;
      while (i < result->members[from].size()) {
        const int model = result->members[from][i];
        std::vector<int> rest = result->members[from];
        rest.erase(rest.begin() + static_cast<std::ptrdiff_t>(i));
        const UnitScore without = ScoreOf(estimator, rest, group.meshes[from].size);
        bool moved_out = false;
        for (size_t to = 0; to < meshes && !moved_out; ++to) {
          if (to == from || !estimator.FitsAlone(model, group.meshes[to].size)) continue;
          std::vector<int> with = result->members[to];
          with.push_back(model);
          const UnitScore moved = ScoreOf(estimator, with, group.meshes[to].size);
          if (!moved.feasible) continue;
          const double before = scores[from].weighted + scores[to].weighted;
          const double after = without.weighted + moved.weighted;
          if (after <= before + kTieTolerance * std::max(1.0, before)) continue;
          result->members[from] = rest;
          result->members[to] = std::move(with);
          scores[from] = without;
          scores[to] = moved;
          moved_out = improved = true;
        }
        if (!moved_out) ++i;  // else the next LLM now sits at index i
      }
    }
  }
  result->weighted = 0;
  result->max_load = 0;
  for (const UnitScore& score : scores) {
    result->weighted += score.weighted;
    result->max_load = std::max(result->max_load, score.load);
  }
}

// Every assignment of the LLMs to the group's meshes.
GroupResult Exhaustive(const Estimator& estimator, const MeshGroup& group, int num_models) {
  GroupResult best;
  const size_t meshes = group.meshes.size();
  std::vector<size_t> assignment(static_cast<size_t>(num_models), 0);
  while (true) {
    GroupResult candidate;
    candidate.members.resize(meshes);
    for (int model = 0; model < num_models; ++model) {
      candidate.members[assignment[model]].push_back(model);
    }
    candidate.feasible = true;
    for (size_t m = 0; m < meshes && candidate.feasible; ++m) {
      if (candidate.members[m].empty()) continue;
      const UnitScore score = estimator.Score(candidate.members[m], group.meshes[m].size);
      candidate.feasible = score.feasible;
      candidate.weighted += score.weighted;
      candidate.max_load = std::max(candidate.max_load, score.load);
    }
    if (candidate.feasible && (!best.feasible || Better(candidate.weighted, candidate.max_load,
                                                        best.weighted, best.max_load))) {
      best = std::move(candidate);
    }
    size_t digit = 0;
    while (digit < assignment.size() && ++assignment[digit] == meshes) assignment[digit++] = 0;
    if (digit == assignment.size()) break;
  }
  return best;
}

// Checks that hold for every placement: each model fits the largest unit and can serve its rate
// there alone, and the cluster holds all of them.
absl::Status CheckFeasible(const Estimator& estimator) {
  const PlacementProblem& problem = estimator.problem();
  const config::ClusterConfig& cluster = problem.cluster;
  const int largest = static_cast<int>(cluster.gpus_per_node);
  int64_t total_need = 0;
  for (size_t i = 0; i < problem.models.size(); ++i) {
    const int model = static_cast<int>(i);
    const PlannerModel& llm = problem.models[i];
    int smallest_fit = 0;
    for (int size = 1; size <= largest && smallest_fit == 0; size *= 2) {
      if (estimator.FitsAlone(model, size)) smallest_fit = size;
    }
    if (smallest_fit == 0) {
      const int64_t need = estimator.MemoryNeed(model, largest);
      const int64_t weights = llm.shape.spec.WeightBytes(llm.shape.dtype);
      const std::string split =
          estimator.SplitsOver(model, largest)
              ? ""
              : absl::StrFormat(" (and its %d heads, %d KV heads do not split over %d GPUs)",
                                llm.shape.spec.num_heads, llm.shape.spec.num_kv_heads, largest);
      return absl::ResourceExhaustedError(absl::StrFormat(
          "model '%s' needs %s (weights %s, workspace and one request's KV %s) but the largest "
          "unit, %d x %s of one node, offers %s usable%s",
          llm.name, Gigabytes(need), Gigabytes(weights), Gigabytes(need - weights), largest,
          cluster.gpu.name, Gigabytes(estimator.UsableMemory(largest)), split));
    }
    total_need += estimator.MemoryNeed(model, smallest_fit);
    double best_capacity = 0;
    int best_size = smallest_fit;
    UnitPlan alone;
    for (int size = smallest_fit; size <= largest; size *= 2) {
      if (estimator.Estimate({model}, size, &alone) && alone.llms[0].capacity > best_capacity) {
        best_capacity = alone.llms[0].capacity;
        best_size = size;
      }
    }
    if (best_capacity < llm.rate) {
      return absl::ResourceExhaustedError(absl::StrFormat(
          "model '%s' asks for %.3g requests/s (prompt %d, output %d tokens) but even alone on "
          "%d x %s it serves at most %.3g requests/s: lower its rate (one unit serves each model)",
          llm.name, llm.rate, llm.prompt_tokens, llm.output_tokens, best_size, cluster.gpu.name,
          best_capacity));
    }
  }
  const int64_t gpus = cluster.nodes * cluster.gpus_per_node;
  if (total_need > estimator.UsableMemory(static_cast<int>(gpus))) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "the %d models need at least %s (weights, workspaces, one request's KV each) but the "
        "cluster's %d x %s offer %s usable",
        problem.models.size(), Gigabytes(total_need), gpus, cluster.gpu.name,
        Gigabytes(estimator.UsableMemory(static_cast<int>(gpus)))));
  }
  return absl::OkStatus();
}

absl::Status CheckOptions(const PlacementProblem& problem) {
  if (problem.models.empty()) return absl::InvalidArgumentError("no models to place");
  if (problem.cluster.nodes < 1 || problem.cluster.gpus_per_node < 1 ||
      problem.cluster.gpus_per_node > 8 ||
      (problem.cluster.gpus_per_node & (problem.cluster.gpus_per_node - 1)) != 0) {
    return absl::InvalidArgumentError("cluster: nodes >= 1 and gpus_per_node 1, 2, 4 or 8");
  }
  if (problem.options.min_kv_sequences < 1 || problem.options.sm_shares.empty() ||
      problem.options.max_batch_size < 1 || problem.options.max_prefill_tokens < 1) {
    return absl::InvalidArgumentError("planner options out of range");
  }
  for (const PlannerModel& model : problem.models) {
    if (!(model.rate > 0) || model.prompt_tokens < 1 || model.output_tokens < 1 ||
        model.shape.spec.num_layers < 1 || model.shape.spec.num_heads < 1 ||
        model.shape.spec.num_kv_heads < 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("model '", model.name, "': rate, lengths and shape must be positive"));
    }
  }
  return absl::OkStatus();
}

// The full plan of a search result.
Placement BuildPlacement(const Estimator& estimator, const MeshGroup& group,
                         const GroupResult& result) {
  const PlacementProblem& problem = estimator.problem();
  Placement placement;
  placement.mesh_group = group.name;
  for (size_t m = 0; m < group.meshes.size(); ++m) {
    if (result.members[m].empty()) continue;
    const Mesh& mesh = group.meshes[m];
    UnitPlan unit;
    estimator.Estimate(result.members[m], mesh.size, &unit);
    unit.node = mesh.node;
    for (int g = 0; g < mesh.size; ++g) {
      unit.gpus.push_back(mesh.node * problem.cluster.gpus_per_node + mesh.first_gpu + g);
    }
    placement.units.push_back(std::move(unit));
  }
  for (const PlannerModel& model : problem.models) placement.total_rate += model.rate;
  double weighted = 0;
  for (const UnitPlan& unit : placement.units) {
    for (const LlmPlan& llm : unit.llms) {
      placement.total_throughput += llm.throughput;
      weighted += problem.models[llm.model].rate * llm.throughput;
    }
  }
  placement.weighted_throughput = weighted / placement.total_rate;
  return placement;
}

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

std::string Range(const std::vector<int64_t>& gpus) {
  if (gpus.size() == 1) return absl::StrCat(gpus.front());
  return absl::StrCat(gpus.front(), "-", gpus.back());
}

// Left-aligned columns, two spaces apart.
std::string Table(const std::vector<std::string>& header,
                  const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> widths(header.size(), 0);
  for (size_t c = 0; c < header.size(); ++c) widths[c] = header[c].size();
  for (const auto& row : rows) {
    for (size_t c = 0; c < row.size(); ++c) widths[c] = std::max(widths[c], row[c].size());
  }
  std::string out;
  auto append = [&](const std::vector<std::string>& row) {
    std::string line;
    for (size_t c = 0; c < row.size(); ++c) {
      absl::StrAppend(&line, row[c]);
      if (c + 1 < row.size()) line.append(widths[c] - row[c].size() + 2, ' ');
    }
    absl::StrAppend(&out, line, "\n");
  };
  append(header);
  for (const auto& row : rows) append(row);
  return out;
}

}  // namespace

std::vector<std::vector<int>> NodeMeshPatterns(int gpus_per_node) {
  std::vector<std::vector<int>> patterns;
  std::vector<int> current;
  EnumeratePatterns(gpus_per_node, gpus_per_node, &current, &patterns);
  return patterns;
}

absl::StatusOr<Placement> PlanPlacement(const PlacementProblem& problem, const CostModel& cost) {
  const auto start = std::chrono::steady_clock::now();
  RETURN_IF_ERROR(CheckOptions(problem));
  Estimator estimator(problem, cost);
  RETURN_IF_ERROR(CheckFeasible(estimator));

  // Computation demand: rate x FLOPs of a mean token; larger models first on ties.
  const int num_models = static_cast<int>(problem.models.size());
  std::vector<double> demand(problem.models.size()), flops(problem.models.size());
  int largest_minimum_mesh = 1;
  for (int i = 0; i < num_models; ++i) {
    const PlannerModel& llm = problem.models[i];
    flops[i] = llm.shape.spec.FlopsPerToken(llm.prompt_tokens + llm.output_tokens / 2);
    demand[i] = llm.rate * flops[i];
    int minimum = 1;
    while (!estimator.FitsAlone(i, minimum)) minimum *= 2;
    largest_minimum_mesh = std::max(largest_minimum_mesh, minimum);
  }
  std::vector<int> order(problem.models.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
    return demand[a] != demand[b] ? demand[a] > demand[b] : flops[a] > flops[b];
  });

  const std::vector<MeshGroup> groups = MeshGroups(problem.cluster);
  GroupResult best;
  const MeshGroup* best_group = nullptr;
  const MeshGroup* furthest_group = nullptr;
  int furthest_model = -1;
  int64_t searched = 0;
  for (const MeshGroup& group : groups) {
    int largest_mesh = 0;
    for (const Mesh& mesh : group.meshes) largest_mesh = std::max(largest_mesh, mesh.size);
    // A group whose largest mesh is smaller than some LLM's minimum cannot place that LLM.
    // (MuxServe also skips groups with more meshes than LLMs; the cached estimator makes them
    // cheap, and without them a cluster larger than the LLMs need would have no group.)
    if (largest_mesh < largest_minimum_mesh) continue;
    ++searched;
    GroupResult result = RepairedGreedy(estimator, group, order);
    if (result.feasible) ImproveByMoves(estimator, group, &result);
    if (!result.feasible) {
      if (furthest_group == nullptr) {
        furthest_group = &group;
        furthest_model = result.unplaced_model;
      }
      continue;
    }
    if (best_group == nullptr ||
        Better(result.weighted, result.max_load, best.weighted, best.max_load)) {
      best = std::move(result);
      best_group = &group;
    }
  }
  if (best_group == nullptr) {
    const std::string model =
        furthest_model >= 0 ? problem.models[furthest_model].name : problem.models[0].name;
    return absl::ResourceExhaustedError(absl::StrCat(
        "no mesh group of the cluster (", problem.cluster.nodes, " x ",
        problem.cluster.gpus_per_node, " ", problem.cluster.gpu.name, ") holds all models: in ",
        furthest_group ? furthest_group->name : "every group", " model '", model,
        "' fit in no unit beside the models placed before it; add GPUs or "
        "drop models"));
  }
  Placement placement = BuildPlacement(estimator, *best_group, best);
  placement.mesh_groups_searched = searched;
  placement.cost_model = cost.Describe();
  placement.plan_seconds = SecondsSince(start);
  return placement;
}

absl::StatusOr<Placement> PlanExhaustive(const PlacementProblem& problem, const CostModel& cost) {
  const auto start = std::chrono::steady_clock::now();
  RETURN_IF_ERROR(CheckOptions(problem));
  if (problem.models.size() > 8) {
    return absl::InvalidArgumentError("exhaustive search is for at most 8 models");
  }
  Estimator estimator(problem, cost);
  RETURN_IF_ERROR(CheckFeasible(estimator));
  const std::vector<MeshGroup> groups = MeshGroups(problem.cluster);
  GroupResult best;
  const MeshGroup* best_group = nullptr;
  for (const MeshGroup& group : groups) {
    GroupResult result = Exhaustive(estimator, group, static_cast<int>(problem.models.size()));
    if (result.feasible && (best_group == nullptr || Better(result.weighted, result.max_load,
                                                            best.weighted, best.max_load))) {
      best = std::move(result);
      best_group = &group;
    }
  }
  if (best_group == nullptr) {
    return absl::ResourceExhaustedError("no assignment of the models to the cluster fits");
  }
  Placement placement = BuildPlacement(estimator, *best_group, best);
  placement.mesh_groups_searched = static_cast<int64_t>(groups.size());
  placement.cost_model = cost.Describe();
  placement.plan_seconds = SecondsSince(start);
  return placement;
}

absl::StatusOr<Placement> EvaluatePinned(const PlacementProblem& problem,
                                         const std::vector<config::PinnedUnit>& units,
                                         const CostModel& cost) {
  const auto start = std::chrono::steady_clock::now();
  RETURN_IF_ERROR(CheckOptions(problem));
  Estimator estimator(problem, cost);
  Placement placement;
  placement.mesh_group = "pinned by the config";
  double weighted = 0;
  for (const config::PinnedUnit& pinned : units) {
    std::vector<int> members;
    for (const std::string& name : pinned.models) {
      auto it = std::find_if(problem.models.begin(), problem.models.end(),
                             [&](const PlannerModel& model) { return model.name == name; });
      if (it == problem.models.end()) {
        return absl::InvalidArgumentError(
            absl::StrCat("pinned unit at line ", pinned.line, ": unknown model '", name, "'"));
      }
      members.push_back(static_cast<int>(it - problem.models.begin()));
    }
    const int size = static_cast<int>(pinned.gpus.size());
    UnitPlan unit;
    if (!estimator.Estimate(members, size, &unit)) {
      int64_t need = 0;
      std::vector<std::string> parts;
      for (int model : members) {
        need += estimator.MemoryNeed(model, size);
        parts.push_back(absl::StrCat(
            problem.models[model].name, " ", Gigabytes(estimator.MemoryNeed(model, size)),
            estimator.SplitsOver(model, size) ? "" : " (heads do not split)"));
      }
      return absl::ResourceExhaustedError(absl::StrFormat(
          "pinned unit at line %d (GPUs %s): its models need %s (%s) but %d x %s offer %s usable",
          pinned.line, Range(pinned.gpus), Gigabytes(need), absl::StrJoin(parts, ", "), size,
          problem.cluster.gpu.name, Gigabytes(estimator.UsableMemory(size))));
    }
    unit.gpus = pinned.gpus;
    unit.node = static_cast<int>(pinned.gpus.front() / problem.cluster.gpus_per_node);
    for (const LlmPlan& llm : unit.llms) {
      placement.total_throughput += llm.throughput;
      weighted += problem.models[llm.model].rate * llm.throughput;
    }
    placement.units.push_back(std::move(unit));
  }
  for (const PlannerModel& model : problem.models) placement.total_rate += model.rate;
  placement.weighted_throughput = weighted / placement.total_rate;
  placement.cost_model = cost.Describe();
  placement.plan_seconds = SecondsSince(start);
  return placement;
}

absl::StatusOr<PlacementProblem> ProblemFromConfig(const config::Config& config) {
  PlacementProblem problem;
  problem.cluster = config.cluster;
  problem.options.max_prefill_tokens = config.scheduler.max_prefill_tokens;
  problem.options.max_batch_size = config.scheduler.max_batch_size;
  for (const config::ModelConfig& model : config.models) {
    PlannerModel llm;
    llm.name = model.name;
    if (model.synthetic) {
      llm.shape.spec = model.synthetic->spec;
    } else {
      absl::StatusOr<model::ModelSpec> spec = model::LoadModelSpec(model.path);
      if (!spec.ok()) return Annotate(spec.status(), absl::StrCat("model '", model.name, "'"));
      llm.shape.spec = *std::move(spec);
    }
    // Weights and KV in the dtype the GPU will compute the model in.
    llm.shape.dtype = llm.shape.spec.GpuDType(model.dtype);
    llm.rate = model.rate;
    llm.prompt_tokens = config.placement.prompt_tokens;
    llm.output_tokens = config.placement.output_tokens;
    problem.models.push_back(std::move(llm));
  }
  return problem;
}

absl::StatusOr<std::unique_ptr<CostModel>> CostModelFromConfig(const config::Config& config) {
  if (config.placement.cost_table.empty()) {
    return std::unique_ptr<CostModel>(new RooflineCostModel(config.cluster.gpu));
  }
  ASSIGN_OR_RETURN(std::unique_ptr<TableCostModel> table,
                   TableCostModel::Load(config.placement.cost_table, config.cluster.gpu));
  return std::unique_ptr<CostModel>(std::move(table));
}

absl::StatusOr<Placement> PlaceFromConfig(const config::Config& config,
                                          const PlacementProblem& problem, const CostModel& cost) {
  return config.placement.units.empty() ? PlanPlacement(problem, cost)
                                        : EvaluatePinned(problem, config.placement.units, cost);
}

absl::StatusOr<ConfigPlan> PlanFromConfig(const config::Config& config) {
  ConfigPlan plan;
  ASSIGN_OR_RETURN(plan.problem, ProblemFromConfig(config));
  ASSIGN_OR_RETURN(std::unique_ptr<CostModel> cost, CostModelFromConfig(config));
  ASSIGN_OR_RETURN(plan.placement, PlaceFromConfig(config, plan.problem, *cost));
  return plan;
}

std::string FormatPlacement(const PlacementProblem& problem, const Placement& placement) {
  const config::ClusterConfig& cluster = problem.cluster;
  std::string out = absl::StrFormat(
      "cluster: %d node(s) x %d %s; %d LLM(s)\ncost model: %s\nmesh group: %s "
      "(%d group(s) searched in %.2f s)\n\n",
      cluster.nodes, cluster.gpus_per_node, cluster.gpu.name, problem.models.size(),
      placement.cost_model, placement.mesh_group, placement.mesh_groups_searched,
      placement.plan_seconds);
  std::vector<std::vector<std::string>> rows;
  for (size_t u = 0; u < placement.units.size(); ++u) {
    const UnitPlan& unit = placement.units[u];
    for (size_t i = 0; i < unit.llms.size(); ++i) {
      const LlmPlan& llm = unit.llms[i];
      const PlannerModel& model = problem.models[llm.model];
      rows.push_back(
          {i == 0 ? absl::StrCat("unit", u) : "",
           i == 0 ? absl::StrCat("node", unit.node, " gpu ", Range(unit.gpus)) : "", model.name,
           absl::StrFormat("%.3g", model.rate),
           absl::StrFormat("%.0f%%/%.0f%%", 100 * llm.prefill_sm_share, 100 * llm.decode_sm_share),
           Gigabytes(llm.weight_bytes), Gigabytes(llm.kv_quota_bytes),
           absl::StrFormat("%d/%d", llm.decode_batch, llm.max_batch),
           absl::StrFormat("%.3g", llm.throughput),
           llm.throughput < model.rate * (1 - 1e-6) ? "UNDER" : "ok"});
    }
  }
  absl::StrAppend(&out, Table({"UNIT", "GPUS", "LLM", "RATE", "SM PRE/DEC", "WEIGHTS", "KV QUOTA",
                               "BATCH/MAX", "PREDICTED", "SERVED"},
                              rows));
  absl::StrAppend(&out, "\n");
  rows.clear();
  for (size_t u = 0; u < placement.units.size(); ++u) {
    const UnitPlan& unit = placement.units[u];
    int64_t weights = 0, workspace = 0;
    for (const LlmPlan& llm : unit.llms) {
      weights += llm.weight_bytes;
      workspace += llm.workspace_bytes;
    }
    rows.push_back({absl::StrCat("unit", u), absl::StrCat(unit.gpus.size()),
                    Gigabytes(unit.memory_bytes), Gigabytes(weights), Gigabytes(workspace),
                    Gigabytes(unit.kv_pool_bytes), absl::StrFormat("%.2f", unit.sm_load),
                    absl::StrFormat("%.2f", unit.bandwidth_load),
                    absl::StrFormat("%.3g", unit.Throughput())});
  }
  absl::StrAppend(&out, Table({"UNIT", "GPUS", "USABLE", "WEIGHTS", "WORKSPACE", "KV POOL",
                               "SM LOAD", "HBM LOAD", "PREDICTED"},
                              rows));
  absl::StrAppend(&out,
                  absl::StrFormat("\npredicted throughput: %.4g req/s of %.4g requested (%.1f%%); "
                                  "rate-weighted (MuxServe objective): %.4g req/s\n",
                                  placement.total_throughput, placement.total_rate,
                                  100 * placement.total_throughput / placement.total_rate,
                                  placement.weighted_throughput));
  return out;
}

}  // namespace muxserve::planner
