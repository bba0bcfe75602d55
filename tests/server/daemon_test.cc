// The daemon in this process, driven by a real gRPC client: the muxserve.v1 API, health,
// metrics and shutdown. (tests/integration runs the muxserved binary the same way.)
#include "muxserve/server/daemon.h"

#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "muxserve/v1/muxserve.grpc.pb.h"
#include "nlohmann/json.hpp"
#include "test_util.h"

namespace muxserve::server {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;

// A model with the shape of the default config's tiny-llama, small enough for a CPU test, and
// one whose files are corrupt. max_context leaves room for long generations (abort, deadline).
std::string ConfigYaml(const fs::path& dir) {
  return R"(
server:
  grpc_address: 127.0.0.1:0
  metrics_address: ""
  shutdown_grace_seconds: 0.5
  synthetic_dir: )" +
         (dir / "synthetic").string() + R"(
runtime:
  backend: cpu
  cpu_threads: 1
kv_cache:
  memory: 16MiB
models:
  - name: tiny
    synthetic: {layers: 2, hidden: 64, heads: 4, kv_heads: 2, intermediate: 128,
                max_position: 4096, seed: 7}
    chat_template: chatml
  - name: broken
    path: )" +
         (dir / "broken").string() + R"(
)";
}

struct Stream {
  std::vector<v1::GenerateResponse> messages;
  grpc::Status status;
  std::string text;
  std::vector<int32_t> token_ids;
  const v1::Finished* finished() const {
    return messages.empty() || !messages.back().has_finished() ? nullptr
                                                               : &messages.back().finished();
  }
};

void Collect(grpc::ClientReaderInterface<v1::GenerateResponse>* reader, Stream* stream) {
  v1::GenerateResponse response;
  while (reader->Read(&response)) {
    stream->text += response.text();
    stream->token_ids.insert(stream->token_ids.end(), response.token_ids().begin(),
                             response.token_ids().end());
    stream->messages.push_back(response);
  }
  stream->status = reader->Finish();
}

class DaemonTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new fs::path(fs::temp_directory_path() /
                        ("muxserve_daemon_test_" + std::to_string(getpid())));
    fs::remove_all(*dir_);
    fs::create_directories(*dir_ / "broken");
    std::ofstream(*dir_ / "broken" / "config.json") << "{\"hidden_size\": ";
    absl::StatusOr<config::Config> config =
        config::ParseConfig(ConfigYaml(*dir_), *dir_ / "muxserve.yaml");
    ASSERT_TRUE(config.ok()) << config.status();
    DaemonOptions options;
    options.metrics_address = "127.0.0.1:0";
    options.ready_file = *dir_ / "ready.json";
    absl::StatusOr<std::unique_ptr<Daemon>> daemon = Daemon::Start(*config, options);
    ASSERT_TRUE(daemon.ok()) << daemon.status();
    daemon_ = daemon->release();
    ASSERT_TRUE(daemon_->WaitForModels(absl::Seconds(60)));
    channel_ = new std::shared_ptr<grpc::Channel>(grpc::CreateChannel(
        "127.0.0.1:" + std::to_string(daemon_->grpc_port()), grpc::InsecureChannelCredentials()));
  }
  static void TearDownTestSuite() {
    delete daemon_;
    delete channel_;
    fs::remove_all(*dir_);
    delete dir_;
  }

  std::unique_ptr<v1::Muxserve::Stub> Api() { return v1::Muxserve::NewStub(*channel_); }

  Stream Generate(const v1::GenerateRequest& request,
                  std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + timeout);
    Stream stream;
    Collect(Api()->Generate(&context, request).get(), &stream);
    return stream;
  }

  static v1::GenerateRequest TextRequest(const std::string& model, const std::string& text,
                                         int max_tokens) {
    v1::GenerateRequest request;
    request.set_model(model);
    request.set_text(text);
    request.mutable_sampling()->set_max_tokens(max_tokens);
    request.mutable_sampling()->set_ignore_eos(true);
    request.mutable_sampling()->set_temperature(0.0f);
    return request;
  }

  static fs::path* dir_;
  static Daemon* daemon_;
  static std::shared_ptr<grpc::Channel>* channel_;
};

fs::path* DaemonTest::dir_ = nullptr;
Daemon* DaemonTest::daemon_ = nullptr;
std::shared_ptr<grpc::Channel>* DaemonTest::channel_ = nullptr;

TEST_F(DaemonTest, WritesTheReadyFile) {
  std::ifstream in(*dir_ / "ready.json");
  nlohmann::json ready = nlohmann::json::parse(in);
  EXPECT_EQ(ready["grpc_port"].get<int>(), daemon_->grpc_port());
  EXPECT_EQ(ready["metrics_port"].get<int>(), daemon_->metrics_port());
  EXPECT_GT(daemon_->metrics_port(), 0);
}

TEST_F(DaemonTest, ListsModelsWithTheirState) {
  grpc::ClientContext context;
  v1::ListModelsResponse response;
  ASSERT_TRUE(Api()->ListModels(&context, v1::ListModelsRequest(), &response).ok());
  ASSERT_EQ(response.models_size(), 2);
  const v1::ModelInfo& tiny = response.models(0);
  EXPECT_EQ(tiny.name(), "tiny");
  EXPECT_EQ(tiny.state(), v1::ModelInfo::SERVING);
  EXPECT_EQ(tiny.unit(), "unit0");
  EXPECT_EQ(tiny.dtype(), "float32");
  EXPECT_EQ(tiny.max_context(), 4096);
  EXPECT_EQ(tiny.chat_template(), "chatml");
  const v1::ModelInfo& broken = response.models(1);
  EXPECT_EQ(broken.name(), "broken");
  EXPECT_EQ(broken.state(), v1::ModelInfo::FAILED);
  EXPECT_THAT(broken.error_message(), HasSubstr("config.json"));
}

TEST_F(DaemonTest, GenerateStreamsDeltasThenUsage) {
  v1::GenerateRequest request = TextRequest("tiny", "Hello there", 12);
  request.set_request_id("my-id");
  Stream stream = Generate(request);
  ASSERT_TRUE(stream.status.ok()) << stream.status.error_message();
  ASSERT_NE(stream.finished(), nullptr);
  EXPECT_EQ(stream.finished()->reason(), v1::LENGTH);
  EXPECT_EQ(stream.finished()->usage().completion_tokens(), 12);
  EXPECT_GT(stream.finished()->usage().prompt_tokens(), 0);
  EXPECT_EQ(stream.token_ids.size(), 12u);
  for (const v1::GenerateResponse& message : stream.messages) {
    EXPECT_EQ(message.request_id(), "my-id");
  }
  // Greedy decoding of the same prompt gives the same tokens again.
  Stream again = Generate(request);
  ASSERT_TRUE(again.status.ok());
  EXPECT_EQ(again.token_ids, stream.token_ids);
  EXPECT_EQ(again.text, stream.text);
}

TEST_F(DaemonTest, GenerateFromTokenIdsAndAGeneratedId) {
  v1::GenerateRequest request;
  request.set_model("tiny");
  for (int id : {72, 101, 108, 108, 111}) request.mutable_token_ids()->add_ids(id);
  request.mutable_sampling()->set_max_tokens(3);
  request.mutable_sampling()->set_ignore_eos(true);
  Stream stream = Generate(request);
  ASSERT_TRUE(stream.status.ok()) << stream.status.error_message();
  ASSERT_NE(stream.finished(), nullptr);
  EXPECT_EQ(stream.finished()->usage().prompt_tokens(), 5);
  EXPECT_EQ(stream.token_ids.size(), 3u);
  EXPECT_THAT(stream.messages.front().request_id(), ::testing::StartsWith("req-"));
}

TEST_F(DaemonTest, ChatRendersTheTemplate) {
  v1::ChatRequest request;
  request.set_model("tiny");
  v1::ChatMessage* message = request.add_messages();
  message->set_role("user");
  message->set_content("Hi");
  request.mutable_sampling()->set_max_tokens(4);
  request.mutable_sampling()->set_ignore_eos(true);
  grpc::ClientContext context;
  Stream stream;
  Collect(Api()->Chat(&context, request).get(), &stream);
  ASSERT_TRUE(stream.status.ok()) << stream.status.error_message();
  ASSERT_NE(stream.finished(), nullptr);
  // <|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n: more tokens than the words.
  EXPECT_GT(stream.finished()->usage().prompt_tokens(), 8);
  EXPECT_EQ(stream.token_ids.size(), 4u);
}

TEST_F(DaemonTest, BadRequestsGetTheRightStatus) {
  struct Case {
    v1::GenerateRequest request;
    grpc::StatusCode code;
    std::string message;
  };
  std::vector<Case> cases;
  cases.push_back({TextRequest("nope", "x", 1), grpc::StatusCode::NOT_FOUND, "nope"});
  cases.push_back({TextRequest("broken", "x", 1), grpc::StatusCode::UNAVAILABLE, "failed"});
  cases.push_back({TextRequest("tiny", "", 1), grpc::StatusCode::INVALID_ARGUMENT, "text"});
  v1::GenerateRequest no_prompt;
  no_prompt.set_model("tiny");
  cases.push_back({no_prompt, grpc::StatusCode::INVALID_ARGUMENT, "prompt"});
  v1::GenerateRequest hot = TextRequest("tiny", "x", 1);
  hot.mutable_sampling()->set_temperature(-1.0f);
  cases.push_back({hot, grpc::StatusCode::INVALID_ARGUMENT, "sampling.temperature"});
  cases.push_back(
      {TextRequest("tiny", "x", 5000), grpc::StatusCode::INVALID_ARGUMENT, "max_tokens"});
  v1::GenerateRequest long_id = TextRequest("tiny", "x", 1);
  long_id.set_request_id(std::string(300, 'i'));
  cases.push_back({long_id, grpc::StatusCode::INVALID_ARGUMENT, "request_id"});
  v1::GenerateRequest bad_token;
  bad_token.set_model("tiny");
  bad_token.mutable_token_ids()->add_ids(100000);
  cases.push_back({bad_token, grpc::StatusCode::INVALID_ARGUMENT, "token_ids"});
  for (const Case& c : cases) {
    Stream stream = Generate(c.request);
    EXPECT_EQ(stream.status.error_code(), c.code)
        << c.message << ": " << stream.status.error_message();
    EXPECT_THAT(stream.status.error_message(), HasSubstr(c.message));
    EXPECT_TRUE(stream.messages.empty());
  }

  v1::ChatRequest empty_chat;
  empty_chat.set_model("tiny");
  grpc::ClientContext context;
  Stream chat;
  Collect(Api()->Chat(&context, empty_chat).get(), &chat);
  EXPECT_EQ(chat.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(chat.status.error_message(), HasSubstr("messages"));
}

TEST_F(DaemonTest, AbortEndsARunningRequest) {
  grpc::ClientContext abort_unknown;
  v1::AbortRequest unknown;
  unknown.set_request_id("never-ran");
  v1::AbortResponse response;
  EXPECT_EQ(Api()->Abort(&abort_unknown, unknown, &response).error_code(),
            grpc::StatusCode::NOT_FOUND);

  v1::GenerateRequest request = TextRequest("tiny", "Count", 4000);
  request.set_request_id("long-one");
  grpc::ClientContext context;
  std::unique_ptr<grpc::ClientReader<v1::GenerateResponse>> reader =
      Api()->Generate(&context, request);
  v1::GenerateResponse first;
  ASSERT_TRUE(reader->Read(&first));

  // The id is taken while the request runs.
  Stream duplicate = Generate(request);
  EXPECT_EQ(duplicate.status.error_code(), grpc::StatusCode::ALREADY_EXISTS);

  grpc::ClientContext abort_context;
  v1::AbortRequest abort;
  abort.set_request_id("long-one");
  ASSERT_TRUE(Api()->Abort(&abort_context, abort, &response).ok());
  Stream rest;
  Collect(reader.get(), &rest);
  ASSERT_TRUE(rest.status.ok()) << rest.status.error_message();
  ASSERT_NE(rest.finished(), nullptr);
  EXPECT_EQ(rest.finished()->reason(), v1::ABORT);
  EXPECT_LT(rest.finished()->usage().completion_tokens(), 4000);
}

TEST_F(DaemonTest, ClientDeadlineIsHonoured) {
  const auto started = std::chrono::steady_clock::now();
  Stream stream = Generate(TextRequest("tiny", "Count", 4000), std::chrono::milliseconds(200));
  EXPECT_EQ(stream.status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(5));
  // The engine dropped the request: the same model answers the next one.
  Stream next = Generate(TextRequest("tiny", "x", 2));
  EXPECT_TRUE(next.status.ok()) << next.status.error_message();
}

TEST_F(DaemonTest, StatsAndHealthAndMetrics) {
  ASSERT_TRUE(Generate(TextRequest("tiny", "Hello", 2)).status.ok());

  // The engine publishes its statistics after each step, so they may trail the stream a little.
  v1::GetStatsResponse stats;
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  do {
    grpc::ClientContext stats_context;
    stats.Clear();
    ASSERT_TRUE(Api()->GetStats(&stats_context, v1::GetStatsRequest(), &stats).ok());
    ASSERT_EQ(stats.models_size(), 1);
  } while (stats.models(0).requests_finished() == 0 && std::chrono::steady_clock::now() < give_up);
  EXPECT_EQ(stats.models(0).name(), "tiny");
  EXPECT_EQ(stats.models(0).unit(), "unit0");
  EXPECT_GE(stats.models(0).requests_finished(), 1);
  EXPECT_GT(stats.models(0).generated_tokens(), 0);
  EXPECT_GT(stats.models(0).kv_blocks_total(), 0);

  auto health = grpc::health::v1::Health::NewStub(*channel_);
  auto check = [&](const std::string& service) {
    grpc::ClientContext context;
    grpc::health::v1::HealthCheckRequest request;
    request.set_service(service);
    grpc::health::v1::HealthCheckResponse response;
    grpc::Status status = health->Check(&context, request, &response);
    EXPECT_TRUE(status.ok()) << service << ": " << status.error_message();
    return response.status();
  };
  EXPECT_EQ(check(""), grpc::health::v1::HealthCheckResponse::SERVING);
  EXPECT_EQ(check("muxserve.v1.Muxserve"), grpc::health::v1::HealthCheckResponse::SERVING);
  EXPECT_EQ(check("tiny"), grpc::health::v1::HealthCheckResponse::SERVING);
  EXPECT_EQ(check("broken"), grpc::health::v1::HealthCheckResponse::NOT_SERVING);

  const std::string metrics = testing::HttpGet(daemon_->metrics_port(), "/metrics");
  // Requests of earlier tests count too; this one at least.
  const std::string finished_by_length =
      "muxserve_request_success_total{finished_reason=\"length\",model_name=\"tiny\"} ";
  EXPECT_THAT(metrics, HasSubstr(finished_by_length));
  EXPECT_THAT(metrics, Not(HasSubstr(finished_by_length + "0\n")));
  EXPECT_THAT(metrics,
              HasSubstr("muxserve_time_to_first_token_seconds_count{model_name=\"tiny\"}"));
  EXPECT_THAT(metrics, HasSubstr("muxserve_kv_cache_usage_perc{model_name=\"tiny\"}"));
}

TEST(DaemonShutdown, DrainsThenRefusesNewWork) {
  const fs::path dir =
      fs::temp_directory_path() / ("muxserve_daemon_shutdown_test_" + std::to_string(getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir / "broken");
  std::ofstream(dir / "broken" / "config.json") << "{}";
  absl::StatusOr<config::Config> config = config::ParseConfig(ConfigYaml(dir), dir / "m.yaml");
  ASSERT_TRUE(config.ok()) << config.status();
  // Far shorter than the 4,000 tokens take, however fast the machine.
  config->server.shutdown_grace_seconds = 0.05;
  DaemonOptions options;
  absl::StatusOr<std::unique_ptr<Daemon>> daemon = Daemon::Start(*config, options);
  ASSERT_TRUE(daemon.ok()) << daemon.status();
  EXPECT_EQ((*daemon)->metrics_port(), 0);
  ASSERT_TRUE((*daemon)->WaitForModels(absl::Seconds(60)));
  auto api = v1::Muxserve::NewStub(grpc::CreateChannel(
      "127.0.0.1:" + std::to_string((*daemon)->grpc_port()), grpc::InsecureChannelCredentials()));

  v1::GenerateRequest request;
  request.set_model("tiny");
  request.set_text("Count");
  request.mutable_sampling()->set_max_tokens(4000);
  request.mutable_sampling()->set_ignore_eos(true);
  grpc::ClientContext context;
  auto reader = api->Generate(&context, request);
  v1::GenerateResponse first;
  ASSERT_TRUE(reader->Read(&first));

  const auto started = std::chrono::steady_clock::now();
  std::thread stopper([&] { (*daemon)->Shutdown(); });
  Stream rest;
  Collect(reader.get(), &rest);
  stopper.join();
  // The running request was aborted once the grace period ran out.
  ASSERT_TRUE(rest.status.ok()) << rest.status.error_message();
  ASSERT_NE(rest.finished(), nullptr);
  EXPECT_EQ(rest.finished()->reason(), v1::ABORT);
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(5));

  grpc::ClientContext after;
  after.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
  v1::ListModelsResponse models;
  EXPECT_FALSE(api->ListModels(&after, v1::ListModelsRequest(), &models).ok());
  fs::remove_all(dir);
}

}  // namespace
}  // namespace muxserve::server
