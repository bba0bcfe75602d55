// One check-macro family for CUDA runtime, CUDA driver, cuBLAS and NCCL return codes. A failed
// call becomes an absl::Status naming the call, file:line and the library's error string:
//   CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, stream));
//   -> INTERNAL: cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, stream) at arena.cc:42:
//      cudaErrorInvalidValue: invalid argument
// Only in CUDA builds (MUXSERVE_WITH_CUDA). Code checking cuBLAS or NCCL calls links those
// libraries itself; the overloads for them are inline so nobody else has to.
#pragma once

#if MUXSERVE_WITH_CUDA

#include <cublas_api.h>
#include <cuda.h>
#include <cuda_runtime_api.h>
#include <nccl.h>

#include <string_view>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace muxserve::runtime {

inline bool DeviceCallSucceeded(cudaError_t result) { return result == cudaSuccess; }
inline bool DeviceCallSucceeded(CUresult result) { return result == CUDA_SUCCESS; }
inline bool DeviceCallSucceeded(cublasStatus_t result) { return result == CUBLAS_STATUS_SUCCESS; }
inline bool DeviceCallSucceeded(ncclResult_t result) { return result == ncclSuccess; }

// The Status of a failed call: `call` is its source text, `file`/`line` where it was made.
absl::Status DeviceCallError(cudaError_t result, const char* call, const char* file, int line);
absl::Status DeviceCallError(CUresult result, const char* call, const char* file, int line);

namespace internal {
// `error_name` and `description` are the library's name and explanation of the code.
absl::Status MakeDeviceCallError(absl::StatusCode code, std::string_view error_name,
                                 std::string_view description, const char* call, const char* file,
                                 int line);
// Logs a failed call's Status (for destructors, which cannot return one).
void LogDeviceCallError(const absl::Status& status);
}  // namespace internal

inline absl::Status DeviceCallError(cublasStatus_t result, const char* call, const char* file,
                                    int line) {
  const absl::StatusCode code = result == CUBLAS_STATUS_ALLOC_FAILED
                                    ? absl::StatusCode::kResourceExhausted
                                    : absl::StatusCode::kInternal;
  return internal::MakeDeviceCallError(code, cublasGetStatusName(result),
                                       cublasGetStatusString(result), call, file, line);
}

inline absl::Status DeviceCallError(ncclResult_t result, const char* call, const char* file,
                                    int line) {
  const absl::StatusCode code = result == ncclInvalidArgument || result == ncclInvalidUsage
                                    ? absl::StatusCode::kInvalidArgument
                                    : absl::StatusCode::kInternal;
  return internal::MakeDeviceCallError(code,
                                       absl::StrCat("ncclResult_t ", static_cast<int>(result)),
                                       ncclGetErrorString(result), call, file, line);
}

}  // namespace muxserve::runtime

// The Status of a CUDA runtime / driver / cuBLAS / NCCL call: OK or the error described above.
#define CUDA_STATUS(expr)                                                                         \
  ([&]() -> ::absl::Status {                                                                      \
    const auto muxserve_device_result_ = (expr);                                                  \
    if (__builtin_expect(::muxserve::runtime::DeviceCallSucceeded(muxserve_device_result_), 1)) { \
      return ::absl::OkStatus();                                                                  \
    }                                                                                             \
    return ::muxserve::runtime::DeviceCallError(muxserve_device_result_, #expr, __FILE__,         \
                                                __LINE__);                                        \
  }())

// Returns the error from the enclosing function when the call fails.
#define CUDA_RETURN_IF_ERROR(expr)                                                                 \
  do {                                                                                             \
    const auto muxserve_device_result_ = (expr);                                                   \
    if (__builtin_expect(!::muxserve::runtime::DeviceCallSucceeded(muxserve_device_result_), 0)) { \
      return ::muxserve::runtime::DeviceCallError(muxserve_device_result_, #expr, __FILE__,        \
                                                  __LINE__);                                       \
    }                                                                                              \
  } while (0)

// Logs the error of a failed call and goes on: for destructors and other places that cannot
// return a Status.
#define CUDA_LOG_IF_ERROR(expr)                                                                    \
  do {                                                                                             \
    const auto muxserve_device_result_ = (expr);                                                   \
    if (__builtin_expect(!::muxserve::runtime::DeviceCallSucceeded(muxserve_device_result_), 0)) { \
      ::muxserve::runtime::internal::LogDeviceCallError(::muxserve::runtime::DeviceCallError(      \
          muxserve_device_result_, #expr, __FILE__, __LINE__));                                    \
    }                                                                                              \
  } while (0)

#endif  // MUXSERVE_WITH_CUDA
