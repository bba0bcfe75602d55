#include "muxserve/runtime/check.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "muxserve/runtime/device.h"
#include "muxserve/runtime/driver_api.h"

namespace muxserve::runtime {
namespace {

using ::testing::AllOf;
using ::testing::AnyOf;
using ::testing::HasSubstr;

template <typename Result>
absl::Status ReturnIfError(Result result, int* evaluations) {
  CUDA_RETURN_IF_ERROR((++*evaluations, result));
  return absl::OkStatus();
}

TEST(CudaReturnIfError, PassesSuccessEvaluatingOnce) {
  int evaluations = 0;
  EXPECT_TRUE(ReturnIfError(cudaSuccess, &evaluations).ok());
  EXPECT_TRUE(ReturnIfError(CUDA_SUCCESS, &evaluations).ok());
  EXPECT_TRUE(ReturnIfError(CUBLAS_STATUS_SUCCESS, &evaluations).ok());
  EXPECT_TRUE(ReturnIfError(ncclSuccess, &evaluations).ok());
  EXPECT_EQ(evaluations, 4);
}

TEST(CudaReturnIfError, RuntimeErrorNamesCallFileLineAndError) {
  int evaluations = 0;
  absl::Status status = ReturnIfError(cudaErrorMemoryAllocation, &evaluations);
  EXPECT_EQ(evaluations, 1);
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(status.message()),
              AllOf(HasSubstr("(++*evaluations, result) at check_test.cc:"),
                    HasSubstr("cudaErrorMemoryAllocation: out of memory")));
}

TEST(CudaReturnIfError, RealRuntimeCall) {
  auto set_missing_device = []() -> absl::Status {
    CUDA_RETURN_IF_ERROR(cudaSetDevice(1 << 20));
    return absl::OkStatus();
  };
  absl::Status status = set_missing_device();
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
  EXPECT_THAT(std::string(status.message()), HasSubstr("cudaSetDevice(1 << 20) at check_test.cc:"));
}

TEST(CudaReturnIfError, DriverError) {
  int evaluations = 0;
  absl::Status status = ReturnIfError(CUDA_ERROR_OUT_OF_MEMORY, &evaluations);
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted);
  // Named by the driver where one is installed.
  EXPECT_THAT(std::string(status.message()),
              AnyOf(HasSubstr("CUDA_ERROR_OUT_OF_MEMORY"), HasSubstr("CUresult 2:")));
}

TEST(CudaReturnIfError, CublasError) {
  int evaluations = 0;
  absl::Status status = ReturnIfError(CUBLAS_STATUS_ALLOC_FAILED, &evaluations);
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(status.message()), HasSubstr("CUBLAS_STATUS_ALLOC_FAILED"));
}

TEST(CudaReturnIfError, NcclError) {
  int evaluations = 0;
  absl::Status status = ReturnIfError(ncclInvalidArgument, &evaluations);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("ncclResult_t 4: invalid argument"));
}

TEST(CudaStatus, IsAnExpression) {
  EXPECT_TRUE(CUDA_STATUS(cudaSuccess).ok());
  EXPECT_EQ(CUDA_STATUS(cudaErrorInvalidValue).code(), absl::StatusCode::kInvalidArgument);
}

TEST(CudaLogIfError, GoesOn) {
  int evaluations = 0;
  CUDA_LOG_IF_ERROR((++evaluations, cudaErrorInvalidValue));
  CUDA_LOG_IF_ERROR((++evaluations, cudaSuccess));
  EXPECT_EQ(evaluations, 2);
}

TEST(DriverSymbol, FindsDriverFunctionsWhenADriverIsLoaded) {
  absl::StatusOr<std::vector<DeviceInfo>> devices = ListCudaDevices();
  ASSERT_TRUE(devices.ok()) << devices.status();
  absl::StatusOr<decltype(&cuGetErrorName)> get_name =
      DriverFunction<decltype(cuGetErrorName)>("cuGetErrorName");
  if (devices->empty()) {
    // No device: the driver may be missing (FAILED_PRECONDITION) or present but hiding devices.
    if (!get_name.ok()) {
      EXPECT_EQ(get_name.status().code(), absl::StatusCode::kFailedPrecondition);
    }
  } else {
    ASSERT_TRUE(get_name.ok()) << get_name.status();
    const char* name = nullptr;
    ASSERT_EQ((*get_name)(CUDA_ERROR_INVALID_VALUE, &name), CUDA_SUCCESS);
    EXPECT_STREQ(name, "CUDA_ERROR_INVALID_VALUE");
  }
  EXPECT_FALSE(DriverSymbol("cuNoSuchFunction").ok());
}

}  // namespace
}  // namespace muxserve::runtime
