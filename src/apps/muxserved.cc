// muxserved: serves the LLMs of a YAML config over gRPC until SIGTERM or SIGINT, then drains.
#include <pthread.h>
#include <signal.h>

#include <cstdio>
#include <memory>
#include <optional>
#include <string>

#include "CLI/CLI.hpp"
#include "muxserve/common/logging.h"
#include "muxserve/config/config.h"
#include "muxserve/server/daemon.h"
#include "spdlog/spdlog.h"

namespace {

constexpr int kExitConfigError = 2;

int Run(int argc, char** argv) {
  CLI::App app{"muxserved: serves many LLMs on shared devices over gRPC (muxserve.v1)"};
  std::string config_path;
  std::string grpc_address;
  std::string metrics_address;
  std::string ready_file;
  std::string log_level = "info";
  app.add_option("--config", config_path, "YAML file listing the models and daemon settings")
      ->required();
  CLI::Option* grpc_option = app.add_option(
      "--grpc-address", grpc_address,
      "host:port of the gRPC endpoint, overriding the config (port 0: any free one)");
  CLI::Option* metrics_option = app.add_option(
      "--metrics-address", metrics_address,
      "host:port of the Prometheus endpoint, overriding the config (empty: no metrics)");
  app.add_option("--ready-file", ready_file,
                 "Write {\"grpc_port\": N, \"metrics_port\": M} here once listening");
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error or off");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    const int code = app.exit(error);
    return code == 0 ? 0 : kExitConfigError;
  }

  if (absl::Status status = muxserve::SetLogLevel(log_level); !status.ok()) {
    std::fprintf(stderr, "muxserved: --log-level: %s\n", std::string(status.message()).c_str());
    return kExitConfigError;
  }
  absl::StatusOr<muxserve::config::Config> config = muxserve::config::LoadConfig(config_path);
  if (!config.ok()) {
    std::fprintf(stderr, "muxserved: %s\n", std::string(config.status().message()).c_str());
    return kExitConfigError;
  }

  // Block the stop signals before any thread starts, so every thread inherits the mask and the
  // main thread alone receives them, through sigwait: the work of stopping then runs in ordinary
  // code rather than in a signal handler. A shell starts background jobs with SIGINT ignored, and
  // an ignored signal is discarded before sigwait could see it: restore the default first.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  signal(SIGTERM, SIG_DFL);
  signal(SIGINT, SIG_DFL);

  muxserve::server::DaemonOptions options;
  if (grpc_option->count() > 0) options.grpc_address = grpc_address;
  if (metrics_option->count() > 0) options.metrics_address = metrics_address;
  options.ready_file = ready_file;
  absl::StatusOr<std::unique_ptr<muxserve::server::Daemon>> daemon =
      muxserve::server::Daemon::Start(*config, options);
  if (!daemon.ok()) {
    std::fprintf(stderr, "muxserved: %s\n", daemon.status().ToString().c_str());
    return 1;
  }

  int signal_number = 0;
  sigwait(&stop_signals, &signal_number);
  spdlog::info("muxserved: {} received, shutting down",
               signal_number == SIGINT ? "SIGINT" : "SIGTERM");
  (*daemon)->Shutdown();
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return Run(argc, argv); }
