#include "muxserve/server/response_stream.h"

#include <utility>

#include "muxserve/server/convert.h"

namespace muxserve::server {

void ResponseStream::Bind(std::string request_id, std::shared_ptr<engine::CancelFlag> cancel,
                          std::function<void()> on_engine_finished) {
  absl::MutexLock lock(&mu_);
  request_id_ = std::move(request_id);
  cancel_ = std::move(cancel);
  on_engine_finished_ = std::move(on_engine_finished);
}

void ResponseStream::OnDelta(engine::StreamDelta delta) {
  {
    absl::MutexLock lock(&mu_);
    if (writer_ == nullptr || call_finished_ || client_gone_) return;
    pending_text_ += delta.text;
    pending_token_ids_.insert(pending_token_ids_.end(), delta.token_ids.begin(),
                              delta.token_ids.end());
  }
  Pump();
}

void ResponseStream::OnFinish(const engine::FinishInfo& info) {
  std::function<void()> on_engine_finished;
  {
    absl::MutexLock lock(&mu_);
    finish_ = info;
    on_engine_finished = std::move(on_engine_finished_);
  }
  Pump();
  if (on_engine_finished) on_engine_finished();
}

void ResponseStream::Fail(grpc::Status status) {
  {
    absl::MutexLock lock(&mu_);
    failure_ = std::move(status);
  }
  Pump();
}

void ResponseStream::OnWriteDone(bool ok) {
  {
    absl::MutexLock lock(&mu_);
    write_in_flight_ = false;
    if (!ok) {
      // The stream broke: the client is gone, so the engine can stop working for it.
      client_gone_ = true;
      if (cancel_) cancel_->Cancel();
    }
  }
  Pump();
}

void ResponseStream::OnCancel() {
  {
    absl::MutexLock lock(&mu_);
    client_gone_ = true;
    if (cancel_) cancel_->Cancel();
  }
  Pump();
}

void ResponseStream::OnDone() {
  absl::MutexLock lock(&mu_);
  writer_ = nullptr;
  // A call can end while the engine still runs the request (server shutdown): stop it.
  if (cancel_ && !finish_) cancel_->Cancel();
}

void ResponseStream::TakePendingLocked() {
  outgoing_.Clear();
  outgoing_.set_request_id(request_id_);
  outgoing_.set_text(std::move(pending_text_));
  pending_text_.clear();
  outgoing_.mutable_token_ids()->Add(pending_token_ids_.begin(), pending_token_ids_.end());
  pending_token_ids_.clear();
}

ResponseStream::Action ResponseStream::NextActionLocked(grpc::Status* status) {
  if (writer_ == nullptr || call_finished_ || write_in_flight_) return Action::kNone;
  if (failure_) {
    call_finished_ = true;
    *status = *failure_;
    return Action::kFinish;
  }
  if (client_gone_) {
    call_finished_ = true;
    *status = grpc::Status(grpc::StatusCode::CANCELLED, "the client cancelled the call");
    return Action::kFinish;
  }
  if (finish_) {
    call_finished_ = true;
    if (finish_->reason == engine::FinishReason::kError &&
        finish_->error.code() == absl::StatusCode::kDeadlineExceeded) {
      *status = ToGrpcStatus(finish_->error);
      return Action::kFinish;
    }
    TakePendingLocked();
    v1::Finished* finished = outgoing_.mutable_finished();
    finished->set_reason(ToApiFinishReason(finish_->reason));
    finished->mutable_usage()->set_prompt_tokens(finish_->prompt_tokens);
    finished->mutable_usage()->set_completion_tokens(finish_->completion_tokens);
    if (finish_->reason == engine::FinishReason::kError) {
      finished->set_error_message(std::string(finish_->error.message()));
    }
    *status = grpc::Status::OK;
    return Action::kWriteAndFinish;
  }
  if (!pending_text_.empty() || !pending_token_ids_.empty()) {
    TakePendingLocked();
    write_in_flight_ = true;
    return Action::kWrite;
  }
  return Action::kNone;
}

void ResponseStream::Pump() {
  grpc::Status status;
  ResponseWriter* writer = nullptr;
  Action action;
  {
    absl::MutexLock lock(&mu_);
    action = NextActionLocked(&status);
    writer = writer_;
  }
  // The state now forbids any other call on the writer until this one completes, and the call
  // cannot end (so the writer stays alive) before the call issued here.
  switch (action) {
    case Action::kNone:
      break;
    case Action::kWrite:
      writer->Send(&outgoing_);
      break;
    case Action::kWriteAndFinish:
      writer->SendLastAndFinish(&outgoing_, std::move(status));
      break;
    case Action::kFinish:
      writer->FinishCall(std::move(status));
      break;
  }
}

}  // namespace muxserve::server
