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

// Job steps: a decode step of a small model takes a millisecond, a long prefill a second.
const prometheus::Histogram::BucketBoundaries& JobDurationBuckets() {
  static const auto* buckets = new prometheus::Histogram::BucketBoundaries{
      0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.0, 2.0, 4.0};
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
  auto& kv_blocks_used = prometheus::BuildGauge()
                             .Name("muxserve_kv_cache_used_blocks")
                             .Help("Head blocks of the shared KV pool the model holds.")
                             .Register(*registry_);
  auto& kv_blocks_quota =
      prometheus::BuildGauge()
          .Name("muxserve_kv_cache_quota_blocks")
          .Help("The model's current KV quota in head blocks (adapted to demand).")
          .Register(*registry_);
  auto& fairness = prometheus::BuildGauge()
                       .Name("muxserve_fairness_ratio")
                       .Help("The model's share of served tokens over its share of requested "
                             "tokens, decayed over about a minute; 1 is fair.")
                       .Register(*registry_);
  auto& jobs = prometheus::BuildCounter()
                   .Name("muxserve_jobs_total")
                   .Help("Prefill and decode jobs run, by phase.")
                   .Register(*registry_);
  auto& job_duration = prometheus::BuildHistogram()
                           .Name("muxserve_job_duration_seconds")
                           .Help("Duration of prefill and decode jobs, by phase.")
                           .Register(*registry_);
  auto& repartitions = prometheus::BuildCounter()
                           .Name("muxserve_repartitions_total")
                           .Help("Jobs that ran on other SMs than the previous job of their "
                                 "model and phase.")
                           .Register(*registry_);
  auto& recomputed_tokens = prometheus::BuildCounter()
                                .Name("muxserve_recomputed_tokens_total")
                                .Help("Tokens computed again after a preemption.")
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
    metrics.kv_blocks_used = &kv_blocks_used.Add(labels);
    metrics.kv_blocks_quota = &kv_blocks_quota.Add(labels);
    metrics.fairness = &fairness.Add(labels);
    for (int prefill = 0; prefill < 2; ++prefill) {
      const prometheus::Labels phase = {{"model_name", name},
                                        {"phase", prefill == 1 ? "prefill" : "decode"}};
      metrics.jobs[prefill] = &jobs.Add(phase);
      metrics.job_duration[prefill] = &job_duration.Add(phase, JobDurationBuckets());
    }
    metrics.repartitions = &repartitions.Add(labels);
    metrics.recomputed_tokens = &recomputed_tokens.Add(labels);
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

void Metrics::OnLlmState(const engine::LlmState& state) {
  const ModelMetrics* metrics = Find(state.model);
  if (metrics == nullptr) return;
  metrics->running->Set(static_cast<double>(state.running));
  metrics->waiting->Set(static_cast<double>(state.waiting));
  metrics->kv_cache_usage->Set(
      state.kv_blocks_total > 0
          ? static_cast<double>(state.kv_blocks_used) / static_cast<double>(state.kv_blocks_total)
          : 0.0);
  metrics->kv_blocks_used->Set(static_cast<double>(state.kv_blocks_used));
  metrics->kv_blocks_quota->Set(static_cast<double>(state.kv_blocks_quota));
  metrics->fairness->Set(state.fairness);
}

void Metrics::OnJob(const engine::JobReport& job) {
  const ModelMetrics* metrics = Find(job.model);
  if (metrics == nullptr) return;
  const size_t phase = job.prefill ? 1 : 0;
  metrics->jobs[phase]->Increment();
  metrics->job_duration[phase]->Observe(job.seconds);
  if (job.repartitioned) metrics->repartitions->Increment();
  if (job.recomputed_tokens > 0) {
    metrics->recomputed_tokens->Increment(static_cast<double>(job.recomputed_tokens));
  }
}

}  // namespace muxserve::server
