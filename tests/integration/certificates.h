// Test certificates for the TLS integration tests, made with the openssl CLI.
#pragma once

#include <filesystem>
#include <string>

#include "absl/status/statusor.h"

namespace muxserve::integration {

// A CA, a server certificate and a client certificate (EC keys, valid two days), written into
// `dir` as ca.crt, server.crt/.key and client.crt/.key; contents kept for convenience.
struct Certificates {
  std::string ca;
  std::string server_cert;
  std::string client_cert;
  std::string client_key;
  std::filesystem::path dir;
};

// `server_names` is the server certificate's subjectAltName list, e.g.
// "IP:127.0.0.1,DNS:localhost". NOT_FOUND when there is no openssl binary.
absl::StatusOr<Certificates> MakeCertificates(const std::filesystem::path& dir,
                                              const std::string& server_names);

}  // namespace muxserve::integration
