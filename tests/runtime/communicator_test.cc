// The in-process communicator: sums, identical bits on every rank, refusals.
#include "muxserve/runtime/communicator.h"

#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace muxserve::runtime {
namespace {

// Runs `body(rank)` on one thread per rank and returns each rank's status.
template <typename Body>
std::vector<absl::Status> OnEveryRank(int size, Body body) {
  std::vector<absl::Status> status(size);
  std::vector<std::thread> threads;
  for (int r = 0; r < size; ++r) threads.emplace_back([&, r] { status[r] = body(r); });
  for (std::thread& t : threads) t.join();
  return status;
}

TEST(InProcessCommunicatorTest, SumsOverRanksWithTheSameBitsEverywhere) {
  for (int size : {1, 2, 3, 4}) {
    auto comms = MakeInProcessCommunicators(size);
    ASSERT_EQ(static_cast<int>(comms.size()), size);
    constexpr int64_t kCount = 1001;  // not a multiple of any size: uneven slices
    std::vector<std::vector<float>> data(size, std::vector<float>(kCount));
    for (int r = 0; r < size; ++r) {
      EXPECT_EQ(comms[r]->rank(), r);
      EXPECT_EQ(comms[r]->size(), size);
      for (int64_t i = 0; i < kCount; ++i) data[r][i] = 0.1f * static_cast<float>(i) + r * 1e-3f;
    }
    // Several calls in a row reuse the group.
    for (int round = 0; round < 3; ++round) {
      std::vector<std::vector<float>> want(1, std::vector<float>(kCount, 0));
      for (int64_t i = 0; i < kCount; ++i) {
        for (int r = 0; r < size; ++r) want[0][i] += data[r][i];
      }
      const auto status = OnEveryRank(size, [&](int r) {
        return comms[r]->AllReduceSum(data[r].data(), kCount, DType::kFloat32, nullptr);
      });
      for (int r = 0; r < size; ++r) {
        ASSERT_TRUE(status[r].ok()) << status[r];
        EXPECT_EQ(data[r], want[0]) << "size " << size << " rank " << r << " round " << round;
      }
    }
  }
}

TEST(InProcessCommunicatorTest, RefusesOtherDtypesStreamsAndMismatchedCounts) {
  auto comms = MakeInProcessCommunicators(2);
  std::vector<float> a(8, 1), b(8, 2);
  auto dtype = OnEveryRank(2, [&](int r) {
    return comms[r]->AllReduceSum(r == 0 ? a.data() : b.data(), 8, DType::kBFloat16, nullptr);
  });
  for (const absl::Status& s : dtype) EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  int stream_tag = 0;
  auto stream = OnEveryRank(2, [&](int r) {
    return comms[r]->AllReduceSum(r == 0 ? a.data() : b.data(), 8, DType::kFloat32, &stream_tag);
  });
  for (const absl::Status& s : stream) EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  auto counts = OnEveryRank(2, [&](int r) {
    return comms[r]->AllReduceSum(r == 0 ? a.data() : b.data(), r == 0 ? 8 : 4, DType::kFloat32,
                                  nullptr);
  });
  for (const absl::Status& s : counts) {
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(s.message().find("different element counts"), std::string::npos) << s;
  }
  EXPECT_EQ(a, std::vector<float>(8, 1));  // nothing summed
}

TEST(NcclCommunicatorTest, RefusesAnEmptyDeviceList) {
  auto comms = MakeNcclCommunicators({});
  EXPECT_FALSE(comms.ok());
}

}  // namespace
}  // namespace muxserve::runtime
