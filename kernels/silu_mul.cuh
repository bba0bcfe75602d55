// SwiGLU activation on the GPU (bf16 or fp16 in and out, fp32 arithmetic).
#pragma once

#include <cstdint>

#include "kernels/cuda_common.cuh"

namespace muxserve::kernels {

// out = silu(gate) * up, gate and up the two halves of each row of gate_up. T: bf16 or fp16.
template <typename T>
cudaError_t SiluMulCuda(const T* gate_up,  // [n, 2 * inter]
                        int64_t n, int64_t inter,
                        T* out,  // [n, inter]
                        cudaStream_t stream);

}  // namespace muxserve::kernels
