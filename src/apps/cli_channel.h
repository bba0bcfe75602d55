// How the client commands reach muxserved: its address, a bearer token and TLS. One channel
// built here serves every command (generate, chat, models, stats, abort, bench), so they all
// take the same flags and send the token on every call.
#pragma once

#include <memory>
#include <string>

#include "CLI/CLI.hpp"
#include "absl/status/statusor.h"
#include "grpcpp/channel.h"

namespace muxserve::cli {

struct ChannelFlags {
  std::string address = "127.0.0.1:50051";
  std::string token;       // the secret itself; never printed
  std::string token_file;  // a file holding it; wins over `token`
  bool tls = false;
  std::string tls_ca;    // PEM of the CA that signed the server's certificate
  std::string tls_cert;  // client certificate and key, for mutual TLS
  std::string tls_key;
  std::string tls_server_name;  // the name to verify instead of the address's host
};

// --addr, --token, --token-file, --tls, --tls-ca, --tls-cert, --tls-key, --tls-server-name.
void AddChannelFlags(CLI::App* command, ChannelFlags* flags);

// A channel to flags.address with TLS when any --tls* flag is given, and an
// "authorization: Bearer <token>" header on each call when a token is. Errors (unreadable files,
// an empty token) name the file, never the secret.
absl::StatusOr<std::shared_ptr<grpc::Channel>> OpenChannel(const ChannelFlags& flags);

}  // namespace muxserve::cli
