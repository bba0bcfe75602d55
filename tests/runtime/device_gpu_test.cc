#include "gtest/gtest.h"
#include "muxserve/runtime/device.h"

namespace muxserve::runtime {
namespace {

TEST(CudaDevices, DescribeEveryVisibleDevice) {
  absl::StatusOr<std::vector<DeviceInfo>> devices = ListCudaDevices();
  ASSERT_TRUE(devices.ok()) << devices.status();
  if (devices->empty()) GTEST_SKIP() << "no CUDA device visible";
  for (const DeviceInfo& device : *devices) {
    SCOPED_TRACE(device.name);
    EXPECT_FALSE(device.name.empty());
    EXPECT_GT(device.sm_count, 0);
    EXPECT_GT(device.total_memory, int64_t{1} << 30);
    EXPECT_GE(device.cc_major, 7);  // CUDA 13 supports Turing (7.5) and newer
    EXPECT_GE(device.cc_minor, 0);
  }
}

}  // namespace
}  // namespace muxserve::runtime
