// RMSNorm and RMSNorm with the residual add fused in, on the GPU (bf16 in and out, fp32 sums).
#pragma once

#include <cstdint>

#include "kernels/cuda_common.cuh"

namespace muxserve::kernels {

// out = x / rms(x) * weight, per row.
cudaError_t RmsNormCuda(const bf16* x,       // [n, hidden]
                        const bf16* weight,  // [hidden]
                        int64_t n, int64_t hidden, float eps,
                        bf16* out,  // [n, hidden]
                        cudaStream_t stream);

// residual += delta (rounded to bf16, as stored); out = RmsNorm(residual).
cudaError_t AddRmsNormCuda(bf16* residual,      // [n, hidden]
                           const bf16* delta,   // [n, hidden]
                           const bf16* weight,  // [hidden]
                           int64_t n, int64_t hidden, float eps,
                           bf16* out,  // [n, hidden]
                           cudaStream_t stream);

}  // namespace muxserve::kernels
