#include "serving.h"

#include <cstdlib>
#include <fstream>
#include <iostream>
#include <optional>
#include <thread>

#include "absl/strings/str_cat.h"
#include "muxserve/common/status.h"
#include "muxserve/model/synthetic.h"

namespace muxserve::integration {
namespace {

namespace fs = std::filesystem;

constexpr std::chrono::seconds kDaemonStartTimeout{30};
constexpr std::chrono::seconds kDaemonStopTimeout{15};

// The synthetic tokenizer's <|endoftext|> and <|im_end|>.
constexpr int32_t kEndOfText = 256;
constexpr int32_t kImEnd = 258;

model::SyntheticModelOptions TinyModel(int64_t layers, int64_t hidden, int64_t heads,
                                       int64_t kv_heads, uint64_t seed) {
  model::SyntheticModelOptions options;
  model::ModelSpec& spec = options.spec;
  spec.architecture = "LlamaForCausalLM";
  spec.model_type = "llama";
  spec.vocab_size = 320;
  spec.hidden_size = hidden;
  spec.intermediate_size = hidden * 8 / 3;
  spec.num_layers = layers;
  spec.num_heads = heads;
  spec.num_kv_heads = kv_heads;
  spec.head_dim = hidden / heads;
  spec.max_position_embeddings = kMaxContext;
  spec.rms_norm_eps = 1e-5;
  spec.eos_token_ids = {kImEnd, kEndOfText};
  options.seed = seed;
  return options;
}

// Removes the scratch directory and stops the shared daemon after the last test.
class ServingCleanup : public ::testing::Environment {
 public:
  void TearDown() override { Serving::Shutdown(); }
};
[[maybe_unused]] ::testing::Environment* const kServingCleanup =
    ::testing::AddGlobalTestEnvironment(new ServingCleanup);

// Owned here between the first Get and the global tear-down.
std::unique_ptr<Serving> instance;
std::optional<absl::Status> init_status;

}  // namespace

absl::StatusOr<Serving*> Serving::Get() {
  if (!init_status) {
    instance.reset(new Serving());
    init_status = instance->Init();
  }
  if (!init_status->ok()) return *init_status;
  return instance.get();
}

void Serving::Shutdown() {
  if (instance == nullptr) return;
  if (instance->shared_daemon_ != nullptr) {
    absl::StatusOr<int> exit_code = instance->shared_daemon_->Terminate(kDaemonStopTimeout);
    if (!exit_code.ok() || *exit_code != 0) {
      ADD_FAILURE() << "the shared muxserved did not stop cleanly: "
                    << (exit_code.ok() ? absl::StrCat("exit code ", *exit_code)
                                       : exit_code.status().ToString())
                    << "\n--- log ---\n"
                    << instance->shared_daemon_->Log();
    }
  }
  std::error_code ignored;
  if (!instance->dir_.empty()) fs::remove_all(instance->dir_, ignored);
  instance.reset();
  init_status.reset();
}

absl::Status Serving::Init() {
  const char* tmp = std::getenv("TMPDIR");
  std::string pattern = absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/muxserve-it-XXXXXX");
  if (mkdtemp(pattern.data()) == nullptr) return absl::InternalError("mkdtemp failed");
  dir_ = pattern;
  RETURN_IF_ERROR(model::WriteSyntheticModel(ModelDir(kModelA), TinyModel(2, 64, 4, 2, 11)));
  RETURN_IF_ERROR(model::WriteSyntheticModel(ModelDir(kModelB), TinyModel(3, 96, 6, 6, 22)));
  ASSIGN_OR_RETURN(tokenizer_, model::Tokenizer::Load(ModelDir(kModelA)));
  return absl::OkStatus();
}

fs::path Serving::WriteConfig(const std::string& file_name, const DaemonSettings& settings) const {
  const fs::path path = dir_ / file_name;
  std::ofstream out(path);
  out << "server:\n"
      << "  grpc_address: 127.0.0.1:0\n"
      << "  metrics_address: localhost:0\n"
      << "  shutdown_grace_seconds: " << settings.shutdown_grace_seconds << "\n"
      << "  max_queued_requests: " << settings.max_queued_requests << "\n"
      << "runtime:\n"
      << "  backend: cpu\n"
      << "  cpu_threads: 1\n"
      << "kv_cache:\n"
      << "  memory: 16MiB\n"
      << "scheduler:\n"
      << "  max_batch_size: " << settings.max_batch_size << "\n"
      << "models:\n";
  for (const char* name : {kModelA, kModelB}) {
    out << "  - name: " << name << "\n"
        << "    path: " << ModelDir(name).string() << "\n"
        << "    max_context: " << kMaxContext << "\n";
  }
  return path;
}

absl::StatusOr<std::unique_ptr<DaemonProcess>> Serving::StartDaemon(
    const std::string& name, const DaemonSettings& settings) const {
  return DaemonProcess::Start(WriteConfig(name + ".yaml", settings), dir_, name,
                              kDaemonStartTimeout);
}

absl::StatusOr<DaemonProcess*> Serving::SharedDaemon() {
  if (shared_daemon_ == nullptr && shared_daemon_error_.ok()) {
    absl::StatusOr<std::unique_ptr<DaemonProcess>> daemon = StartDaemon("shared", DaemonSettings{});
    if (daemon.ok()) {
      shared_daemon_ = std::move(*daemon);
    } else {
      shared_daemon_error_ = daemon.status();
    }
  }
  RETURN_IF_ERROR(shared_daemon_error_);
  return shared_daemon_.get();
}

StreamResult ReadAll(grpc::ClientReaderInterface<v1::GenerateResponse>* reader) {
  StreamResult result;
  v1::GenerateResponse response;
  while (reader->Read(&response)) {
    if (result.messages == 0) result.request_id = response.request_id();
    if (response.request_id() != result.request_id) result.request_id_consistent = false;
    ++result.messages;
    result.text += response.text();
    result.token_ids.insert(result.token_ids.end(), response.token_ids().begin(),
                            response.token_ids().end());
    if (response.has_finished()) {
      ++result.finished_messages;
      result.finished = response.finished();
    }
  }
  result.status = reader->Finish();
  return result;
}

StreamResult Generate(v1::Muxserve::Stub& stub, const v1::GenerateRequest& request,
                      std::chrono::milliseconds timeout) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + timeout);
  auto reader = stub.Generate(&context, request);
  return ReadAll(reader.get());
}

v1::GenerateRequest TextRequest(const std::string& model, const std::string& prompt,
                                int32_t max_tokens) {
  v1::GenerateRequest request;
  request.set_model(model);
  request.set_text(prompt);
  request.mutable_sampling()->set_max_tokens(max_tokens);
  return request;
}

v1::GenerateRequest GreedyTokenRequest(const std::string& model, const std::vector<int32_t>& prompt,
                                       int32_t max_tokens) {
  v1::GenerateRequest request;
  request.set_model(model);
  for (int32_t id : prompt) request.mutable_token_ids()->add_ids(id);
  v1::SamplingParams* sampling = request.mutable_sampling();
  sampling->set_max_tokens(max_tokens);
  sampling->set_temperature(0);
  sampling->set_ignore_eos(true);
  return request;
}

absl::Status WaitForIdle(v1::Muxserve::Stub& stub, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string last;
  while (std::chrono::steady_clock::now() < deadline) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
    v1::GetStatsResponse stats;
    grpc::Status status = stub.GetStats(&context, v1::GetStatsRequest(), &stats);
    if (status.ok()) {
      bool idle = true;
      for (const v1::ModelStats& model : stats.models()) {
        idle = idle && model.running() == 0 && model.waiting() == 0;
      }
      if (idle) return absl::OkStatus();
      last = stats.ShortDebugString();
    } else {
      last = status.error_message();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return absl::DeadlineExceededError(absl::StrCat("daemon not idle; last stats: ", last));
}

void ScratchTest::SetUp() {
  absl::StatusOr<Serving*> serving = Serving::Get();
  ASSERT_TRUE(serving.ok()) << "integration set-up: " << serving.status();
  serving_ = *serving;
}

void SharedDaemonTest::SetUp() {
  ScratchTest::SetUp();
  if (HasFatalFailure()) return;
  absl::StatusOr<DaemonProcess*> daemon = serving().SharedDaemon();
  ASSERT_TRUE(daemon.ok()) << daemon.status();
  daemon_ = *daemon;
}

void SharedDaemonTest::TearDown() {
  if (HasFailure() && daemon_ != nullptr) {
    std::cerr << "--- shared muxserved log ---\n" << daemon_->Log() << std::endl;
  }
}

}  // namespace muxserve::integration
