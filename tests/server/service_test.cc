// The muxserve.v1 service without an engine: what it answers before a request reaches one.
#include "muxserve/server/service.h"

#include <memory>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace muxserve::server {
namespace {

using ::testing::HasSubstr;

class ServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(router_.AddLoading("loading-model", "unit0").ok());
    ASSERT_TRUE(router_.AddLoading("failed-model", "unit0").ok());
    ASSERT_TRUE(router_.SetFailed("failed-model", absl::DataLossError("truncated weights")).ok());
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    stub_ = v1::Muxserve::NewStub(grpc::CreateChannel("127.0.0.1:" + std::to_string(port),
                                                      grpc::InsecureChannelCredentials()));
  }
  void TearDown() override { server_->Shutdown(); }

  grpc::Status Generate(const std::string& model) {
    v1::GenerateRequest request;
    request.set_model(model);
    request.set_text("hi");
    grpc::ClientContext context;
    auto reader = stub_->Generate(&context, request);
    v1::GenerateResponse response;
    EXPECT_FALSE(reader->Read(&response));
    return reader->Finish();
  }

  Router router_;
  MuxserveService service_{&router_};
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<v1::Muxserve::Stub> stub_;
};

TEST_F(ServiceTest, ModelsThatDoNotServeAreRefused) {
  grpc::Status unknown = Generate("nope");
  EXPECT_EQ(unknown.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(unknown.error_message(), HasSubstr("'nope'"));
  grpc::Status loading = Generate("loading-model");
  EXPECT_EQ(loading.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(loading.error_message(), HasSubstr("still loading"));
  grpc::Status failed = Generate("failed-model");
  EXPECT_EQ(failed.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(failed.error_message(), HasSubstr("truncated weights"));
}

TEST_F(ServiceTest, DrainingRefusesNewRequests) {
  service_.StopAccepting();
  grpc::Status status = Generate("loading-model");
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(status.error_message(), HasSubstr("shutting down"));

  v1::ChatRequest chat;
  chat.set_model("loading-model");
  grpc::ClientContext context;
  auto reader = stub_->Chat(&context, chat);
  v1::GenerateResponse response;
  EXPECT_FALSE(reader->Read(&response));
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::UNAVAILABLE);
}

TEST_F(ServiceTest, AbortOfAnUnknownIdIsNotFound) {
  v1::AbortRequest request;
  request.set_request_id("ghost");
  v1::AbortResponse response;
  grpc::ClientContext context;
  grpc::Status status = stub_->Abort(&context, request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(status.error_message(), HasSubstr("ghost"));
}

TEST_F(ServiceTest, ListModelsReportsStatesAndErrors) {
  v1::ListModelsResponse response;
  grpc::ClientContext context;
  ASSERT_TRUE(stub_->ListModels(&context, v1::ListModelsRequest(), &response).ok());
  ASSERT_EQ(response.models_size(), 2);
  EXPECT_EQ(response.models(0).name(), "loading-model");
  EXPECT_EQ(response.models(0).state(), v1::ModelInfo::LOADING);
  EXPECT_EQ(response.models(1).state(), v1::ModelInfo::FAILED);
  EXPECT_EQ(response.models(1).error_message(), "truncated weights");

  v1::GetStatsResponse stats;
  grpc::ClientContext stats_context;
  ASSERT_TRUE(stub_->GetStats(&stats_context, v1::GetStatsRequest(), &stats).ok());
  EXPECT_EQ(stats.models_size(), 0);  // no model is on an engine yet
}

TEST(ActiveRequests, TracksRunningIds) {
  ActiveRequests active;
  auto first = std::make_shared<engine::CancelFlag>();
  ASSERT_TRUE(active.Add("a", first).ok());
  EXPECT_EQ(active.Add("a", std::make_shared<engine::CancelFlag>()).code(),
            absl::StatusCode::kAlreadyExists);
  ASSERT_TRUE(active.Cancel("a").ok());
  EXPECT_TRUE(first->IsCancelled());
  // Only the request that added the id removes it.
  auto other = std::make_shared<engine::CancelFlag>();
  active.Remove("a", other.get());
  EXPECT_EQ(active.size(), 1u);
  active.Remove("a", first.get());
  EXPECT_EQ(active.size(), 0u);
  EXPECT_EQ(active.Cancel("a").code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace muxserve::server
