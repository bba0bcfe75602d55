// The daemon: gRPC (muxserve.v1, grpc.health.v1, reflection) and Prometheus endpoints in front of
// the unit engines of the placement plan (server/startup_plan.h). Start returns once it listens; the models load in
// the background (LOADING until then) and each one that fails is marked FAILED while the others
// serve. Health: service "" is SERVING while the process serves; "muxserve.v1.Muxserve" once
// every model is loaded or failed; each model's name while that model serves.
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "muxserve/config/config.h"
#include "muxserve/engine/unit_engine.h"
#include "muxserve/server/metrics.h"
#include "muxserve/server/metrics_endpoint.h"
#include "muxserve/server/router.h"
#include "muxserve/server/service.h"

namespace muxserve::server {

struct DaemonOptions {
  std::optional<std::string> grpc_address;     // unset: config.server.grpc_address
  std::optional<std::string> metrics_address;  // unset: config.server.metrics_address; "": off
  // When set, {"grpc_port": N, "metrics_port": M} is written here (atomically) once both
  // endpoints listen; metrics_port is 0 when metrics are off.
  std::filesystem::path ready_file;
};

class Daemon {
 public:
  // Listens (port 0 picks a free one), then starts loading the models.
  static absl::StatusOr<std::unique_ptr<Daemon>> Start(const config::Config& config,
                                                       const DaemonOptions& options);
  ~Daemon();  // Shutdown()
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  int grpc_port() const { return grpc_port_; }
  int metrics_port() const { return metrics_port_; }  // 0 when metrics are off
  const Router& router() const { return router_; }

  // Waits until no model is loading any more; false when `timeout` passed first.
  bool WaitForModels(absl::Duration timeout);

  // Stops accepting requests (UNAVAILABLE, health NOT_SERVING), lets running requests finish
  // for up to config.server.shutdown_grace_seconds, aborts the rest and stops the servers.
  // Idempotent.
  void Shutdown();

 private:
  Daemon() = default;
  absl::Status Listen(const config::Config& config, const DaemonOptions& options);
  void LoadModels();
  absl::Status LoadModel(const config::ModelConfig& model_config);
  void SetHealth(const std::string& service, bool serving);

  config::Config config_;
  config::Backend backend_ = config::Backend::kCpu;
  // Declared in dependency order: destroyed servers first, the metrics the engine reports to last.
  std::unique_ptr<Metrics> metrics_;
  Router router_;
  std::vector<std::unique_ptr<engine::UnitEngine>> engines_;  // the units this daemon serves
  std::map<std::string, engine::UnitEngine*> engine_of_model_;
  std::map<std::string, std::string> not_served_;  // model -> why (placed on another node)
  std::unique_ptr<MuxserveService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<MetricsEndpoint> metrics_endpoint_;
  int grpc_port_ = 0;
  int metrics_port_ = 0;

  absl::Mutex mu_;
  bool models_settled_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
  std::thread loader_;
};

}  // namespace muxserve::server
