#include "muxserve/server/metrics.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "muxserve/server/metrics_endpoint.h"
#include "prometheus/text_serializer.h"
#include "test_util.h"

namespace muxserve::server {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

std::string Scrape(const Metrics& metrics) {
  return prometheus::TextSerializer().Serialize(metrics.registry()->Collect());
}

TEST(Metrics, ExposesTheDocumentedNamesAndTypes) {
  Metrics metrics({"tiny"});
  const std::string text = Scrape(metrics);
  const std::vector<std::pair<std::string, std::string>> families = {
      {"muxserve_num_requests_running", "gauge"},
      {"muxserve_num_requests_waiting", "gauge"},
      {"muxserve_kv_cache_usage_perc", "gauge"},
      {"muxserve_prompt_tokens_total", "counter"},
      {"muxserve_generation_tokens_total", "counter"},
      {"muxserve_request_success_total", "counter"},
      {"muxserve_time_to_first_token_seconds", "histogram"},
      {"muxserve_inter_token_latency_seconds", "histogram"},
      {"muxserve_e2e_request_latency_seconds", "histogram"},
      {"muxserve_request_queue_time_seconds", "histogram"},
  };
  for (const auto& [name, type] : families) {
    EXPECT_THAT(text, HasSubstr("# TYPE " + name + " " + type + "\n")) << name;
  }
  // The names are used as given: no second _total on the counters.
  EXPECT_THAT(text, Not(HasSubstr("_total_total")));
  for (const char* reason : {"stop", "length", "abort", "error"}) {
    EXPECT_THAT(text, HasSubstr(std::string("muxserve_request_success_total{finished_reason=\"") +
                                reason + "\",model_name=\"tiny\"} 0"));
  }
}

TEST(Metrics, RecordsWhatTheEngineReports) {
  Metrics metrics({"a", "b"});
  metrics.OnFirstToken("a", 12, 0.03, 0.002);
  const double gaps[] = {0.02, 0.03, 0.5};
  metrics.OnTokens("a", gaps);
  metrics.OnFinished("a", engine::FinishReason::kLength, 0.6);
  metrics.OnFinished("a", engine::FinishReason::kAbort, 0.1);
  metrics.OnLlmState({.model = "a",
                      .running = 3,
                      .waiting = 2,
                      .kv_blocks_used = 25,
                      .kv_blocks_quota = 60,
                      .kv_blocks_total = 100,
                      .fairness = 0.8});
  metrics.OnLlmState({.model = "b", .running = 1, .kv_blocks_used = 50, .kv_blocks_total = 100});
  metrics.OnJob({.model = "a", .prefill = true, .partition = "green:76", .tokens = 12,
                 .seconds = 0.003, .recomputed_tokens = 5, .repartitioned = true});
  metrics.OnJob({.model = "a", .prefill = false, .partition = "green:56", .tokens = 3,
                 .seconds = 0.001});
  // A model the daemon does not know is ignored rather than created on the engine's thread.
  metrics.OnFirstToken("unknown", 5, 0.1, 0.1);

  const std::string text = Scrape(metrics);
  EXPECT_THAT(text, HasSubstr("muxserve_prompt_tokens_total{model_name=\"a\"} 12\n"));
  EXPECT_THAT(text, HasSubstr("muxserve_generation_tokens_total{model_name=\"a\"} 4\n"));
  EXPECT_THAT(text, HasSubstr("muxserve_prompt_tokens_total{model_name=\"b\"} 0\n"));
  EXPECT_THAT(text, HasSubstr("muxserve_num_requests_running{model_name=\"a\"} 3\n"));
  EXPECT_THAT(text, HasSubstr("muxserve_num_requests_waiting{model_name=\"a\"} 2\n"));
  EXPECT_THAT(text, HasSubstr("muxserve_kv_cache_usage_perc{model_name=\"a\"} 0.25\n"));
  EXPECT_THAT(text, HasSubstr("muxserve_kv_cache_usage_perc{model_name=\"b\"} 0.5\n"));
  EXPECT_THAT(text, HasSubstr("muxserve_kv_cache_quota_blocks{model_name=\"a\"} 60\n"));
  EXPECT_THAT(text, HasSubstr("muxserve_kv_cache_used_blocks{model_name=\"a\"} 25\n"));
  EXPECT_THAT(text, HasSubstr("muxserve_fairness_ratio{model_name=\"a\"} 0.8\n"));
  EXPECT_THAT(text, HasSubstr("muxserve_jobs_total{model_name=\"a\",phase=\"prefill\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("muxserve_jobs_total{model_name=\"a\",phase=\"decode\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("muxserve_repartitions_total{model_name=\"a\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("muxserve_recomputed_tokens_total{model_name=\"a\"} 5\n"));
  EXPECT_THAT(
      text,
      HasSubstr("muxserve_request_success_total{finished_reason=\"length\",model_name=\"a\"} 1\n"));
  EXPECT_THAT(
      text,
      HasSubstr("muxserve_request_success_total{finished_reason=\"abort\",model_name=\"a\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("muxserve_time_to_first_token_seconds_count{model_name=\"a\"} 1\n"));
  EXPECT_THAT(
      text,
      HasSubstr("muxserve_time_to_first_token_seconds_bucket{model_name=\"a\",le=\"0.04\"} 1\n"));
  EXPECT_THAT(
      text,
      HasSubstr("muxserve_time_to_first_token_seconds_bucket{model_name=\"a\",le=\"0.02\"} 0\n"));
  EXPECT_THAT(text, HasSubstr("muxserve_inter_token_latency_seconds_count{model_name=\"a\"} 3\n"));
  EXPECT_THAT(
      text,
      HasSubstr("muxserve_inter_token_latency_seconds_bucket{model_name=\"a\",le=\"0.025\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("muxserve_e2e_request_latency_seconds_count{model_name=\"a\"} 2\n"));
  EXPECT_THAT(text, HasSubstr("muxserve_request_queue_time_seconds_count{model_name=\"a\"} 1\n"));
  EXPECT_THAT(text, Not(HasSubstr("unknown")));
}

TEST(MetricsEndpoint, ServesTheRegistryOverHttp) {
  Metrics metrics({"tiny"});
  metrics.OnFirstToken("tiny", 7, 0.01, 0.0);
  absl::StatusOr<std::unique_ptr<MetricsEndpoint>> endpoint =
      MetricsEndpoint::Start("127.0.0.1:0", metrics.registry());
  ASSERT_TRUE(endpoint.ok()) << endpoint.status();
  const int port = (*endpoint)->port();
  ASSERT_GT(port, 0);
  for (int scrape = 0; scrape < 3; ++scrape) {
    const std::string response = testing::HttpGet(port, "/metrics");
    EXPECT_THAT(response, HasSubstr("HTTP/1.1 200 OK\r\n"));
    EXPECT_THAT(response, HasSubstr("Content-Type: text/plain; version=0.0.4"));
    EXPECT_THAT(response, HasSubstr("muxserve_prompt_tokens_total{model_name=\"tiny\"} 7\n"));
  }
  EXPECT_THAT(testing::HttpGet(port, "/"), HasSubstr("404 Not Found"));
  EXPECT_THAT(testing::HttpGet(port, "/metrics?x=1"), HasSubstr("200 OK"));
}

TEST(MetricsEndpoint, BusyPortAndBadAddressesAreErrors) {
  Metrics metrics({"tiny"});
  absl::StatusOr<std::unique_ptr<MetricsEndpoint>> first =
      MetricsEndpoint::Start("127.0.0.1:0", metrics.registry());
  ASSERT_TRUE(first.ok()) << first.status();
  const std::string taken = "127.0.0.1:" + std::to_string((*first)->port());
  for (const std::string& address :
       {taken, std::string("no-port"), std::string("127.0.0.1:x"), std::string("999.1.1.1:0")}) {
    absl::StatusOr<std::unique_ptr<MetricsEndpoint>> endpoint =
        MetricsEndpoint::Start(address, metrics.registry());
    EXPECT_EQ(endpoint.status().code(), absl::StatusCode::kUnavailable) << address;
    EXPECT_THAT(endpoint.status().message(), HasSubstr(address));
  }
}

}  // namespace
}  // namespace muxserve::server
