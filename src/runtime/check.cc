#include "muxserve/runtime/check.h"

#include <filesystem>
#include <string>

#include "absl/strings/str_cat.h"
#include "muxserve/common/status.h"
#include "muxserve/runtime/driver_api.h"
#include "spdlog/spdlog.h"

namespace muxserve::runtime {
namespace internal {

absl::Status MakeDeviceCallError(absl::StatusCode code, std::string_view error_name,
                                 std::string_view description, const char* call, const char* file,
                                 int line) {
  return absl::Status(
      code, absl::StrCat(call, " at ", std::filesystem::path(file).filename().string(), ":", line,
                         ": ", AsAbsl(error_name), ": ", AsAbsl(description)));
}

void LogDeviceCallError(const absl::Status& status) { spdlog::error("{}", status.ToString()); }

}  // namespace internal

absl::Status DeviceCallError(cudaError_t result, const char* call, const char* file, int line) {
  absl::StatusCode code = absl::StatusCode::kInternal;
  switch (result) {
    case cudaErrorMemoryAllocation:
      code = absl::StatusCode::kResourceExhausted;
      break;
    case cudaErrorNoDevice:
    case cudaErrorInsufficientDriver:
    case cudaErrorStubLibrary:
    case cudaErrorInvalidDevice:
      code = absl::StatusCode::kFailedPrecondition;
      break;
    case cudaErrorInvalidValue:
      code = absl::StatusCode::kInvalidArgument;
      break;
    default:
      break;
  }
  return internal::MakeDeviceCallError(code, cudaGetErrorName(result), cudaGetErrorString(result),
                                       call, file, line);
}

absl::Status DeviceCallError(CUresult result, const char* call, const char* file, int line) {
  absl::StatusCode code = absl::StatusCode::kInternal;
  switch (result) {
    case CUDA_ERROR_OUT_OF_MEMORY:
      code = absl::StatusCode::kResourceExhausted;
      break;
    case CUDA_ERROR_NO_DEVICE:
    case CUDA_ERROR_INVALID_DEVICE:
    case CUDA_ERROR_NOT_INITIALIZED:
      code = absl::StatusCode::kFailedPrecondition;
      break;
    case CUDA_ERROR_INVALID_VALUE:
      code = absl::StatusCode::kInvalidArgument;
      break;
    default:
      break;
  }
  // The driver's own strings need libcuda, which a machine without a GPU driver lacks.
  std::string name = absl::StrCat("CUresult ", static_cast<int>(result));
  std::string description = "no CUDA driver to describe it";
  using ErrorStringFn = CUresult(CUresult, const char**);
  absl::StatusOr<ErrorStringFn*> get_name = DriverFunction<ErrorStringFn>("cuGetErrorName");
  absl::StatusOr<ErrorStringFn*> get_string = DriverFunction<ErrorStringFn>("cuGetErrorString");
  const char* text = nullptr;
  if (get_name.ok() && (*get_name)(result, &text) == CUDA_SUCCESS && text != nullptr) name = text;
  if (get_string.ok() && (*get_string)(result, &text) == CUDA_SUCCESS && text != nullptr) {
    description = text;
  }
  return internal::MakeDeviceCallError(code, name, description, call, file, line);
}

}  // namespace muxserve::runtime
