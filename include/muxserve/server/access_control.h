// Who may call the API and how much one caller may ask for: bearer tokens (each perhaps limited
// to some models) and the per-client limits of the config's `limits:` section. Secrets stay in
// here: statuses and log lines name a token by its configured name only.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "muxserve/config/config.h"

namespace muxserve::server {

// The caller of one RPC, once its token (if any) was checked.
struct Caller {
  // The token's name; without tokens configured, the peer's address without its port.
  std::string name;
  // The models the token may use; empty: every model.
  std::vector<std::string> models;

  bool MayUse(std::string_view model) const;
};

// Bytes equal, in a time that depends on the lengths only, never on where they differ.
bool ConstantTimeEquals(std::string_view a, std::string_view b);

// The address part of a gRPC peer ("ipv4:127.0.0.1:5000" -> "ipv4:127.0.0.1").
std::string PeerHost(std::string_view peer);

class AccessControl {
 public:
  // One of the caller's open streams; gives its slot back when released or destroyed.
  class StreamSlot {
   public:
    ~StreamSlot() { Release(); }
    StreamSlot(const StreamSlot&) = delete;
    StreamSlot& operator=(const StreamSlot&) = delete;
    void Release();

   private:
    friend class AccessControl;
    struct Counts;
    StreamSlot(std::shared_ptr<Counts> counts, std::string caller)
        : counts_(std::move(counts)), caller_(std::move(caller)) {}
    std::shared_ptr<Counts> counts_;  // null once released
    std::string caller_;
  };

  AccessControl(config::AuthConfig auth, config::LimitsConfig limits);

  bool requires_token() const { return !auth_.tokens.empty(); }
  const config::LimitsConfig& limits() const { return limits_; }

  // `authorization` is the call's "authorization" metadata (empty when absent), `peer` gRPC's
  // peer string. UNAUTHENTICATED when tokens are configured and the call has none of them.
  absl::StatusOr<Caller> Authenticate(std::string_view authorization, std::string_view peer) const;
  // PERMISSION_DENIED when the caller's token does not cover `model`.
  absl::Status CheckModel(const Caller& caller, std::string_view model) const;
  // A stream slot of the caller: RESOURCE_EXHAUSTED when max_streams_per_client are open.
  absl::StatusOr<std::shared_ptr<StreamSlot>> AcquireStream(const Caller& caller);
  // Checks of a request against the limits, before and after tokenization (INVALID_ARGUMENT).
  absl::Status CheckStopStrings(int count) const;
  absl::Status CheckPromptTokens(size_t count) const;

 private:
  config::AuthConfig auth_;
  config::LimitsConfig limits_;
  std::shared_ptr<StreamSlot::Counts> counts_;
};

}  // namespace muxserve::server
