#include "muxserve/server/metrics.h"

#include <utility>

namespace muxserve::server {
namespace {

// vLLM's bucket boundaries, so dashboards built for it read ours the same way.
const prometheus::Histogram::BucketBoundaries& TimeToFirstTokenBuckets() {
  static const auto* buckets = new prometheus::Histogram::BucketBoundaries{
      0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1,  0.25,  0.5,   0.75,
      1.0,   2.5,   5.0,  7.5,  10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0};
  return *buckets;
}

const prometheus::Histogram::BucketBoundaries& InterTokenLatencyBuckets() {
  static const auto* buckets = new prometheus::Histogram::BucketBoundaries{
      0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2,  0.3,  0.4, 0.5,
      0.75, 1.0,   2.5,  5.0,   7.5, 10.0, 20.0, 40.0, 80.0};
  return *buckets;
}

const prometheus::Histogram::BucketBoundaries& RequestLatencyBuckets() {
  static const auto* buckets = new prometheus::Histogram::BucketBoundaries{
      0.3,  0.5,  0.8,  1.0,  1.5,   2.0,   2.5,   5.0,   10.0,   15.0,  20.0,
      30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0};
  return *buckets;
}

constexpr engine::FinishReason kFinishReasons[] = {
    engine::FinishReason::kStop, engine::FinishReason::kLength, engine::FinishReason::kAbort,
    engine::FinishReason::kError};

}  // namespace

Metrics::Metrics(const std::vector<std::string>& model_names)
    : registry_(std::make_shared<prometheus::Registry>()) {
  auto& running = prometheus::BuildGauge()
                      .Name("muxserve_num_requests_running")
                      .Help("Number of requests in model execution batches.")
                      .Register(*registry_);
  auto& waiting = prometheus::BuildGauge()
                      .Name("muxserve_num_requests_waiting")
                      .Help("Number of requests waiting to be processed.")
                      .Register(*registry_);
  auto& kv_cache_usage =
      prometheus::BuildGauge()
          .Name("muxserve_kv_cache_usage_perc")
          .Help("Fraction of the shared KV pool held by the model. 1 means 100 percent.")
          .Register(*registry_);
  auto& prompt_tokens = prometheus::BuildCounter()
                            .Name("muxserve_prompt_tokens_total")
                            .Help("Number of prefill tokens processed.")
                            .Register(*registry_);
  auto& generation_tokens = prometheus::BuildCounter()
                                .Name("muxserve_generation_tokens_total")
                                .Help("Number of generation tokens processed.")
                                .Register(*registry_);
  auto& request_success = prometheus::BuildCounter()
                              .Name("muxserve_request_success_total")
                              .Help("Count of finished requests by finish reason.")
                              .Register(*registry_);
  auto& time_to_first_token = prometheus::BuildHistogram()
                                  .Name("muxserve_time_to_first_token_seconds")
                                  .Help("Histogram of time to first token in seconds.")
                                  .Register(*registry_);
  auto& inter_token_latency = prometheus::BuildHistogram()
                                  .Name("muxserve_inter_token_latency_seconds")
                                  .Help("Histogram of inter-token latency in seconds.")
                                  .Register(*registry_);
  auto& e2e_latency = prometheus::BuildHistogram()
                          .Name("muxserve_e2e_request_latency_seconds")
                          .Help("Histogram of end-to-end request latency in seconds.")
                          .Register(*registry_);
  auto& queue_time = prometheus::BuildHistogram()
                         .Name("muxserve_request_queue_time_seconds")
                         .Help("Histogram of time spent waiting before the prefill began.")
                         .Register(*registry_);

  for (const std::string& name : model_names) {
    if (models_.contains(name)) continue;
    const prometheus::Labels labels = {{"model_name", name}};
    ModelMetrics metrics;
    metrics.running = &running.Add(labels);
    metrics.waiting = &waiting.Add(labels);
    metrics.kv_cache_usage = &kv_cache_usage.Add(labels);
    metrics.prompt_tokens = &prompt_tokens.Add(labels);
    metrics.generation_tokens = &generation_tokens.Add(labels);
    for (engine::FinishReason reason : kFinishReasons) {
      metrics.finished[static_cast<size_t>(reason)] = &request_success.Add(
          {{"model_name", name}, {"finished_reason", std::string(FinishReasonName(reason))}});
    }
    metrics.time_to_first_token = &time_to_first_token.Add(labels, TimeToFirstTokenBuckets());
    metrics.inter_token_latency = &inter_token_latency.Add(labels, InterTokenLatencyBuckets());
    metrics.e2e_latency = &e2e_latency.Add(labels, RequestLatencyBuckets());
    metrics.queue_time = &queue_time.Add(labels, RequestLatencyBuckets());
    models_.emplace(name, metrics);
  }
}

const Metrics::ModelMetrics* Metrics::Find(const std::string& model) const {
  auto it = models_.find(model);
  return it == models_.end() ? nullptr : &it->second;
}

void Metrics::OnFirstToken(const std::string& model, int32_t prompt_tokens, double ttft_seconds,
                           double queue_seconds) {
  const ModelMetrics* metrics = Find(model);
  if (metrics == nullptr) return;
  metrics->prompt_tokens->Increment(prompt_tokens);
  metrics->generation_tokens->Increment();
  metrics->time_to_first_token->Observe(ttft_seconds);
  metrics->queue_time->Observe(queue_seconds);
}

void Metrics::OnTokens(const std::string& model, std::span<const double> gaps_seconds) {
  const ModelMetrics* metrics = Find(model);
  if (metrics == nullptr) return;
  metrics->generation_tokens->Increment(static_cast<double>(gaps_seconds.size()));
  for (double gap : gaps_seconds) metrics->inter_token_latency->Observe(gap);
}

void Metrics::OnFinished(const std::string& model, engine::FinishReason reason,
                         double e2e_seconds) {
  const ModelMetrics* metrics = Find(model);
  if (metrics == nullptr) return;
  metrics->finished[static_cast<size_t>(reason)]->Increment();
  metrics->e2e_latency->Observe(e2e_seconds);
}

void Metrics::OnLlmState(const std::string& model, int64_t running, int64_t waiting,
                         double kv_usage_fraction) {
  const ModelMetrics* metrics = Find(model);
  if (metrics == nullptr) return;
  metrics->running->Set(static_cast<double>(running));
  metrics->waiting->Set(static_cast<double>(waiting));
  metrics->kv_cache_usage->Set(kv_usage_fraction);
}

}  // namespace muxserve::server
