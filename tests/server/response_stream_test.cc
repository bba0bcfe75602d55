#include "muxserve/server/response_stream.h"

#include <deque>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace muxserve::server {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

// Records what the stream asks of its call, like a reactor that never completes a write by
// itself: the test reports OnWriteDone.
class RecordingWriter final : public ResponseWriter {
 public:
  void Send(const v1::GenerateResponse* response) override {
    EXPECT_FALSE(finished.has_value()) << "write after finish";
    EXPECT_FALSE(write_in_flight) << "two writes in flight";
    write_in_flight = true;
    sent.push_back(*response);
  }
  void SendLastAndFinish(const v1::GenerateResponse* response, grpc::Status status) override {
    EXPECT_FALSE(finished.has_value()) << "finished twice";
    EXPECT_FALSE(write_in_flight) << "last write while another is in flight";
    sent.push_back(*response);
    finished = status;
  }
  void FinishCall(grpc::Status status) override {
    EXPECT_FALSE(finished.has_value()) << "finished twice";
    finished = status;
  }

  std::vector<v1::GenerateResponse> sent;
  std::optional<grpc::Status> finished;
  bool write_in_flight = false;
};

engine::StreamDelta Delta(std::string text, std::vector<int32_t> ids) {
  return engine::StreamDelta{std::move(text), std::move(ids)};
}

engine::FinishInfo Finish(engine::FinishReason reason, int32_t prompt, int32_t completion,
                          absl::Status error = absl::OkStatus()) {
  engine::FinishInfo info;
  info.reason = reason;
  info.error = std::move(error);
  info.prompt_tokens = prompt;
  info.completion_tokens = completion;
  return info;
}

struct Fixture {
  Fixture() : stream(std::make_shared<ResponseStream>(&writer)) {
    stream->Bind("req-1", cancel, [this] { ++engine_finished; });
  }
  void CompleteWrite(bool ok) {
    ASSERT_TRUE(writer.write_in_flight);
    writer.write_in_flight = false;
    stream->OnWriteDone(ok);
  }

  RecordingWriter writer;
  std::shared_ptr<engine::CancelFlag> cancel = std::make_shared<engine::CancelFlag>();
  std::shared_ptr<ResponseStream> stream;
  int engine_finished = 0;
};

TEST(ResponseStream, WritesAtOnceAndMergesWhatQueuesBehindAWrite) {
  Fixture f;
  f.stream->OnDelta(Delta("He", {10}));
  ASSERT_EQ(f.writer.sent.size(), 1u);
  EXPECT_EQ(f.writer.sent[0].request_id(), "req-1");
  EXPECT_EQ(f.writer.sent[0].text(), "He");
  EXPECT_THAT(f.writer.sent[0].token_ids(), ElementsAre(10));
  EXPECT_FALSE(f.writer.sent[0].has_finished());

  // The client is slow: these wait for the write in flight, then leave as one message.
  f.stream->OnDelta(Delta("l", {11}));
  f.stream->OnDelta(Delta("", {12}));
  f.stream->OnDelta(Delta("lo", {13}));
  EXPECT_EQ(f.writer.sent.size(), 1u);
  f.CompleteWrite(true);
  ASSERT_EQ(f.writer.sent.size(), 2u);
  EXPECT_EQ(f.writer.sent[1].text(), "llo");
  EXPECT_THAT(f.writer.sent[1].token_ids(), ElementsAre(11, 12, 13));

  f.stream->OnFinish(Finish(engine::FinishReason::kLength, 5, 4));
  EXPECT_EQ(f.engine_finished, 1);
  EXPECT_FALSE(f.writer.finished.has_value());  // waits for the write in flight
  f.CompleteWrite(true);
  ASSERT_EQ(f.writer.sent.size(), 3u);
  const v1::GenerateResponse& last = f.writer.sent[2];
  EXPECT_TRUE(last.text().empty());
  EXPECT_THAT(last.token_ids(), IsEmpty());
  ASSERT_TRUE(last.has_finished());
  EXPECT_EQ(last.finished().reason(), v1::LENGTH);
  EXPECT_EQ(last.finished().usage().prompt_tokens(), 5);
  EXPECT_EQ(last.finished().usage().completion_tokens(), 4);
  ASSERT_TRUE(f.writer.finished.has_value());
  EXPECT_TRUE(f.writer.finished->ok());
  f.stream->OnDone();
}

TEST(ResponseStream, PendingOutputRidesOnTheLastMessage) {
  Fixture f;
  f.stream->OnDelta(Delta("a", {1}));
  f.stream->OnDelta(Delta("b", {2}));
  f.stream->OnFinish(Finish(engine::FinishReason::kStop, 3, 2));
  f.CompleteWrite(true);
  ASSERT_EQ(f.writer.sent.size(), 2u);
  EXPECT_EQ(f.writer.sent[1].text(), "b");
  EXPECT_THAT(f.writer.sent[1].token_ids(), ElementsAre(2));
  EXPECT_EQ(f.writer.sent[1].finished().reason(), v1::STOP);
  EXPECT_TRUE(f.writer.finished->ok());
}

TEST(ResponseStream, EngineErrorIsAFinalMessage) {
  Fixture f;
  f.stream->OnFinish(
      Finish(engine::FinishReason::kError, 3, 0, absl::InternalError("the step failed")));
  ASSERT_EQ(f.writer.sent.size(), 1u);
  EXPECT_EQ(f.writer.sent[0].finished().reason(), v1::ERROR);
  EXPECT_EQ(f.writer.sent[0].finished().error_message(), "the step failed");
  EXPECT_TRUE(f.writer.finished->ok());
}

TEST(ResponseStream, PassedDeadlineEndsTheCallWithDeadlineExceeded) {
  Fixture f;
  f.stream->OnDelta(Delta("a", {1}));
  f.stream->OnFinish(Finish(engine::FinishReason::kError, 3, 1,
                            absl::DeadlineExceededError("the deadline passed")));
  f.CompleteWrite(true);
  ASSERT_TRUE(f.writer.finished.has_value());
  EXPECT_EQ(f.writer.finished->error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_EQ(f.writer.sent.size(), 1u);
}

TEST(ResponseStream, AbortedRequestEndsWithAbort) {
  Fixture f;
  f.stream->OnFinish(Finish(engine::FinishReason::kAbort, 3, 0));
  ASSERT_EQ(f.writer.sent.size(), 1u);
  EXPECT_EQ(f.writer.sent[0].finished().reason(), v1::ABORT);
}

TEST(ResponseStream, ClientCancelMarksTheRequestAndFinishesTheCall) {
  Fixture f;
  f.stream->OnCancel();
  EXPECT_TRUE(f.cancel->IsCancelled());
  ASSERT_TRUE(f.writer.finished.has_value());
  EXPECT_EQ(f.writer.finished->error_code(), grpc::StatusCode::CANCELLED);
  // The engine notices at its next step; what it still sends is dropped.
  f.stream->OnDelta(Delta("late", {1}));
  f.stream->OnFinish(Finish(engine::FinishReason::kAbort, 3, 1));
  EXPECT_THAT(f.writer.sent, IsEmpty());
  EXPECT_EQ(f.engine_finished, 1);
}

TEST(ResponseStream, CancelWaitsForTheWriteInFlight) {
  Fixture f;
  f.stream->OnDelta(Delta("a", {1}));
  f.stream->OnCancel();
  EXPECT_TRUE(f.cancel->IsCancelled());
  EXPECT_FALSE(f.writer.finished.has_value());
  f.CompleteWrite(false);
  ASSERT_TRUE(f.writer.finished.has_value());
  EXPECT_EQ(f.writer.finished->error_code(), grpc::StatusCode::CANCELLED);
}

TEST(ResponseStream, BrokenWriteCancelsTheRequest) {
  Fixture f;
  f.stream->OnDelta(Delta("a", {1}));
  f.stream->OnDelta(Delta("b", {2}));
  f.CompleteWrite(false);
  EXPECT_TRUE(f.cancel->IsCancelled());
  EXPECT_EQ(f.writer.sent.size(), 1u);
  EXPECT_EQ(f.writer.finished->error_code(), grpc::StatusCode::CANCELLED);
}

TEST(ResponseStream, FailFinishesWithTheStatus) {
  RecordingWriter writer;
  auto stream = std::make_shared<ResponseStream>(&writer);
  stream->Fail(grpc::Status(grpc::StatusCode::NOT_FOUND, "model: no model named 'x'"));
  ASSERT_TRUE(writer.finished.has_value());
  EXPECT_EQ(writer.finished->error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(writer.finished->error_message(), "model: no model named 'x'");
  EXPECT_THAT(writer.sent, IsEmpty());
}

TEST(ResponseStream, OutputAfterTheCallIsDoneIsDropped) {
  auto writer = std::make_unique<RecordingWriter>();
  auto cancel = std::make_shared<engine::CancelFlag>();
  auto stream = std::make_shared<ResponseStream>(writer.get());
  bool engine_finished = false;
  stream->Bind("r", cancel, [&] { engine_finished = true; });
  stream->Fail(grpc::Status(grpc::StatusCode::UNAVAILABLE, "shutting down"));
  stream->OnDone();
  EXPECT_TRUE(cancel->IsCancelled());  // the engine must not keep working for a gone call
  writer.reset();                      // the reactor is freed; the stream must not touch it
  stream->OnDelta(Delta("x", {1}));
  stream->OnFinish(Finish(engine::FinishReason::kAbort, 1, 1));
  EXPECT_TRUE(engine_finished);
}

// A writer whose writes complete on another thread, as gRPC's do.
class AsyncWriter final : public ResponseWriter {
 public:
  void Send(const v1::GenerateResponse* response) override {
    absl::MutexLock lock(&mu_);
    EXPECT_FALSE(in_flight_) << "two writes in flight";
    in_flight_ = true;
    text_ += response->text();
    ids_.insert(ids_.end(), response->token_ids().begin(), response->token_ids().end());
    ++messages_;
  }
  void SendLastAndFinish(const v1::GenerateResponse* response, grpc::Status status) override {
    absl::MutexLock lock(&mu_);
    EXPECT_FALSE(in_flight_);
    text_ += response->text();
    ids_.insert(ids_.end(), response->token_ids().begin(), response->token_ids().end());
    ++messages_;
    finished_ = status.ok() && response->finished().reason() == v1::STOP;
    done_ = true;
  }
  void FinishCall(grpc::Status /*status*/) override {
    absl::MutexLock lock(&mu_);
    done_ = true;
  }
  // Completes writes until the call is finished.
  void RunCompletions(ResponseStream* stream) {
    while (true) {
      {
        absl::MutexLock lock(&mu_);
        mu_.Await(absl::Condition(
            +[](AsyncWriter* w) { return w->in_flight_ || w->done_; }, this));
        if (done_) return;
        in_flight_ = false;
      }
      stream->OnWriteDone(true);
    }
  }

  absl::Mutex mu_;
  bool in_flight_ ABSL_GUARDED_BY(mu_) = false;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  int messages_ ABSL_GUARDED_BY(mu_) = 0;
  std::string text_ ABSL_GUARDED_BY(mu_);
  std::vector<int32_t> ids_ ABSL_GUARDED_BY(mu_);
};

TEST(ResponseStream, EngineNeverWaitsAndNothingIsLost) {
  AsyncWriter writer;
  auto stream = std::make_shared<ResponseStream>(&writer);
  stream->Bind("r", std::make_shared<engine::CancelFlag>(), [] {});
  std::thread completions([&] { writer.RunCompletions(stream.get()); });
  constexpr int kTokens = 5000;
  std::string expected_text;
  std::vector<int32_t> expected_ids;
  for (int i = 0; i < kTokens; ++i) {
    const std::string piece(1, static_cast<char>('a' + i % 26));
    expected_text += piece;
    expected_ids.push_back(i);
    stream->OnDelta(Delta(piece, {i}));
  }
  stream->OnFinish(Finish(engine::FinishReason::kStop, 1, kTokens));
  completions.join();
  absl::MutexLock lock(&writer.mu_);
  EXPECT_TRUE(writer.finished_);
  EXPECT_EQ(writer.text_, expected_text);
  EXPECT_EQ(writer.ids_, expected_ids);
  EXPECT_LE(writer.messages_, kTokens + 1);
}

}  // namespace
}  // namespace muxserve::server
