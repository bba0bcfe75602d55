// Access control end to end: bearer tokens (some limited to one model), the per-client limits of
// `limits:`, and TLS with and without client certificates, against real muxserved processes.
#include <signal.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "grpcpp/security/credentials.h"
#include "gtest/gtest.h"
#include "muxserve/common/status.h"
#include "nlohmann/json.hpp"
#include "certificates.h"
#include "process.h"
#include "serving.h"

namespace muxserve::integration {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kFullSecret[] = "full-access-7f3a9c1e5b";
constexpr char kModelASecret[] = "only-tiny-a-2d8e4f6a0c";
constexpr int64_t kMaxPromptTokens = 40;
constexpr int64_t kMaxStopStrings = 2;
constexpr int64_t kMaxStreams = 2;
constexpr int64_t kMaxMessageBytes = 4096;

// The two tiny models of Serving plus the given extra YAML sections.
fs::path WriteAuthConfig(const Serving& serving, const std::string& name,
                         const std::string& sections) {
  const fs::path path = serving.dir() / (name + ".yaml");
  std::ofstream out(path);
  out << "server:\n"
      << "  grpc_address: 127.0.0.1:0\n"
      << "  metrics_address: 127.0.0.1:0\n"
      << "  shutdown_grace_seconds: 2\n"
      << "runtime:\n  backend: cpu\n  cpu_threads: 1\n"
      << "kv_cache:\n  memory: 16MiB\n"
      << sections << "models:\n";
  for (const char* model : {kModelA, kModelB}) {
    out << "  - name: " << model << "\n    path: " << serving.ModelDir(model).string() << "\n";
  }
  return path;
}

void Authorize(grpc::ClientContext* context, const std::string& secret) {
  context->AddMetadata("authorization", "Bearer " + secret);
  context->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
}

StreamResult GenerateAs(v1::Muxserve::Stub& stub, const std::string& secret,
                        const v1::GenerateRequest& request) {
  grpc::ClientContext context;
  if (!secret.empty()) Authorize(&context, secret);
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  auto reader = stub.Generate(&context, request);
  return ReadAll(reader.get());
}

grpc::Status ListModelsAs(v1::Muxserve::Stub& stub, const std::string& secret,
                          v1::ListModelsResponse* response) {
  grpc::ClientContext context;
  if (!secret.empty()) Authorize(&context, secret);
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  return stub.ListModels(&context, v1::ListModelsRequest(), response);
}

// One daemon with tokens and limits for every test of the suite.
class TokenAuthTest : public ScratchTest {
 protected:
  static void TearDownTestSuite() {
    if (daemon_ != nullptr) {
      absl::StatusOr<int> exit_code = daemon_->Terminate(std::chrono::seconds(15));
      EXPECT_TRUE(exit_code.ok() && *exit_code == 0) << daemon_->Log();
      const std::string log = daemon_->Log();
      // Secrets never reach the log, whatever the tests sent.
      EXPECT_THAT(log, Not(HasSubstr(kFullSecret)));
      EXPECT_THAT(log, Not(HasSubstr(kModelASecret)));
      daemon_.reset();
    }
  }

  void SetUp() override {
    ScratchTest::SetUp();
    if (HasFatalFailure() || daemon_ != nullptr) return;
    const std::string sections = absl::StrCat(
        "auth:\n  tokens:\n    - name: full\n      token: ", kFullSecret,
        "\n    - name: tiny-a-only\n      token: ", kModelASecret, "\n      models: [", kModelA,
        "]\nlimits:\n  max_message_bytes: ", kMaxMessageBytes,
        "\n  max_prompt_tokens: ", kMaxPromptTokens, "\n  max_stop_strings: ", kMaxStopStrings,
        "\n  max_streams_per_client: ", kMaxStreams, "\n");
    absl::StatusOr<std::unique_ptr<DaemonProcess>> daemon =
        DaemonProcess::Start(WriteAuthConfig(serving(), "auth", sections), serving().dir(), "auth",
                             std::chrono::seconds(30));
    ASSERT_TRUE(daemon.ok()) << daemon.status();
    daemon_ = std::move(*daemon);
  }
  void TearDown() override {
    if (HasFailure() && daemon_ != nullptr) std::cerr << "--- auth log ---\n" << daemon_->Log();
  }

  v1::Muxserve::Stub& api() { return daemon_->api(); }

  static std::unique_ptr<DaemonProcess> daemon_;
};
std::unique_ptr<DaemonProcess> TokenAuthTest::daemon_;

TEST_F(TokenAuthTest, MissingOrWrongTokenIsUnauthenticated) {
  const v1::GenerateRequest request = TextRequest(kModelA, "Hello", 4);
  StreamResult missing = GenerateAs(api(), "", request);
  EXPECT_EQ(missing.status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(missing.status.error_message(), HasSubstr("Bearer"));
  EXPECT_EQ(missing.messages, 0);

  StreamResult wrong = GenerateAs(api(), "full-access-7f3a9c1e5X", request);
  EXPECT_EQ(wrong.status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(wrong.status.error_message(), Not(HasSubstr("full-access")));

  grpc::ClientContext basic;
  basic.AddMetadata("authorization", absl::StrCat("Basic ", kFullSecret));
  auto reader = api().Generate(&basic, request);
  EXPECT_EQ(ReadAll(reader.get()).status.error_code(), grpc::StatusCode::UNAUTHENTICATED);

  v1::ListModelsResponse models;
  EXPECT_EQ(ListModelsAs(api(), "", &models).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  grpc::ClientContext stats_context;
  v1::GetStatsResponse stats;
  EXPECT_EQ(api().GetStats(&stats_context, v1::GetStatsRequest(), &stats).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  grpc::ClientContext abort_context;
  v1::AbortRequest abort;
  abort.set_request_id("anything");
  v1::AbortResponse aborted;
  EXPECT_EQ(api().Abort(&abort_context, abort, &aborted).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
}

TEST_F(TokenAuthTest, HealthNeedsNoToken) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(kApiHealthService);
  grpc::health::v1::HealthCheckResponse response;
  ASSERT_TRUE(daemon_->health().Check(&context, request, &response).ok());
  EXPECT_EQ(response.status(), grpc::health::v1::HealthCheckResponse::SERVING);
}

TEST_F(TokenAuthTest, TokensReachTheirModelsOnly) {
  StreamResult full_b = GenerateAs(api(), kFullSecret, TextRequest(kModelB, "Hello", 4));
  EXPECT_TRUE(full_b.status.ok()) << full_b.status.error_message();
  EXPECT_EQ(full_b.finished_messages, 1);

  StreamResult limited_a = GenerateAs(api(), kModelASecret, TextRequest(kModelA, "Hello", 4));
  EXPECT_TRUE(limited_a.status.ok()) << limited_a.status.error_message();

  StreamResult limited_b = GenerateAs(api(), kModelASecret, TextRequest(kModelB, "Hello", 4));
  EXPECT_EQ(limited_b.status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(limited_b.status.error_message(), HasSubstr("tiny-a-only"));
  EXPECT_THAT(limited_b.status.error_message(), HasSubstr(kModelB));

  grpc::ClientContext chat_context;
  Authorize(&chat_context, kModelASecret);
  v1::ChatRequest chat;
  chat.set_model(kModelB);
  chat.add_messages()->set_content("hi");
  auto chat_reader = api().Chat(&chat_context, chat);
  EXPECT_EQ(ReadAll(chat_reader.get()).status.error_code(), grpc::StatusCode::PERMISSION_DENIED);

  // Listings show a limited token its own models only.
  v1::ListModelsResponse listed;
  ASSERT_TRUE(ListModelsAs(api(), kModelASecret, &listed).ok());
  ASSERT_EQ(listed.models_size(), 1);
  EXPECT_EQ(listed.models(0).name(), kModelA);
  v1::ListModelsResponse all;
  ASSERT_TRUE(ListModelsAs(api(), kFullSecret, &all).ok());
  EXPECT_EQ(all.models_size(), 2);
}

TEST_F(TokenAuthTest, LimitsRefuseWithTheirNames) {
  v1::GenerateRequest stops = TextRequest(kModelA, "Hello", 4);
  for (const char* stop : {"a", "b", "c"}) stops.mutable_sampling()->add_stop(stop);
  StreamResult too_many_stops = GenerateAs(api(), kFullSecret, stops);
  EXPECT_EQ(too_many_stops.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(too_many_stops.status.error_message(), HasSubstr("limits.max_stop_strings"));

  std::vector<int32_t> long_prompt(kMaxPromptTokens + 1, 65);
  StreamResult too_long =
      GenerateAs(api(), kFullSecret, GreedyTokenRequest(kModelA, long_prompt, 2));
  EXPECT_EQ(too_long.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(too_long.status.error_message(), HasSubstr("limits.max_prompt_tokens"));
  long_prompt.pop_back();
  EXPECT_TRUE(
      GenerateAs(api(), kFullSecret, GreedyTokenRequest(kModelA, long_prompt, 2)).status.ok());

  StreamResult too_big = GenerateAs(
      api(), kFullSecret, TextRequest(kModelA, std::string(kMaxMessageBytes + 100, 'x'), 2));
  EXPECT_EQ(too_big.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_FALSE(too_big.status.error_message().empty());
}

TEST_F(TokenAuthTest, StreamsPerClientAreLimitedPerToken) {
  // Two long streams of one token fill its share; a third is refused, another token is not.
  std::vector<std::unique_ptr<grpc::ClientContext>> contexts;
  std::vector<std::unique_ptr<grpc::ClientReader<v1::GenerateResponse>>> readers;
  for (int i = 0; i < kMaxStreams; ++i) {
    contexts.push_back(std::make_unique<grpc::ClientContext>());
    Authorize(contexts.back().get(), kModelASecret);
    v1::GenerateRequest request = TextRequest(kModelA, "Go on", kLongMaxTokens);
    request.mutable_sampling()->set_ignore_eos(true);
    readers.push_back(api().Generate(contexts.back().get(), request));
    v1::GenerateResponse first;
    ASSERT_TRUE(readers.back()->Read(&first)) << readers.back()->Finish().error_message();
  }
  StreamResult third = GenerateAs(api(), kModelASecret, TextRequest(kModelA, "One more", 2));
  EXPECT_EQ(third.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(third.status.error_message(), HasSubstr("limits.max_streams_per_client"));
  EXPECT_THAT(third.status.error_message(), HasSubstr("tiny-a-only"));
  EXPECT_TRUE(GenerateAs(api(), kFullSecret, TextRequest(kModelA, "Other client", 2)).status.ok());

  for (size_t i = 0; i < readers.size(); ++i) {
    contexts[i]->TryCancel();
    ReadAll(readers[i].get());
  }
  // The slots come back once the engine has dropped the cancelled streams.
  bool idle = false;
  for (int attempt = 0; attempt < 500 && !idle; ++attempt) {
    grpc::ClientContext context;
    Authorize(&context, kModelASecret);
    v1::GetStatsResponse stats;
    ASSERT_TRUE(api().GetStats(&context, v1::GetStatsRequest(), &stats).ok());
    ASSERT_EQ(stats.models_size(), 1) << "a limited token sees its own model only";
    idle = stats.models(0).running() == 0 && stats.models(0).waiting() == 0;
    if (!idle) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_TRUE(idle);
  StreamResult after = GenerateAs(api(), kModelASecret, TextRequest(kModelA, "Again", 2));
  EXPECT_TRUE(after.status.ok()) << after.status.error_message();
}

// --- TLS --------------------------------------------------------------------------------------

// A muxserved whose API speaks TLS: DaemonProcess dials in plaintext, so this one is started
// and awaited here.
class TlsDaemon {
 public:
  static absl::StatusOr<std::unique_ptr<TlsDaemon>> Start(const fs::path& config,
                                                          const fs::path& dir,
                                                          const std::string& name) {
    const fs::path ready = dir / (name + ".ready.json");
    const fs::path log = dir / (name + ".log");
    fs::remove(ready);
    ASSIGN_OR_RETURN(pid_t pid,
                     SpawnProcess({(BuildDir() / "src" / "apps" / "muxserved").string(), "--config",
                                   config.string(), "--ready-file", ready.string()},
                                  log, log));
    std::unique_ptr<TlsDaemon> daemon(new TlsDaemon(pid, log));
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (std::chrono::steady_clock::now() < deadline) {
      const nlohmann::json json =
          nlohmann::json::parse(ReadFileOrEmpty(ready), nullptr, /*allow_exceptions=*/false);
      if (json.is_object() && json.contains("grpc_port") && json["grpc_port"].is_number()) {
        daemon->port_ = json["grpc_port"].get<int>();
        return daemon;
      }
      if (std::optional<int> code = WaitForExit(pid, std::chrono::milliseconds(0))) {
        daemon->running_ = false;
        return absl::FailedPreconditionError(
            absl::StrCat("muxserved exited with ", *code, ":\n", ReadFileOrEmpty(log)));
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return absl::DeadlineExceededError(absl::StrCat("no ready file:\n", ReadFileOrEmpty(log)));
  }
  ~TlsDaemon() {
    if (running_) KillAndReap(pid_);
  }
  absl::StatusOr<int> Terminate() {
    running_ = false;
    kill(pid_, SIGTERM);
    std::optional<int> code = WaitForExit(pid_, std::chrono::seconds(15));
    if (!code) {
      KillAndReap(pid_);
      return absl::DeadlineExceededError("muxserved ignored SIGTERM");
    }
    return *code;
  }
  std::string address() const { return absl::StrCat("127.0.0.1:", port_); }
  std::string Log() const { return ReadFileOrEmpty(log_); }

 private:
  TlsDaemon(pid_t pid, fs::path log) : pid_(pid), log_(std::move(log)) {}
  pid_t pid_;
  fs::path log_;
  bool running_ = true;
  int port_ = 0;
};

// Calls ListModels, waiting for the channel to connect; the status of the last try.
grpc::Status ListModelsOver(const std::shared_ptr<grpc::ChannelCredentials>& credentials,
                            const std::string& address, v1::ListModelsResponse* response) {
  auto stub = v1::Muxserve::NewStub(grpc::CreateChannel(address, credentials));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  return stub->ListModels(&context, v1::ListModelsRequest(), response);
}

class TlsTest : public ScratchTest {
 protected:
  void SetUp() override {
    ScratchTest::SetUp();
    if (HasFatalFailure()) return;
    absl::StatusOr<Certificates> certificates =
        MakeCertificates(serving().dir() / "tls", "IP:127.0.0.1,DNS:localhost");
    if (absl::IsNotFound(certificates.status())) GTEST_SKIP() << certificates.status();
    ASSERT_TRUE(certificates.ok()) << certificates.status();
    certificates_ = *certificates;
  }
  std::string TlsSection(bool mutual) const {
    const fs::path& dir = certificates_.dir;
    std::string section = absl::StrCat("auth:\n  tls:\n    cert: ", (dir / "server.crt").string(),
                                       "\n    key: ", (dir / "server.key").string(), "\n");
    if (mutual) absl::StrAppend(&section, "    client_ca: ", (dir / "ca.crt").string(), "\n");
    return section;
  }

  Certificates certificates_;
};

TEST_F(TlsTest, ServesOverTlsAndRefusesPlaintext) {
  absl::StatusOr<std::unique_ptr<TlsDaemon>> daemon = TlsDaemon::Start(
      WriteAuthConfig(serving(), "tls", TlsSection(false)), serving().dir(), "tls");
  ASSERT_TRUE(daemon.ok()) << daemon.status();

  grpc::SslCredentialsOptions trusted;
  trusted.pem_root_certs = certificates_.ca;
  v1::ListModelsResponse response;
  grpc::Status status =
      ListModelsOver(grpc::SslCredentials(trusted), (*daemon)->address(), &response);
  EXPECT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(response.models_size(), 2);

  EXPECT_FALSE(
      ListModelsOver(grpc::InsecureChannelCredentials(), (*daemon)->address(), &response).ok());
  // A client that does not trust the server's CA refuses it.
  grpc::SslCredentialsOptions untrusted;
  untrusted.pem_root_certs = certificates_.client_cert;
  EXPECT_FALSE(
      ListModelsOver(grpc::SslCredentials(untrusted), (*daemon)->address(), &response).ok());

  absl::StatusOr<int> exit_code = (*daemon)->Terminate();
  EXPECT_TRUE(exit_code.ok() && *exit_code == 0) << (*daemon)->Log();
  EXPECT_THAT((*daemon)->Log(), HasSubstr("TLS"));
}

TEST_F(TlsTest, MutualTlsNeedsAClientCertificate) {
  absl::StatusOr<std::unique_ptr<TlsDaemon>> daemon = TlsDaemon::Start(
      WriteAuthConfig(serving(), "mtls", TlsSection(true)), serving().dir(), "mtls");
  ASSERT_TRUE(daemon.ok()) << daemon.status();

  grpc::SslCredentialsOptions without_cert;
  without_cert.pem_root_certs = certificates_.ca;
  v1::ListModelsResponse response;
  EXPECT_FALSE(
      ListModelsOver(grpc::SslCredentials(without_cert), (*daemon)->address(), &response).ok());

  grpc::SslCredentialsOptions with_cert = without_cert;
  with_cert.pem_cert_chain = certificates_.client_cert;
  with_cert.pem_private_key = certificates_.client_key;
  grpc::Status status =
      ListModelsOver(grpc::SslCredentials(with_cert), (*daemon)->address(), &response);
  EXPECT_TRUE(status.ok()) << status.error_message();

  absl::StatusOr<int> exit_code = (*daemon)->Terminate();
  EXPECT_TRUE(exit_code.ok() && *exit_code == 0) << (*daemon)->Log();
  EXPECT_THAT((*daemon)->Log(), HasSubstr("mutual TLS"));
}

}  // namespace
}  // namespace muxserve::integration
