// End-to-end tests of the muxserved daemon: a real child process serving two synthetic models on
// the CPU backend, driven through its gRPC API, health service and metrics endpoint.
#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <set>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "metrics_scrape.h"
#include "muxserve/engine/unit_engine.h"
#include "muxserve/model/chat_template.h"
#include "muxserve/model/model_spec.h"
#include "serving.h"

namespace muxserve::integration {
namespace {

using ::testing::AnyOf;
using ::testing::HasSubstr;
using HealthResponse = grpc::health::v1::HealthCheckResponse;

constexpr char kGenerationTokensMetric[] = "muxserve_generation_tokens_total";

// Tests of the shared daemon, and tests that start and stop daemons of their own.
class DaemonTest : public SharedDaemonTest {};
class DaemonLifecycleTest : public ScratchTest {};

std::vector<int32_t> Encode(const Serving& serving, const std::string& text) {
  return serving.tokenizer().Encode(text, /*add_bos=*/true);
}

grpc::Status CheckHealth(DaemonProcess& daemon, const std::string& service,
                         HealthResponse* response) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(service);
  return daemon.health().Check(&context, request, response);
}

absl::StatusOr<v1::GetStatsResponse> GetStats(v1::Muxserve::Stub& stub) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  v1::GetStatsResponse response;
  grpc::Status status = stub.GetStats(&context, v1::GetStatsRequest(), &response);
  if (!status.ok()) return absl::UnavailableError(status.error_message());
  return response;
}

grpc::Status Abort(v1::Muxserve::Stub& stub, const std::string& request_id) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  v1::AbortRequest request;
  request.set_request_id(request_id);
  v1::AbortResponse response;
  return stub.Abort(&context, request, &response);
}

v1::GenerateRequest LongRequest(const std::string& model, const std::string& prompt) {
  v1::GenerateRequest request = TextRequest(model, prompt, kLongMaxTokens);
  request.mutable_sampling()->set_ignore_eos(true);
  request.mutable_sampling()->set_temperature(0.7f);
  request.mutable_sampling()->set_seed(7);
  return request;
}

// Expects a stream that ended normally: OK, one final message, usage matching what was sent.
void ExpectCompleteStream(const StreamResult& result) {
  ASSERT_TRUE(result.status.ok()) << result.status.error_code() << ": "
                                  << result.status.error_message();
  EXPECT_EQ(result.finished_messages, 1);
  ASSERT_TRUE(result.finished.has_value());
  EXPECT_EQ(result.finished->usage().completion_tokens(),
            static_cast<int32_t>(result.token_ids.size()));
  EXPECT_FALSE(result.request_id.empty());
  EXPECT_TRUE(result.request_id_consistent);
}

TEST_F(DaemonTest, ConcurrentStreamsToBothModelsFinishWithTheirUsage) {
  constexpr int kCalls = 8;
  constexpr int32_t kMaxTokens = 12;
  const std::vector<std::string> topics = {"rivers",  "compilers", "the moon", "tea",
                                           "bridges", "graphs",    "sailing",  "bees"};
  std::vector<v1::GenerateRequest> requests;
  for (int i = 0; i < kCalls; ++i) {
    v1::GenerateRequest request =
        TextRequest(i % 2 == 0 ? kModelA : kModelB, "Tell me about " + topics[i], kMaxTokens);
    request.mutable_sampling()->set_temperature(0.8f);
    request.mutable_sampling()->set_seed(100 + i);
    requests.push_back(request);
  }
  std::vector<StreamResult> results(kCalls);
  std::vector<std::thread> threads;
  for (int i = 0; i < kCalls; ++i) {
    threads.emplace_back([&, i] { results[i] = Generate(api(), requests[i]); });
  }
  for (std::thread& thread : threads) thread.join();

  std::set<std::string> request_ids;
  for (int i = 0; i < kCalls; ++i) {
    SCOPED_TRACE("call " + std::to_string(i) + " to " + requests[i].model());
    const StreamResult& result = results[i];
    ExpectCompleteStream(result);
    if (!result.finished) continue;
    const v1::Usage& usage = result.finished->usage();
    EXPECT_EQ(usage.prompt_tokens(),
              static_cast<int32_t>(Encode(serving(), requests[i].text()).size()));
    EXPECT_THAT(result.finished->reason(), AnyOf(v1::LENGTH, v1::STOP));
    if (result.finished->reason() == v1::LENGTH) {
      EXPECT_EQ(usage.completion_tokens(), kMaxTokens);
    } else {
      EXPECT_LE(usage.completion_tokens(), kMaxTokens);
    }
    EXPECT_EQ(result.text, serving().tokenizer().Decode(result.token_ids, /*skip_special=*/true));
    request_ids.insert(result.request_id);
  }
  EXPECT_EQ(request_ids.size(), static_cast<size_t>(kCalls)) << "request ids must be unique";
}

// Collects one in-process request's output.
class CollectingSink : public engine::RequestSink {
 public:
  void OnDelta(engine::StreamDelta delta) override {
    absl::MutexLock lock(&mu_);
    token_ids_.insert(token_ids_.end(), delta.token_ids.begin(), delta.token_ids.end());
  }
  void OnFinish(const engine::FinishInfo& info) override {
    {
      absl::MutexLock lock(&mu_);
      info_ = info;
    }
    done_.Notify();
  }
  bool WaitForFinish(absl::Duration timeout) {
    return done_.WaitForNotificationWithTimeout(timeout);
  }
  std::vector<int32_t> token_ids() const {
    absl::MutexLock lock(&mu_);
    return token_ids_;
  }
  engine::FinishInfo info() const {
    absl::MutexLock lock(&mu_);
    return info_;
  }

 private:
  mutable absl::Mutex mu_;
  std::vector<int32_t> token_ids_ ABSL_GUARDED_BY(mu_);
  engine::FinishInfo info_ ABSL_GUARDED_BY(mu_);
  absl::Notification done_;
};

// The in-process engine reports to nobody.
class NoObserver : public engine::EngineObserver {
 public:
  void OnFirstToken(const std::string&, int32_t, double, double) override {}
  void OnTokens(const std::string&, std::span<const double>) override {}
  void OnFinished(const std::string&, engine::FinishReason, double) override {}
  void OnLlmState(const engine::LlmState&) override {}
  void OnJob(const engine::JobReport&) override {}
};

TEST_F(DaemonTest, GreedyOutputEqualsAStandaloneForwardOfTheSameWeights) {
  constexpr int32_t kMaxTokens = 16;
  const std::vector<int32_t> prompt = Encode(serving(), "The quick brown fox jumps over");

  NoObserver observer;
  engine::UnitOptions options;
  options.name = "reference";
  options.backend = config::Backend::kCpu;
  options.cpu_threads = 1;
  options.kv_cache.memory_bytes = int64_t{16} << 20;
  absl::StatusOr<std::unique_ptr<engine::UnitEngine>> unit =
      engine::UnitEngine::Create(options, &observer);
  ASSERT_TRUE(unit.ok()) << unit.status();

  for (const char* name : {kModelA, kModelB}) {
    SCOPED_TRACE(name);
    const StreamResult served = Generate(api(), GreedyTokenRequest(name, prompt, kMaxTokens));
    ExpectCompleteStream(served);
    EXPECT_EQ(served.finished->reason(), v1::LENGTH);

    engine::LlmSetup setup;
    setup.name = name;
    setup.model_dir = serving().ModelDir(name);
    absl::StatusOr<model::ModelSpec> spec = model::LoadModelSpec(setup.model_dir);
    ASSERT_TRUE(spec.ok()) << spec.status();
    setup.spec = *spec;
    absl::StatusOr<std::unique_ptr<model::Tokenizer>> tokenizer =
        model::Tokenizer::Load(setup.model_dir);
    ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
    setup.tokenizer = std::move(*tokenizer);
    setup.dtype = DType::kFloat32;
    setup.max_context = kMaxContext;
    ASSERT_TRUE((*unit)->AddLlm(setup).ok());

    auto sink = std::make_shared<CollectingSink>();
    engine::Request request;
    request.id = std::string("reference-") + name;
    request.model = name;
    request.prompt_tokens = prompt;
    request.sampling.max_tokens = kMaxTokens;
    request.sampling.temperature = 0;
    request.sampling.ignore_eos = true;
    request.sink = sink;
    ASSERT_TRUE((*unit)->Submit(std::move(request)).ok());
    ASSERT_TRUE(sink->WaitForFinish(absl::Seconds(30)));
    EXPECT_EQ(sink->info().reason, engine::FinishReason::kLength);
    EXPECT_EQ(sink->token_ids().size(), static_cast<size_t>(kMaxTokens));
    EXPECT_EQ(served.token_ids, sink->token_ids());
  }
}

TEST_F(DaemonTest, UnknownModelIsNotFound) {
  const StreamResult result = Generate(api(), TextRequest("no-such-model", "hello", 4));
  EXPECT_EQ(result.status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(result.status.error_message(), HasSubstr("no-such-model"));
  EXPECT_EQ(result.messages, 0);
}

TEST_F(DaemonTest, InvalidRequestsNameTheField) {
  struct Case {
    std::string field;
    v1::GenerateRequest request;
  };
  std::vector<Case> cases;
  cases.push_back({"prompt", TextRequest(kModelA, "", 4)});
  cases.push_back({"temperature", TextRequest(kModelA, "hi", 4)});
  cases.back().request.mutable_sampling()->set_temperature(-1);
  cases.push_back({"top_p", TextRequest(kModelA, "hi", 4)});
  cases.back().request.mutable_sampling()->set_top_p(0);
  cases.push_back({"top_p", TextRequest(kModelA, "hi", 4)});
  cases.back().request.mutable_sampling()->set_top_p(1.5f);
  cases.push_back({"top_k", TextRequest(kModelB, "hi", 4)});
  cases.back().request.mutable_sampling()->set_top_k(-1);
  cases.push_back({"max_tokens", TextRequest(kModelB, "hi", kMaxContext + 1)});
  for (const Case& c : cases) {
    SCOPED_TRACE(c.request.ShortDebugString());
    const StreamResult result = Generate(api(), c.request);
    EXPECT_EQ(result.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(result.status.error_message(), HasSubstr(c.field));
    EXPECT_EQ(result.messages, 0);
  }
}

TEST_F(DaemonTest, PromptLongerThanTheContextIsInvalidArgument) {
  const std::vector<int32_t> prompt(kMaxContext + 1, 'a');
  const StreamResult result = Generate(api(), GreedyTokenRequest(kModelA, prompt, 1));
  EXPECT_EQ(result.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(result.status.error_message(), HasSubstr("prompt"));
}

TEST_F(DaemonTest, HealthIsServingForTheApiAndEachModel) {
  // Each model is a health service of its own name.
  for (const std::string& service : {std::string(), std::string(kApiHealthService),
                                     std::string(kModelA), std::string(kModelB)}) {
    SCOPED_TRACE("service '" + service + "'");
    HealthResponse response;
    const grpc::Status status = CheckHealth(daemon(), service, &response);
    ASSERT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(response.status(), HealthResponse::SERVING);
  }
  HealthResponse response;
  EXPECT_EQ(CheckHealth(daemon(), "no.such.Service", &response).error_code(),
            grpc::StatusCode::NOT_FOUND);
}

TEST_F(DaemonTest, ListModelsShowsBothModelsServing) {
  grpc::ClientContext context;
  v1::ListModelsResponse response;
  ASSERT_TRUE(api().ListModels(&context, v1::ListModelsRequest(), &response).ok());
  ASSERT_EQ(response.models_size(), 2);
  std::set<std::string> names;
  for (const v1::ModelInfo& model : response.models()) {
    SCOPED_TRACE(model.ShortDebugString());
    names.insert(model.name());
    EXPECT_EQ(model.state(), v1::ModelInfo::SERVING);
    EXPECT_FALSE(model.unit().empty());
    EXPECT_EQ(model.dtype(), "float32");
    EXPECT_EQ(model.max_context(), kMaxContext);
    EXPECT_EQ(model.chat_template(), "chatml");
    EXPECT_TRUE(model.error_message().empty());
  }
  EXPECT_EQ(names, (std::set<std::string>{kModelA, kModelB}));
}

TEST_F(DaemonTest, AbortMidStreamEndsItWithReasonAbort) {
  v1::GenerateRequest request = LongRequest(kModelA, "Count to a thousand");
  request.set_request_id("abort-mid-stream");
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  auto reader = api().Generate(&context, request);
  v1::GenerateResponse first;
  ASSERT_TRUE(reader->Read(&first));
  ASSERT_FALSE(first.has_finished());
  EXPECT_EQ(first.request_id(), "abort-mid-stream");

  const grpc::Status aborted = Abort(api(), "abort-mid-stream");
  EXPECT_TRUE(aborted.ok()) << aborted.error_message();
  const StreamResult rest = ReadAll(reader.get());
  ASSERT_TRUE(rest.status.ok()) << rest.status.error_message();
  ASSERT_TRUE(rest.finished.has_value());
  EXPECT_EQ(rest.finished->reason(), v1::ABORT);
  const int32_t received = first.token_ids_size() + static_cast<int32_t>(rest.token_ids.size());
  EXPECT_EQ(rest.finished->usage().completion_tokens(), received);
  EXPECT_LT(received, kLongMaxTokens);
}

TEST_F(DaemonTest, AbortOfAnUnknownIdIsNotFound) {
  EXPECT_EQ(Abort(api(), "never-submitted").error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(DaemonTest, ShortDeadlineIsDeadlineExceededAndServingGoesOn) {
  const StreamResult result =
      Generate(api(), LongRequest(kModelB, "Take your time"), std::chrono::milliseconds(50));
  EXPECT_EQ(result.status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_TRUE(WaitForIdle(api(), std::chrono::seconds(10)).ok());
  ExpectCompleteStream(Generate(api(), TextRequest(kModelB, "Still there?", 4)));
}

TEST_F(DaemonTest, ClientCancellationFreesTheRequest) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  auto reader = api().Generate(&context, LongRequest(kModelA, "Go on and on"));
  v1::GenerateResponse first;
  ASSERT_TRUE(reader->Read(&first));
  context.TryCancel();
  const StreamResult rest = ReadAll(reader.get());
  EXPECT_EQ(rest.status.error_code(), grpc::StatusCode::CANCELLED);

  const absl::Status idle = WaitForIdle(api(), std::chrono::seconds(10));
  EXPECT_TRUE(idle.ok()) << idle;
  ExpectCompleteStream(Generate(api(), TextRequest(kModelA, "Next one", 4)));
}

TEST_F(DaemonTest, MetricsCountGeneratedTokensAndKeepHistogramsPerModel) {
  constexpr int32_t kMaxTokens = 16;
  ASSERT_TRUE(WaitForIdle(api(), std::chrono::seconds(10)).ok());
  auto scrape = [&]() -> absl::StatusOr<MetricsPage> {
    absl::StatusOr<std::string> body = HttpGet(daemon().metrics_port(), "/metrics");
    if (!body.ok()) return body.status();
    return ParseMetrics(*body);
  };
  auto generated = [](const MetricsPage& page, const std::string& model) {
    return page.Find(kGenerationTokensMetric, {{"model_name", model}}).value_or(0);
  };
  absl::StatusOr<MetricsPage> before = scrape();
  ASSERT_TRUE(before.ok()) << before.status();

  const std::vector<int32_t> prompt = Encode(serving(), "metrics");
  for (const char* name : {kModelA, kModelB}) {
    ExpectCompleteStream(Generate(api(), GreedyTokenRequest(name, prompt, kMaxTokens)));
  }

  // The engine may publish a step's metrics just after the client has seen its tokens.
  absl::StatusOr<MetricsPage> after;
  absl::StatusOr<v1::GetStatsResponse> stats;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (true) {
    after = scrape();
    stats = GetStats(api());
    ASSERT_TRUE(after.ok()) << after.status();
    ASSERT_TRUE(stats.ok()) << stats.status();
    bool settled = true;
    for (const v1::ModelStats& model : stats->models()) {
      settled = settled && generated(*after, model.name()) == model.generated_tokens();
    }
    if (settled || std::chrono::steady_clock::now() > deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }

  ASSERT_EQ(stats->models_size(), 2);
  for (const v1::ModelStats& model : stats->models()) {
    SCOPED_TRACE(model.name());
    EXPECT_EQ(generated(*after, model.name()), generated(*before, model.name()) + kMaxTokens);
    EXPECT_EQ(generated(*after, model.name()), static_cast<double>(model.generated_tokens()));
  }

  std::map<std::string, std::set<std::string>> observed_histograms;  // model -> families
  for (const auto& [family, type] : after->types) {
    if (type != "histogram") continue;
    for (const char* name : {kModelA, kModelB}) {
      const std::optional<double> count = after->Find(family + "_count", {{"model_name", name}});
      const std::optional<double> infinite_bucket =
          after->Find(family + "_bucket", {{"model_name", name}, {"le", "+Inf"}});
      if (count && *count > 0) {
        EXPECT_EQ(infinite_bucket, count) << family << " for " << name;
        observed_histograms[name].insert(family);
      }
    }
  }
  EXPECT_FALSE(observed_histograms[kModelA].empty());
  EXPECT_EQ(observed_histograms[kModelA], observed_histograms[kModelB]);
}

TEST_F(DaemonTest, ChatStreamsAnAnswerRenderedWithChatML) {
  v1::ChatRequest request;
  request.set_model(kModelB);
  std::vector<model::ChatMessage> messages = {{"system", "You answer briefly."},
                                              {"user", "What is multiplexing?"}};
  for (const model::ChatMessage& message : messages) {
    v1::ChatMessage* added = request.add_messages();
    added->set_role(message.role);
    added->set_content(message.content);
  }
  request.mutable_sampling()->set_max_tokens(8);
  request.mutable_sampling()->set_temperature(0);
  request.mutable_sampling()->set_ignore_eos(true);

  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  auto reader = api().Chat(&context, request);
  const StreamResult result = ReadAll(reader.get());
  ExpectCompleteStream(result);
  ASSERT_TRUE(result.finished.has_value());
  EXPECT_EQ(result.finished->reason(), v1::LENGTH);
  EXPECT_EQ(result.token_ids.size(), 8u);

  absl::StatusOr<model::ChatTemplate> chatml = model::ChatTemplate::FromName("chatml");
  ASSERT_TRUE(chatml.ok());
  absl::StatusOr<std::string> rendered =
      chatml->Render(messages, /*add_generation_prompt=*/true, /*bos_token=*/"");
  ASSERT_TRUE(rendered.ok()) << rendered.status();
  EXPECT_EQ(result.finished->usage().prompt_tokens(),
            static_cast<int32_t>(serving().tokenizer().Encode(*rendered, false).size()));
}

TEST_F(DaemonLifecycleTest, FullQueueIsResourceExhausted) {
  DaemonSettings settings;
  settings.max_queued_requests = 2;
  settings.max_batch_size = 1;
  absl::StatusOr<std::unique_ptr<DaemonProcess>> daemon =
      serving().StartDaemon("small-queue", settings);
  ASSERT_TRUE(daemon.ok()) << daemon.status();

  constexpr int kCalls = 8;
  std::vector<StreamResult> results(kCalls);
  std::vector<std::thread> threads;
  for (int i = 0; i < kCalls; ++i) {
    threads.emplace_back([&, i] {
      results[i] =
          Generate((*daemon)->api(), LongRequest(kModelA, "Story number " + std::to_string(i)),
                   std::chrono::seconds(120));  // serialized: batch size 1, slow under ASan
    });
  }
  for (std::thread& thread : threads) thread.join();

  int exhausted = 0;
  for (const StreamResult& result : results) {
    if (result.status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED) {
      ++exhausted;
      EXPECT_EQ(result.messages, 0);
      EXPECT_FALSE(result.status.error_message().empty());
    } else {
      ExpectCompleteStream(result);
    }
  }
  EXPECT_GE(exhausted, 1);
  EXPECT_LE(exhausted, kCalls - 2) << "the queue holds two requests";

  absl::StatusOr<int> exit_code = (*daemon)->Terminate(std::chrono::seconds(15));
  EXPECT_TRUE(exit_code.ok() && *exit_code == 0) << (*daemon)->Log();
  if (HasFailure()) std::cerr << "--- small-queue log ---\n" << (*daemon)->Log() << std::endl;
}

TEST_F(DaemonLifecycleTest, SigtermExitsZeroWithinTheGracePeriodAndEndsStreams) {
  DaemonSettings settings;
  settings.shutdown_grace_seconds = 2;
  absl::StatusOr<std::unique_ptr<DaemonProcess>> daemon =
      serving().StartDaemon("sigterm", settings);
  ASSERT_TRUE(daemon.ok()) << daemon.status();

  std::atomic<bool> streaming{false};
  StreamResult result;
  std::thread client([&] {
    grpc::ClientContext context;
    // Far beyond the grace period: the stream must end because the daemon ends it.
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    auto reader = (*daemon)->api().Generate(&context, LongRequest(kModelB, "Keep talking"));
    v1::GenerateResponse first;
    if (reader->Read(&first)) {
      streaming = true;
      result = ReadAll(reader.get());
      result.token_ids.insert(result.token_ids.begin(), first.token_ids().begin(),
                              first.token_ids().end());
    } else {
      result.status = reader->Finish();
    }
  });
  const auto wait_end = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!streaming && std::chrono::steady_clock::now() < wait_end) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_TRUE(streaming);

  const auto term_start = std::chrono::steady_clock::now();
  absl::StatusOr<int> exit_code = (*daemon)->Terminate(std::chrono::seconds(15));
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - term_start).count();
  client.join();

  ASSERT_TRUE(exit_code.ok()) << exit_code.status();
  EXPECT_EQ(*exit_code, 0);
  // The grace period, plus time to stop the servers and free the models.
  EXPECT_LT(seconds, settings.shutdown_grace_seconds + 3.0);
  EXPECT_NE(result.status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED)
      << "the stream hung until the client's deadline";
  if (result.status.ok()) {
    EXPECT_EQ(result.finished_messages, 1);
    ASSERT_TRUE(result.finished.has_value());
    EXPECT_EQ(result.finished->usage().completion_tokens(),
              static_cast<int32_t>(result.token_ids.size()));
  }
  if (HasFailure()) std::cerr << "--- sigterm log ---\n" << (*daemon)->Log() << std::endl;
}

}  // namespace
}  // namespace muxserve::integration
