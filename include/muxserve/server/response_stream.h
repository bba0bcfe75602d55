// The bridge between one request in the engine and its gRPC stream. The engine calls the sink
// side from its own thread and must never wait: messages queue under a mutex and at most one
// write is in flight; deltas that pile up behind a slow client are merged into one message.
// The stream is shared by the engine and the call, and may outlive the call: once the call is
// done, whatever the engine still sends is dropped.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "grpcpp/support/status.h"
#include "muxserve/engine/request.h"
#include "muxserve/v1/muxserve.pb.h"

namespace muxserve::server {

// How a ResponseStream reaches its call (the gRPC reactor; a recorder in tests). Calls are never
// made concurrently and never under the stream's lock. After Send, the call's owner reports
// ResponseStream::OnWriteDone; the message stays untouched until then.
class ResponseWriter {
 public:
  virtual ~ResponseWriter() = default;
  virtual void Send(const v1::GenerateResponse* response) = 0;
  // Sends the last message and finishes the call (no OnWriteDone follows).
  virtual void SendLastAndFinish(const v1::GenerateResponse* response, grpc::Status status) = 0;
  virtual void FinishCall(grpc::Status status) = 0;
};

class ResponseStream final : public engine::RequestSink {
 public:
  explicit ResponseStream(ResponseWriter* writer) : writer_(writer) {}

  // Before the request goes to the engine: its id (put on every message), its cancel flag (set
  // when the client goes away) and what to run once the engine has finished it.
  void Bind(std::string request_id, std::shared_ptr<engine::CancelFlag> cancel,
            std::function<void()> on_engine_finished);

  // The engine's side.
  void OnDelta(engine::StreamDelta delta) override;
  void OnFinish(const engine::FinishInfo& info) override;

  // The call's side.
  // Ends the call with an error before (or instead of) any engine output.
  void Fail(grpc::Status status);
  void OnWriteDone(bool ok);
  void OnCancel();
  // The call is gone: nothing may touch the writer any more.
  void OnDone();

 private:
  enum class Action { kNone, kWrite, kWriteAndFinish, kFinish };
  // Decides the next call on the writer (at most one), updating the state to match.
  Action NextActionLocked(grpc::Status* status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Pump() ABSL_LOCKS_EXCLUDED(mu_);
  void TakePendingLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  absl::Mutex mu_;
  ResponseWriter* writer_ ABSL_GUARDED_BY(mu_);
  std::string request_id_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<engine::CancelFlag> cancel_ ABSL_GUARDED_BY(mu_);
  std::function<void()> on_engine_finished_ ABSL_GUARDED_BY(mu_);
  // Output of the engine not yet handed to the writer.
  std::string pending_text_ ABSL_GUARDED_BY(mu_);
  std::vector<int32_t> pending_token_ids_ ABSL_GUARDED_BY(mu_);
  std::optional<engine::FinishInfo> finish_ ABSL_GUARDED_BY(mu_);
  std::optional<grpc::Status> failure_ ABSL_GUARDED_BY(mu_);
  bool write_in_flight_ ABSL_GUARDED_BY(mu_) = false;
  bool call_finished_ ABSL_GUARDED_BY(mu_) = false;  // Finish or WriteAndFinish was issued
  bool client_gone_ ABSL_GUARDED_BY(mu_) = false;
  // The message being written: owned here so it outlives the write. Only the thread that issued
  // the write touches it, and only while write_in_flight_ (or after the final write) is set.
  v1::GenerateResponse outgoing_;
};

}  // namespace muxserve::server
