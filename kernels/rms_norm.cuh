// RMSNorm and RMSNorm with the residual add fused in, on the GPU (bf16 or fp16 in and out, fp32
// sums). T: bf16 or fp16.
#pragma once

#include <cstdint>

#include "kernels/cuda_common.cuh"

namespace muxserve::kernels {

// out = x / rms(x) * weight, per row.
template <typename T>
cudaError_t RmsNormCuda(const T* x,       // [n, hidden]
                        const T* weight,  // [hidden]
                        int64_t n, int64_t hidden, float eps,
                        T* out,  // [n, hidden]
                        cudaStream_t stream);

// residual += delta (rounded to T, as stored); out = RmsNorm(residual).
template <typename T>
cudaError_t AddRmsNormCuda(T* residual,      // [n, hidden]
                           const T* delta,   // [n, hidden]
                           const T* weight,  // [hidden]
                           int64_t n, int64_t hidden, float eps,
                           T* out,  // [n, hidden]
                           cudaStream_t stream);

}  // namespace muxserve::kernels
