#include "muxserve/server/daemon.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <optional>
#include <sstream>
#include <string_view>
#include <system_error>
#include <utility>

#include "absl/algorithm/container.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/security/server_credentials.h"
#include "muxserve/common/status.h"
#include "muxserve/runtime/device.h"
#include "muxserve/server/access_control.h"
#include "muxserve/server/model_loader.h"
#include "muxserve/server/startup_plan.h"
#include "nlohmann/json.hpp"
#include "spdlog/spdlog.h"

namespace muxserve::server {
namespace {

namespace fs = std::filesystem;

constexpr char kServiceName[] = "muxserve.v1.Muxserve";

// host:port a client on this machine can dial, for the start-up hint.
std::string ClientAddress(const std::string& listen_address, int port) {
  std::string host = listen_address.substr(0, listen_address.rfind(':'));
  if (host.empty() || host == "0.0.0.0" || host == "[::]" || host == "::") host = "127.0.0.1";
  return absl::StrCat(host, ":", port);
}

absl::StatusOr<std::string> ReadPemFile(const fs::path& path, std::string_view what) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  if (!in || text.str().empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("auth.tls.", AsAbsl(what), ": cannot read '", path.string(), "'"));
  }
  return text.str();
}

// Plaintext without auth.tls; TLS with it, requiring and verifying client certificates when it
// names a client CA.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ServerCredentials(
    const config::AuthConfig& auth) {
  if (!auth.tls) return grpc::InsecureServerCredentials();
  grpc::SslServerCredentialsOptions options;
  grpc::SslServerCredentialsOptions::PemKeyCertPair pair;
  ASSIGN_OR_RETURN(pair.cert_chain, ReadPemFile(auth.tls->cert, "cert"));
  ASSIGN_OR_RETURN(pair.private_key, ReadPemFile(auth.tls->key, "key"));
  options.pem_key_cert_pairs.push_back(std::move(pair));
  if (!auth.tls->client_ca.empty()) {
    ASSIGN_OR_RETURN(options.pem_root_certs, ReadPemFile(auth.tls->client_ca, "client_ca"));
    options.client_certificate_request = GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
  }
  return grpc::SslServerCredentials(options);
}

bool IsLoopback(const std::string& address) {
  const std::string host = address.substr(0, address.rfind(':'));
  return host == "localhost" || host == "[::1]" || absl::StartsWith(host, "127.");
}

absl::Status WriteReadyFile(const fs::path& path, int grpc_port, int metrics_port) {
  const fs::path partial = absl::StrCat(path.string(), ".partial-", getpid());
  {
    std::ofstream out(partial, std::ios::binary | std::ios::trunc);
    out << nlohmann::json{{"grpc_port", grpc_port}, {"metrics_port", metrics_port}}.dump() << "\n";
    out.close();
    if (!out) return absl::UnavailableError(absl::StrCat("cannot write '", partial.string(), "'"));
  }
  std::error_code error;
  fs::rename(partial, path, error);
  if (error) {
    fs::remove(partial, error);
    return absl::UnavailableError(
        absl::StrCat("cannot write the ready file '", path.string(), "': ", error.message()));
  }
  return absl::OkStatus();
}


}  // namespace

absl::StatusOr<std::unique_ptr<Daemon>> Daemon::Start(const config::Config& config,
                                                      const DaemonOptions& options) {
  std::unique_ptr<Daemon> daemon(new Daemon());
  daemon->config_ = config;
  ASSIGN_OR_RETURN(daemon->backend_, runtime::ResolveBackend(config.runtime.backend));

  std::vector<std::string> model_names;
  for (const config::ModelConfig& model : config.models) model_names.push_back(model.name);
  daemon->metrics_ = std::make_unique<Metrics>(model_names);

  const std::optional<planner::ConfigPlan> plan = PlanAtStartup(config);
  ServingLayout layout = ResolveServingLayout(config, plan ? &*plan : nullptr);
  for (UnitSetup& unit : layout.units) {
    unit.options.backend = daemon->backend_;
    std::vector<config::ModelConfig> models;
    for (const config::ModelConfig& model : config.models) {
      if (absl::c_linear_search(unit.models, model.name)) models.push_back(model);
    }
    unit.options.rate_ranks = RateRanks(models);
    if (config.scheduler.mode == config::SchedulerMode::kSpatial) {
      ASSIGN_OR_RETURN(unit.options.spatial_sm_shares,
                       SpatialSmShares(models, config.scheduler.spatial_split,
                                       config.kv_cache.memory_bytes));
    }
    ASSIGN_OR_RETURN(std::unique_ptr<engine::UnitEngine> engine,
                     engine::UnitEngine::Create(unit.options, daemon->metrics_.get()));
    for (const std::string& name : unit.models) daemon->engine_of_model_[name] = engine.get();
    daemon->engines_.push_back(std::move(engine));
  }
  daemon->not_served_ = std::move(layout.elsewhere);
  // In the config's order, which ListModels keeps.
  for (const std::string& name : model_names) {
    auto unit = daemon->engine_of_model_.find(name);
    RETURN_IF_ERROR(daemon->router_.AddLoading(
        name, unit != daemon->engine_of_model_.end() ? unit->second->name() : "none"));
  }
  daemon->service_ = std::make_unique<MuxserveService>(
      &daemon->router_, engine::UnitOptions{}.clock,
      std::make_shared<AccessControl>(config.auth, config.limits));
  RETURN_IF_ERROR(daemon->Listen(config, options));

  if (model_names.empty()) {
    absl::MutexLock lock(&daemon->mu_);
    daemon->models_settled_ = true;
  }
  daemon->SetHealth(kServiceName, model_names.empty());
  daemon->loader_ = std::thread([raw = daemon.get()] { raw->LoadModels(); });
  return daemon;
}

absl::Status Daemon::Listen(const config::Config& config, const DaemonOptions& options) {
  const std::string grpc_address = options.grpc_address.value_or(config.server.grpc_address);
  const std::string metrics_address =
      options.metrics_address.value_or(config.server.metrics_address);

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  ASSIGN_OR_RETURN(std::shared_ptr<grpc::ServerCredentials> credentials,
                   ServerCredentials(config.auth));
  grpc::ServerBuilder builder;
  builder.AddListeningPort(grpc_address, credentials, &grpc_port_);
  builder.SetMaxReceiveMessageSize(static_cast<int>(config.limits.max_message_bytes));
  builder.RegisterService(service_.get());
  server_ = builder.BuildAndStart();
  if (server_ == nullptr || (grpc_port_ == 0 && !absl::StartsWith(grpc_address, "unix:"))) {
    return absl::UnavailableError(absl::StrCat(
        "gRPC: cannot listen on '", grpc_address,
        config.auth.tls ? "' (in use, not an address, or auth.tls's certificate and key do not "
                          "match?)"
                        : "' (in use or not an address?)"));
  }
  SetHealth("", true);
  for (const config::ModelConfig& model : config.models) SetHealth(model.name, false);

  if (!metrics_address.empty()) {
    ASSIGN_OR_RETURN(metrics_endpoint_,
                     MetricsEndpoint::Start(metrics_address, metrics_->registry()));
    metrics_port_ = metrics_endpoint_->port();
  }
  if (!options.ready_file.empty()) {
    RETURN_IF_ERROR(WriteReadyFile(options.ready_file, grpc_port_, metrics_port_));
  }

  const std::string client_address = ClientAddress(grpc_address, grpc_port_);
  spdlog::info("muxserved: gRPC on {} (muxserve.v1, grpc.health.v1, reflection; {})",
               client_address,
               !config.auth.tls                     ? "plaintext"
               : config.auth.tls->client_ca.empty() ? "TLS"
                                                    : "mutual TLS");
  if (!config.auth.tokens.empty()) {
    // Names only: secrets never reach the log.
    std::vector<std::string> names;
    for (const config::AuthToken& token : config.auth.tokens) names.push_back(token.name);
    spdlog::info("muxserved: muxserve.v1 needs a bearer token ({} configured: {})", names.size(),
                 absl::StrJoin(names, ", "));
  }
  if (metrics_endpoint_ != nullptr) {
    spdlog::info("muxserved: metrics on http://{}/metrics",
                 ClientAddress(metrics_address, metrics_port_));
    if (!IsLoopback(metrics_address)) {
      spdlog::warn("muxserved: the metrics endpoint has no authentication and listens on {}",
                   metrics_address);
    }
  }
  if (!config.models.empty()) {
    std::vector<std::string> names;
    for (const config::ModelConfig& model : config.models) names.push_back(model.name);
    spdlog::info("muxserved: loading {} model(s) on {} unit(s) ({} backend): {}", names.size(),
                 engines_.size(), config::BackendName(backend_), absl::StrJoin(names, ", "));
    spdlog::info("try: muxserve generate --addr {} --model {} --prompt 'Hello'", client_address,
                 names.front());
  }
  return absl::OkStatus();
}

void Daemon::SetHealth(const std::string& service, bool serving) {
  if (server_ == nullptr) return;
  grpc::HealthCheckServiceInterface* health = server_->GetHealthCheckService();
  if (health != nullptr) health->SetServingStatus(service, serving);
}

void Daemon::LoadModels() {
  for (const config::ModelConfig& model : config_.models) {
    bool stopping;
    {
      absl::MutexLock lock(&mu_);
      stopping = stopping_;
    }
    absl::Status status = stopping ? absl::CancelledError("the daemon shut down before loading it")
                                   : LoadModel(model);
    if (status.ok()) {
      SetHealth(model.name, true);
      continue;
    }
    spdlog::error("model {}: failed to load: {}", model.name, std::string(status.message()));
    absl::Status marked = router_.SetFailed(model.name, status);
    if (!marked.ok()) spdlog::error("model {}: {}", model.name, std::string(marked.message()));
  }
  SetHealth(kServiceName, true);
  absl::MutexLock lock(&mu_);
  models_settled_ = true;
}

absl::Status Daemon::LoadModel(const config::ModelConfig& model_config) {
  const auto started = std::chrono::steady_clock::now();
  auto unit = engine_of_model_.find(model_config.name);
  if (unit == engine_of_model_.end()) {
    auto reason = not_served_.find(model_config.name);
    return absl::FailedPreconditionError(reason != not_served_.end()
                                             ? reason->second
                                             : "the placement plan gives it no unit");
  }
  engine::UnitEngine* engine = unit->second;
  ASSIGN_OR_RETURN(PreparedModel prepared,
                   PrepareModel(model_config, config_.server.synthetic_dir, backend_));
  {
    // Writing a synthetic model takes a while: skip the weights when SIGTERM came meanwhile.
    absl::MutexLock lock(&mu_);
    if (stopping_) return absl::CancelledError("the daemon shut down before loading its weights");
  }
  if (!prepared.chat_template) {
    spdlog::warn("model {}: Chat is disabled ({}); Generate works", model_config.name,
                 prepared.chat_unavailable_reason);
  }
  engine::LlmSetup setup;
  setup.name = model_config.name;
  setup.model_dir = prepared.dir;
  setup.spec = prepared.spec;
  setup.tokenizer = prepared.tokenizer;
  setup.dtype = prepared.dtype;
  setup.max_context = prepared.max_context;
  setup.rate = model_config.rate;
  setup.random_weights_seed = prepared.random_weights_seed;
  RETURN_IF_ERROR(engine->AddLlm(setup));

  ModelEntry entry;
  entry.name = model_config.name;
  entry.unit = engine->name();
  entry.engine = engine;
  entry.tokenizer = std::move(prepared.tokenizer);
  entry.chat_template = prepared.chat_template;
  entry.spec = std::move(prepared.spec);
  entry.dtype = prepared.dtype;
  entry.max_context = prepared.max_context;
  RETURN_IF_ERROR(router_.SetServing(std::move(entry)));
  spdlog::info("model {}: serving on {} from {} ({}, max context {}, loaded in {:.2f} s)",
               model_config.name, engine->name(), prepared.dir.string(), DTypeName(prepared.dtype),
               prepared.max_context,
               std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
  return absl::OkStatus();
}

bool Daemon::WaitForModels(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  return mu_.AwaitWithTimeout(absl::Condition(&models_settled_), timeout);
}

void Daemon::Shutdown() {
  {
    absl::MutexLock lock(&mu_);
    if (shut_down_) return;
    shut_down_ = true;
    stopping_ = true;
  }
  const auto grace = std::chrono::duration_cast<Duration>(
      std::chrono::duration<double>(config_.server.shutdown_grace_seconds));
  if (service_ != nullptr) service_->StopAccepting();
  if (server_ != nullptr && server_->GetHealthCheckService() != nullptr) {
    // Every service reads NOT_SERVING from now on, and stays so.
    server_->GetHealthCheckService()->Shutdown();
  }
  if (!engines_.empty()) {
    spdlog::info("muxserved: draining (up to {:.1f} s)", config_.server.shutdown_grace_seconds);
    // The units drain side by side, so the grace period is not paid once per unit.
    std::vector<std::thread> drains;
    for (const auto& engine : engines_) {
      drains.emplace_back([&engine, grace] { engine->Drain(grace); });
    }
    for (std::thread& drain : drains) drain.join();
  }
  if (server_ != nullptr) {
    // The engine has finished every stream: give slow clients a moment to read their last
    // message, then cancel what is left (health Watch streams, for one).
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  }
  metrics_endpoint_.reset();
  if (loader_.joinable()) loader_.join();
  spdlog::info("muxserved: stopped");
}

Daemon::~Daemon() { Shutdown(); }

}  // namespace muxserve::server
