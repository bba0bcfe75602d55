#include "muxserve/server/router.h"

#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace muxserve::server {
namespace {

using ::testing::HasSubstr;

ModelEntry ServingEntry(const std::string& name, const std::string& unit) {
  ModelEntry entry;
  entry.name = name;
  entry.unit = unit;
  entry.max_context = 512;
  entry.dtype = DType::kFloat32;
  entry.spec.vocab_size = 300;
  return entry;
}

TEST(Router, UnknownModelIsNotFound) {
  Router router;
  absl::Status status = router.FindServing("nope").status();
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(status.message(), HasSubstr("'nope'"));
}

TEST(Router, LoadingThenServing) {
  Router router;
  ASSERT_TRUE(router.AddLoading("a", "unit0").ok());
  EXPECT_FALSE(router.AllSettled());
  absl::Status loading = router.FindServing("a").status();
  EXPECT_EQ(loading.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(loading.message(), HasSubstr("loading"));

  ASSERT_TRUE(router.SetServing(ServingEntry("a", "unit0")).ok());
  EXPECT_TRUE(router.AllSettled());
  absl::StatusOr<std::shared_ptr<const ModelEntry>> found = router.FindServing("a");
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_EQ((*found)->state, ModelState::kServing);
  EXPECT_EQ((*found)->max_context, 512);
  EXPECT_EQ((*found)->unit, "unit0");
  ASSERT_EQ(router.List().size(), 1u);
  EXPECT_EQ(router.List()[0]->name, "a");
}

TEST(Router, FailedModelIsUnavailableWithTheReason) {
  Router router;
  ASSERT_TRUE(router.AddLoading("a", "unit0").ok());
  ASSERT_TRUE(router.AddLoading("b", "unit0").ok());
  ASSERT_TRUE(router.SetFailed("a", absl::InvalidArgumentError("config.json: bad vocab")).ok());
  EXPECT_FALSE(router.AllSettled());  // b still loads
  absl::Status status = router.FindServing("a").status();
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(status.message(), HasSubstr("config.json: bad vocab"));
  ASSERT_TRUE(router.SetServing(ServingEntry("b", "unit0")).ok());
  EXPECT_TRUE(router.AllSettled());

  std::vector<std::shared_ptr<const ModelEntry>> list = router.List();
  ASSERT_EQ(list.size(), 2u);
  EXPECT_EQ(list[0]->name, "a");
  EXPECT_EQ(list[0]->state, ModelState::kFailed);
  EXPECT_EQ(list[0]->error, "config.json: bad vocab");
  EXPECT_EQ(list[1]->name, "b");
  EXPECT_EQ(list[1]->state, ModelState::kServing);
}

TEST(Router, RejectsDuplicatesAndUnknownUpdates) {
  Router router;
  ASSERT_TRUE(router.AddLoading("a", "unit0").ok());
  EXPECT_EQ(router.AddLoading("a", "unit0").code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(router.SetServing(ServingEntry("x", "unit0")).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(router.SetFailed("x", absl::InternalError("e")).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(router.SetServing(ServingEntry("a", "unit7")).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(Router, SnapshotsOutliveStateChanges) {
  Router router;
  ASSERT_TRUE(router.AddLoading("a", "unit0").ok());
  ASSERT_TRUE(router.SetServing(ServingEntry("a", "unit0")).ok());
  std::shared_ptr<const ModelEntry> held = *router.FindServing("a");
  ASSERT_TRUE(router.SetFailed("a", absl::InternalError("gone")).ok());
  EXPECT_EQ(held->state, ModelState::kServing);
  EXPECT_EQ(router.List()[0]->state, ModelState::kFailed);
}

TEST(Router, ConcurrentReadersAndWriters) {
  Router router;
  constexpr int kModels = 32;
  for (int i = 0; i < kModels; ++i) ASSERT_TRUE(router.AddLoading(std::to_string(i), "u").ok());
  std::thread writer([&] {
    for (int i = 0; i < kModels; ++i) {
      ASSERT_TRUE(router.SetServing(ServingEntry(std::to_string(i), "u")).ok());
    }
  });
  // Readers see each model either loading or serving, never anything else.
  while (!router.AllSettled()) {
    for (int i = 0; i < kModels; ++i) {
      absl::Status status = router.FindServing(std::to_string(i)).status();
      EXPECT_TRUE(status.ok() || status.code() == absl::StatusCode::kUnavailable) << status;
    }
  }
  writer.join();
  for (int i = 0; i < kModels; ++i) EXPECT_TRUE(router.FindServing(std::to_string(i)).ok());
}

TEST(ModelStateName, NamesEveryState) {
  EXPECT_EQ(ModelStateName(ModelState::kLoading), "loading");
  EXPECT_EQ(ModelStateName(ModelState::kServing), "serving");
  EXPECT_EQ(ModelStateName(ModelState::kFailed), "failed");
}

}  // namespace
}  // namespace muxserve::server
