#include "muxserve/server/metrics_endpoint.h"

#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string_view>
#include <utility>

#include "absl/strings/str_cat.h"
#include "prometheus/text_serializer.h"
#include "spdlog/spdlog.h"

namespace muxserve::server {
namespace {

constexpr size_t kMaxRequestBytes = 8192;
constexpr int kSocketTimeoutSeconds = 2;  // a stalled scraper cannot hold the endpoint longer

absl::Status AddressError(const std::string& address, std::string_view reason) {
  return absl::UnavailableError(
      absl::StrCat("metrics endpoint: cannot listen on '", address, "': ", std::string(reason)));
}

// "host:port", "[v6]:port" or ":port" (all interfaces).
absl::StatusOr<std::pair<std::string, std::string>> SplitAddress(const std::string& address) {
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos || colon + 1 == address.size()) {
    return AddressError(address, "expected host:port");
  }
  std::string host = address.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  return std::make_pair(host, address.substr(colon + 1));
}

absl::StatusOr<int> Listen(const std::string& address) {
  auto host_port = SplitAddress(address);
  if (!host_port.ok()) return host_port.status();
  const auto& [host, port] = *host_port;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* candidates = nullptr;
  if (int error =
          getaddrinfo(host.empty() ? nullptr : host.c_str(), port.c_str(), &hints, &candidates);
      error != 0) {
    return AddressError(address, gai_strerror(error));
  }
  std::string last_error = "no usable address";
  int fd = -1;
  for (addrinfo* candidate = candidates; candidate != nullptr; candidate = candidate->ai_next) {
    fd =
        socket(candidate->ai_family, candidate->ai_socktype | SOCK_CLOEXEC, candidate->ai_protocol);
    if (fd < 0) {
      last_error = std::strerror(errno);
      continue;
    }
    const int reuse = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &reuse, sizeof(reuse));
    if (bind(fd, candidate->ai_addr, candidate->ai_addrlen) == 0 && listen(fd, 16) == 0) break;
    last_error = std::strerror(errno);
    close(fd);
    fd = -1;
  }
  freeaddrinfo(candidates);
  if (fd < 0) return AddressError(address, last_error);
  return fd;
}

int BoundPort(int fd) {
  sockaddr_storage bound{};
  socklen_t length = sizeof(bound);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &length) != 0) return 0;
  if (bound.ss_family == AF_INET) {
    return ntohs(reinterpret_cast<const sockaddr_in*>(&bound)->sin_port);
  }
  return ntohs(reinterpret_cast<const sockaddr_in6*>(&bound)->sin6_port);
}

bool SendAll(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t sent = send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (sent < 0 && errno == EINTR) continue;
    if (sent <= 0) return false;
    data.remove_prefix(static_cast<size_t>(sent));
  }
  return true;
}

std::string Response(std::string_view status, std::string_view content_type, std::string_view body,
                     bool include_body) {
  return absl::StrCat("HTTP/1.1 ", std::string(status),
                      "\r\nContent-Type: ", std::string(content_type),
                      "\r\nContent-Length: ", body.size(), "\r\nConnection: close\r\n\r\n",
                      include_body ? std::string(body) : "");
}

}  // namespace

absl::StatusOr<std::unique_ptr<MetricsEndpoint>> MetricsEndpoint::Start(
    const std::string& address, std::shared_ptr<prometheus::Registry> registry) {
  absl::StatusOr<int> listen_fd = Listen(address);
  if (!listen_fd.ok()) return listen_fd.status();
  const int wake_fd = eventfd(0, EFD_CLOEXEC);
  if (wake_fd < 0) {
    close(*listen_fd);
    return AddressError(address, std::strerror(errno));
  }
  std::unique_ptr<MetricsEndpoint> endpoint(
      new MetricsEndpoint(*listen_fd, wake_fd, BoundPort(*listen_fd), std::move(registry)));
  endpoint->thread_ = std::thread([raw = endpoint.get()] { raw->Serve(); });
  return endpoint;
}

MetricsEndpoint::MetricsEndpoint(int listen_fd, int wake_fd, int port,
                                 std::shared_ptr<prometheus::Registry> registry)
    : listen_fd_(listen_fd), wake_fd_(wake_fd), port_(port), registry_(std::move(registry)) {}

MetricsEndpoint::~MetricsEndpoint() {
  const uint64_t one = 1;
  if (write(wake_fd_, &one, sizeof(one)) != sizeof(one)) {
    spdlog::error("metrics endpoint: cannot wake the serving thread: {}", std::strerror(errno));
  }
  if (thread_.joinable()) thread_.join();
  close(listen_fd_);
  close(wake_fd_);
}

void MetricsEndpoint::Serve() {
  pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {wake_fd_, POLLIN, 0}};
  while (true) {
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      spdlog::error("metrics endpoint: poll failed: {}", std::strerror(errno));
      return;
    }
    if (fds[1].revents != 0) return;
    if ((fds[0].revents & POLLIN) == 0) continue;
    const int connection = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (connection < 0) continue;  // the client left before we accepted, or out of descriptors
    Answer(connection);
    close(connection);
  }
}

void MetricsEndpoint::Answer(int connection_fd) const {
  const timeval timeout{kSocketTimeoutSeconds, 0};
  setsockopt(connection_fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  setsockopt(connection_fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
  std::string request;
  char buffer[1024];
  while (request.find("\r\n\r\n") == std::string::npos && request.size() < kMaxRequestBytes) {
    const ssize_t received = recv(connection_fd, buffer, sizeof(buffer), 0);
    if (received < 0 && errno == EINTR) continue;
    if (received <= 0) break;
    request.append(buffer, static_cast<size_t>(received));
  }
  // Request line: METHOD SP TARGET SP VERSION.
  const std::string_view line = std::string_view(request).substr(0, request.find("\r\n"));
  const size_t method_end = line.find(' ');
  const size_t target_end =
      line.find(' ', method_end == std::string_view::npos ? 0 : method_end + 1);
  if (method_end == std::string_view::npos || target_end == std::string_view::npos) {
    SendAll(connection_fd, Response("400 Bad Request", "text/plain", "bad request\n", true));
    return;
  }
  const std::string_view method = line.substr(0, method_end);
  std::string_view target = line.substr(method_end + 1, target_end - method_end - 1);
  target = target.substr(0, target.find('?'));
  if (method != "GET" && method != "HEAD") {
    SendAll(connection_fd, Response("405 Method Not Allowed", "text/plain", "use GET\n", true));
    return;
  }
  if (target != "/metrics") {
    SendAll(connection_fd,
            Response("404 Not Found", "text/plain", "metrics are at /metrics\n", method == "GET"));
    return;
  }
  const std::string body = prometheus::TextSerializer().Serialize(registry_->Collect());
  SendAll(connection_fd,
          Response("200 OK", "text/plain; version=0.0.4; charset=utf-8", body, method == "GET"));
}

}  // namespace muxserve::server
