#include "muxserve/runtime/device.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace muxserve::runtime {
namespace {

using ::testing::HasSubstr;

TEST(ListCudaDevices, SucceedsWithOrWithoutDevices) {
  absl::StatusOr<std::vector<DeviceInfo>> devices = ListCudaDevices();
  ASSERT_TRUE(devices.ok()) << devices.status();
  if (!CudaBuilt()) {
    EXPECT_TRUE(devices->empty());
  }
  for (size_t i = 0; i < devices->size(); ++i) {
    EXPECT_EQ((*devices)[i].index, static_cast<int>(i));
    EXPECT_FALSE((*devices)[i].name.empty());
  }
}

TEST(ListCudaDevices, IsRepeatable) {
  absl::StatusOr<std::vector<DeviceInfo>> first = ListCudaDevices();
  absl::StatusOr<std::vector<DeviceInfo>> second = ListCudaDevices();
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(first->size(), second->size());
}

TEST(ResolveBackend, CpuStaysCpu) {
  absl::StatusOr<config::Backend> backend = ResolveBackend(config::Backend::kCpu);
  ASSERT_TRUE(backend.ok()) << backend.status();
  EXPECT_EQ(*backend, config::Backend::kCpu);
}

TEST(ResolveBackend, AutoPicksCudaOnlyWithBackendAndDevice) {
  absl::StatusOr<config::Backend> backend = ResolveBackend(config::Backend::kAuto);
  ASSERT_TRUE(backend.ok()) << backend.status();
  absl::StatusOr<std::vector<DeviceInfo>> devices = ListCudaDevices();
  ASSERT_TRUE(devices.ok()) << devices.status();
  const bool cuda = CudaBackendAvailable() && !devices->empty();
  EXPECT_EQ(*backend, cuda ? config::Backend::kCuda : config::Backend::kCpu);
}

TEST(ResolveBackend, CudaWithoutBackendIsFailedPrecondition) {
  if (CudaBackendAvailable()) GTEST_SKIP() << "this binary has the CUDA backend";
  absl::StatusOr<config::Backend> backend = ResolveBackend(config::Backend::kCuda);
  ASSERT_FALSE(backend.ok());
  EXPECT_EQ(backend.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(backend.status().message()),
              HasSubstr("the CUDA backend is not built into this binary"));
}

TEST(ResolveBackend, CudaWithoutDeviceIsFailedPrecondition) {
  absl::StatusOr<std::vector<DeviceInfo>> devices = ListCudaDevices();
  ASSERT_TRUE(devices.ok()) << devices.status();
  if (!devices->empty()) GTEST_SKIP() << "a CUDA device is visible";
  absl::StatusOr<config::Backend> backend = ResolveBackend(config::Backend::kCuda);
  ASSERT_FALSE(backend.ok());
  EXPECT_EQ(backend.status().code(), absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace muxserve::runtime
