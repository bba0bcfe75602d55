// The unit throughput estimator F (docs/planner.md: "The estimator"): for a set of LLMs on a mesh,
// their KV quotas, SM shares, decode batches and predicted throughput. Private to the planner.
#pragma once

#include <cstdint>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "muxserve/planner/placement.h"

namespace muxserve::planner {

// What the search needs from one unit evaluation.
struct UnitScore {
  bool feasible = false;
  double weighted = 0;  // sum of rate * throughput
  double load = 0;      // max(SM load, bandwidth load)
};

class Estimator {
 public:
  Estimator(const PlacementProblem& problem, const CostModel& cost);

  // Bytes a model needs on a mesh of `mesh_gpus` GPUs: weights, workspace, minimum KV.
  int64_t MemoryNeed(int model, int mesh_gpus) const;
  int64_t UsableMemory(int mesh_gpus) const;
  // Whether the model's heads split over `mesh_gpus` GPUs and it fits there alone.
  bool FitsAlone(int model, int mesh_gpus) const;
  bool SplitsOver(int model, int mesh_gpus) const;

  // Fills `unit` (llms, memory, loads; not node or gpus). False when the models do not fit.
  bool Estimate(const std::vector<int>& models, int mesh_gpus, UnitPlan* unit) const;
  // The same, summarized and cached by (mesh size, sorted models).
  UnitScore Score(const std::vector<int>& models, int mesh_gpus) const;

  const PlacementProblem& problem() const { return problem_; }

 private:
  struct ModelFacts {
    int64_t weight_bytes = 0;
    int64_t kv_bytes_per_token = 0;
    int64_t request_kv_bytes = 0;  // KV of one request: prompt + output tokens
    double kv_demand = 0;          // rate * request_kv_bytes: weight of its KV quota
  };
  // Prefill share choice of one model on one mesh size (independent of the co-located LLMs).
  struct PrefillChoice {
    double sm_share = 1;
    int64_t batch = 1;         // prompts in one prefill job
    double seconds = 0;        // one prefill job
    double bytes_per_gpu = 0;  // HBM traffic of one job on each GPU
  };
  struct DecodeChoice {
    double sm_share = 1;
    int64_t batch = 1;
    double capacity = 0;       // requests/s at max_batch
    double duty = 0;           // fraction of time a decode job of this LLM runs
    double bandwidth_use = 0;  // bytes/s of each GPU, as a fraction of its bandwidth, times duty
  };

  int64_t WorkspaceBytes(int model, int mesh_gpus) const;
  const PrefillChoice& Prefill(int model, int mesh_gpus) const;
  // Decode of one model at one share: batch, capacity, duty, bandwidth.
  DecodeChoice DecodeAt(int model, int mesh_gpus, int64_t max_batch, size_t share_index) const;
  // The index of the smallest share that serves the rate with headroom, else of the smallest
  // share within 5% of the best capacity.
  size_t SmallestDecodeShare(int model, int mesh_gpus, int64_t max_batch) const;

  const PlacementProblem& problem_;
  const CostModel& cost_;
  std::vector<ModelFacts> facts_;
  mutable absl::flat_hash_map<std::pair<int, int>, PrefillChoice> prefill_cache_;
  mutable absl::flat_hash_map<std::tuple<int, int, int64_t, size_t>, DecodeChoice> decode_cache_;
  mutable absl::flat_hash_map<std::tuple<int, int, int64_t>, size_t> smallest_share_cache_;
  mutable absl::flat_hash_map<std::pair<int, std::vector<int>>, UnitScore> score_cache_;
};

}  // namespace muxserve::planner
