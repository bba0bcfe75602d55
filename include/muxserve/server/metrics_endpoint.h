// Serves a Prometheus registry over HTTP: GET /metrics in the text exposition format.
//
// prometheus-cpp's pull Exposer is not used: its civetweb workers run on 100 KiB stacks that
// also hold every library's static TLS (OpenBLAS alone takes 60 KiB), and once libquadmath
// (pulled in by OpenBLAS through libgfortran) registers its printf hooks, glibc formats every
// printf through a path that needs more stack than is left: the first scrape crashed the
// process. Scrapes are rare and small, so one thread answering one connection at a time is enough.
#pragma once

#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "prometheus/registry.h"

namespace muxserve::server {

class MetricsEndpoint {
 public:
  // Listens on `address` ("host:port"; port 0 picks a free one). UNAVAILABLE when it cannot.
  static absl::StatusOr<std::unique_ptr<MetricsEndpoint>> Start(
      const std::string& address, std::shared_ptr<prometheus::Registry> registry);
  ~MetricsEndpoint();  // stops serving and closes the socket
  MetricsEndpoint(const MetricsEndpoint&) = delete;
  MetricsEndpoint& operator=(const MetricsEndpoint&) = delete;

  int port() const { return port_; }

 private:
  MetricsEndpoint(int listen_fd, int wake_fd, int port,
                  std::shared_ptr<prometheus::Registry> registry);
  void Serve();
  void Answer(int connection_fd) const;

  const int listen_fd_;
  const int wake_fd_;  // an eventfd: written once to stop Serve
  const int port_;
  const std::shared_ptr<prometheus::Registry> registry_;
  std::thread thread_;
};

}  // namespace muxserve::server
