// Prometheus metrics of the daemon, fed by the engines through EngineObserver. Names follow
// vLLM's with the muxserve_ prefix, every series labelled model_name:
//   gauges     muxserve_num_requests_running, muxserve_num_requests_waiting,
//              muxserve_kv_cache_usage_perc, muxserve_kv_cache_used_blocks,
//              muxserve_kv_cache_quota_blocks, muxserve_fairness_ratio
//   counters   muxserve_prompt_tokens_total, muxserve_generation_tokens_total,
//              muxserve_request_success_total{finished_reason=stop|length|abort|error},
//              muxserve_jobs_total{phase}, muxserve_repartitions_total,
//              muxserve_recomputed_tokens_total
//   histograms muxserve_time_to_first_token_seconds, muxserve_inter_token_latency_seconds,
//              muxserve_e2e_request_latency_seconds, muxserve_request_queue_time_seconds,
//              muxserve_job_duration_seconds{phase}
#pragma once

#include <array>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "muxserve/engine/observer.h"
#include "prometheus/counter.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace muxserve::server {

class Metrics final : public engine::EngineObserver {
 public:
  // Every series of every model is made here, so the engine thread only looks up a model's
  // cached metrics. Reports about other models are ignored.
  explicit Metrics(const std::vector<std::string>& model_names);

  std::shared_ptr<prometheus::Registry> registry() const { return registry_; }

  void OnFirstToken(const std::string& model, int32_t prompt_tokens, double ttft_seconds,
                    double queue_seconds) override;
  void OnTokens(const std::string& model, std::span<const double> gaps_seconds) override;
  void OnFinished(const std::string& model, engine::FinishReason reason,
                  double e2e_seconds) override;
  void OnLlmState(const engine::LlmState& state) override;
  void OnJob(const engine::JobReport& job) override;

 private:
  struct ModelMetrics {
    prometheus::Gauge* running;
    prometheus::Gauge* waiting;
    prometheus::Gauge* kv_cache_usage;
    prometheus::Gauge* kv_blocks_used;
    prometheus::Gauge* kv_blocks_quota;
    prometheus::Gauge* fairness;
    std::array<prometheus::Counter*, 2> jobs;  // decode, prefill
    std::array<prometheus::Histogram*, 2> job_duration;
    prometheus::Counter* repartitions;
    prometheus::Counter* recomputed_tokens;
    prometheus::Counter* prompt_tokens;
    prometheus::Counter* generation_tokens;
    std::array<prometheus::Counter*, 4> finished;  // by engine::FinishReason
    prometheus::Histogram* time_to_first_token;
    prometheus::Histogram* inter_token_latency;
    prometheus::Histogram* e2e_latency;
    prometheus::Histogram* queue_time;
  };
  const ModelMetrics* Find(const std::string& model) const;

  std::shared_ptr<prometheus::Registry> registry_;
  // Filled by the constructor, read-only afterwards: lookups need no lock.
  absl::flat_hash_map<std::string, ModelMetrics> models_;
};

}  // namespace muxserve::server
