// The muxserve.v1.Muxserve service on gRPC's callback API: one write reactor per streaming call
// (see ResponseStream), unary calls answered at once. Requests are checked, tokenized (Chat:
// rendered with the model's chat template first) and submitted to the model's unit engine.
#pragma once

#include <functional>

#include <atomic>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "grpcpp/grpcpp.h"
#include "muxserve/common/clock.h"
#include "muxserve/engine/request.h"
#include "muxserve/server/access_control.h"
#include "muxserve/server/response_stream.h"
#include "muxserve/server/router.h"
#include "muxserve/v1/muxserve.grpc.pb.h"

namespace muxserve::server {

// Requests the engine has not finished yet, by id, for Abort and for duplicate ids.
class ActiveRequests {
 public:
  // ALREADY_EXISTS when a request with this id is still running.
  [[nodiscard]] absl::Status Add(const std::string& id, std::shared_ptr<engine::CancelFlag> cancel);
  // Removes the id if it still belongs to `cancel` (the request that added it).
  void Remove(const std::string& id, const engine::CancelFlag* cancel);
  // Marks the request cancelled; NOT_FOUND when no running request has this id.
  [[nodiscard]] absl::Status Cancel(const std::string& id);
  size_t size() const;

 private:
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::shared_ptr<engine::CancelFlag>> requests_
      ABSL_GUARDED_BY(mu_);
};

class MuxserveService final : public v1::Muxserve::CallbackService {
 public:
  // `clock` must be the engines' clock: client deadlines are converted to it. Without `access`,
  // no token is needed and the default limits apply.
  explicit MuxserveService(const Router* router, Clock* clock = Clock::Real(),
                           std::shared_ptr<AccessControl> access = nullptr);

  // From now on Generate and Chat fail with UNAVAILABLE (the daemon is draining).
  void StopAccepting() { accepting_.store(false); }

  grpc::ServerWriteReactor<v1::GenerateResponse>* Generate(
      grpc::CallbackServerContext* context, const v1::GenerateRequest* request) override;
  grpc::ServerWriteReactor<v1::GenerateResponse>* Chat(grpc::CallbackServerContext* context,
                                                       const v1::ChatRequest* request) override;
  grpc::ServerUnaryReactor* Abort(grpc::CallbackServerContext* context,
                                  const v1::AbortRequest* request,
                                  v1::AbortResponse* response) override;
  grpc::ServerUnaryReactor* ListModels(grpc::CallbackServerContext* context,
                                       const v1::ListModelsRequest* request,
                                       v1::ListModelsResponse* response) override;
  grpc::ServerUnaryReactor* GetStats(grpc::CallbackServerContext* context,
                                     const v1::GetStatsRequest* request,
                                     v1::GetStatsResponse* response) override;

 private:
  // The call's caller: UNAUTHENTICATED without a valid token when tokens are configured.
  absl::StatusOr<Caller> Authenticate(grpc::CallbackServerContext* context) const;
  // Authenticates a unary call, runs `answer` for the caller and finishes the call with its
  // status (or the authentication error).
  grpc::ServerUnaryReactor* AnswerUnary(
      grpc::CallbackServerContext* context,
      const std::function<absl::Status(const Caller&)>& answer) const;
  absl::Status StartGenerate(grpc::CallbackServerContext* context,
                             const v1::GenerateRequest& request,
                             const std::shared_ptr<ResponseStream>& stream);
  absl::Status StartChat(grpc::CallbackServerContext* context, const v1::ChatRequest& request,
                         const std::shared_ptr<ResponseStream>& stream);
  // The checks and submission shared by Generate and Chat, once the prompt is tokenized.
  absl::Status Submit(grpc::CallbackServerContext* context, const Caller& caller,
                      const ModelEntry& model, const std::string& request_id,
                      std::vector<int32_t> prompt_tokens, const v1::SamplingParams& sampling,
                      const std::shared_ptr<ResponseStream>& stream);
  absl::Status CheckAccepting() const;
  std::string NewRequestId();

  const Router* router_;
  Clock* clock_;
  std::shared_ptr<AccessControl> access_;
  std::atomic<bool> accepting_{true};
  std::atomic<uint64_t> next_request_number_{1};
  // Shared with each request's finish callback, which may run after the service is gone.
  std::shared_ptr<ActiveRequests> active_ = std::make_shared<ActiveRequests>();
};

}  // namespace muxserve::server
