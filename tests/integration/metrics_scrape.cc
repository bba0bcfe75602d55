#include "metrics_scrape.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <limits>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace muxserve::integration {
namespace {

// Closes the socket on every way out.
class Socket {
 public:
  Socket() : fd_(socket(AF_INET, SOCK_STREAM, 0)) {}
  ~Socket() {
    if (fd_ >= 0) close(fd_);
  }
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;
  int fd() const { return fd_; }

 private:
  int fd_;
};

// Parses `{a="x",b="y"}` starting at `text[pos]` == '{'; leaves `pos` after the '}'.
bool ParseLabels(std::string_view text, size_t& pos, std::map<std::string, std::string>* labels) {
  ++pos;
  while (pos < text.size() && text[pos] != '}') {
    const size_t eq = text.find('=', pos);
    if (eq == std::string_view::npos || eq + 1 >= text.size() || text[eq + 1] != '"') return false;
    std::string key(text.substr(pos, eq - pos));
    std::string value;
    pos = eq + 2;
    while (pos < text.size() && text[pos] != '"') {
      if (text[pos] == '\\' && pos + 1 < text.size()) {
        ++pos;
        value += text[pos] == 'n' ? '\n' : text[pos];
      } else {
        value += text[pos];
      }
      ++pos;
    }
    if (pos >= text.size()) return false;
    ++pos;  // the closing quote
    (*labels)[std::move(key)] = std::move(value);
    if (pos < text.size() && text[pos] == ',') ++pos;
  }
  if (pos >= text.size()) return false;
  ++pos;  // the closing brace
  return true;
}

bool ParseValue(std::string_view text, double* value) {
  if (text == "+Inf") {
    *value = std::numeric_limits<double>::infinity();
    return true;
  }
  if (text == "-Inf") {
    *value = -std::numeric_limits<double>::infinity();
    return true;
  }
  return absl::SimpleAtod(absl::string_view(text.data(), text.size()), value);
}

}  // namespace

absl::StatusOr<std::string> HttpGet(int port, const std::string& path) {
  Socket socket;
  if (socket.fd() < 0) return absl::InternalError(absl::StrCat("socket: ", std::strerror(errno)));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(socket.fd(), reinterpret_cast<const sockaddr*>(&address), sizeof(address)) != 0) {
    return absl::UnavailableError(
        absl::StrCat("connect to 127.0.0.1:", port, ": ", std::strerror(errno)));
  }
  const std::string request =
      absl::StrCat("GET ", path, " HTTP/1.0\r\nHost: 127.0.0.1:", port, "\r\n\r\n");
  size_t sent = 0;
  while (sent < request.size()) {
    const ssize_t n = send(socket.fd(), request.data() + sent, request.size() - sent, 0);
    if (n <= 0) return absl::UnavailableError(absl::StrCat("send: ", std::strerror(errno)));
    sent += static_cast<size_t>(n);
  }
  std::string response;
  char buffer[16384];
  while (true) {
    const ssize_t n = recv(socket.fd(), buffer, sizeof(buffer), 0);
    if (n < 0) return absl::UnavailableError(absl::StrCat("recv: ", std::strerror(errno)));
    if (n == 0) break;
    response.append(buffer, static_cast<size_t>(n));
  }
  const size_t header_end = response.find("\r\n\r\n");
  if (header_end == std::string::npos) {
    return absl::DataLossError(absl::StrCat("no HTTP header in: ", response));
  }
  const std::string status_line = response.substr(0, response.find("\r\n"));
  if (status_line.find(" 200") == std::string::npos) {
    return absl::UnavailableError(absl::StrCat("GET ", path, ": ", status_line));
  }
  return response.substr(header_end + 4);
}

std::optional<double> MetricsPage::Find(const std::string& name,
                                        const std::map<std::string, std::string>& labels) const {
  for (const MetricSample& sample : samples) {
    if (sample.name != name) continue;
    bool matches = true;
    for (const auto& [key, value] : labels) {
      auto it = sample.labels.find(key);
      if (it == sample.labels.end() || it->second != value) {
        matches = false;
        break;
      }
    }
    if (matches) return sample.value;
  }
  return std::nullopt;
}

absl::StatusOr<MetricsPage> ParseMetrics(const std::string& text) {
  MetricsPage page;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_number;
    if (line.empty()) continue;
    if (absl::ConsumePrefix(&line, "# TYPE ")) {
      std::vector<std::string> parts = absl::StrSplit(line, ' ');
      if (parts.size() != 2) {
        return absl::InvalidArgumentError(absl::StrCat("line ", line_number, ": bad TYPE"));
      }
      page.types[parts[0]] = parts[1];
      continue;
    }
    if (line[0] == '#') continue;
    const std::string_view view(line.data(), line.size());
    MetricSample sample;
    size_t pos = view.find_first_of("{ ");
    if (pos == std::string_view::npos) {
      return absl::InvalidArgumentError(absl::StrCat("line ", line_number, ": no value"));
    }
    sample.name = std::string(view.substr(0, pos));
    if (view[pos] == '{' && !ParseLabels(view, pos, &sample.labels)) {
      return absl::InvalidArgumentError(absl::StrCat("line ", line_number, ": bad labels"));
    }
    while (pos < view.size() && view[pos] == ' ') ++pos;
    // A timestamp may follow the value.
    std::string_view value = view.substr(pos);
    value = value.substr(0, value.find(' '));
    if (!ParseValue(value, &sample.value)) {
      return absl::InvalidArgumentError(absl::StrCat("line ", line_number, ": bad value"));
    }
    page.samples.push_back(std::move(sample));
  }
  return page;
}

}  // namespace muxserve::integration
