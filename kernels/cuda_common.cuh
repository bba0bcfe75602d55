// Device helpers shared by the CUDA kernels: bf16 vectors of 16 bytes, warp reductions, and the
// address of a K/V row in the head-wise pool (layout in kernels/paged_kv.h; pool dtype bf16).
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/paged_kv.h"

namespace muxserve::kernels {

using bf16 = __nv_bfloat16;

#ifdef __CUDACC__

// Eight bf16 values, moved as one 16-byte access.
struct alignas(16) Bf16x8 {
  uint4 raw;
};

__device__ __forceinline__ void ToFloat8(const Bf16x8& v, float out[8]) {
  const auto* pairs = reinterpret_cast<const __nv_bfloat162*>(&v.raw);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 f = __bfloat1622float2(pairs[i]);
    out[2 * i] = f.x;
    out[2 * i + 1] = f.y;
  }
}

__device__ __forceinline__ Bf16x8 FromFloat8(const float in[8]) {
  Bf16x8 v;
  auto* pairs = reinterpret_cast<__nv_bfloat162*>(&v.raw);
#pragma unroll
  for (int i = 0; i < 4; ++i) pairs[i] = __floats2bfloat162_rn(in[2 * i], in[2 * i + 1]);
  return v;
}

__device__ __forceinline__ Bf16x8 Load8(const bf16* p) {
  return Bf16x8{*reinterpret_cast<const uint4*>(p)};
}

__device__ __forceinline__ void Store8(bf16* p, const Bf16x8& v) {
  *reinterpret_cast<uint4*>(p) = v.raw;
}

// Programmatic dependent launch: kernels launched with LaunchKernel may start while the
// kernel before them on the stream still runs, so each first waits for it (its memory then
// visible) and lets the kernel after it get scheduled early in turn. Kernels touch no global
// memory before BeginKernel.
__device__ __forceinline__ void BeginKernel() {
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
}

__device__ __forceinline__ float WarpSum(float v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

// Sum over the whole block; every thread gets it. `scratch` holds one float per warp.
__device__ __forceinline__ float BlockSum(float v, float* scratch) {
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const int warps = (blockDim.x + 31) >> 5;
  v = WarpSum(v);
  __syncthreads();  // scratch may still be read from an earlier call
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  float total = 0.0f;
  for (int w = 0; w < warps; ++w) total += scratch[w];
  return total;
}

// First element of the K row (V when `value`) of `token` of a sequence for (layer, kv_head).
// 32-bit division: token counts stay far below 2^31 and 64-bit division costs several times more.
__device__ __forceinline__ bf16* KvRowBf16(const PagedKv& kv, const int32_t* table, int64_t layer,
                                           int64_t kv_head, int token, bool value) {
  const int tokens_per_block = static_cast<int>(kv.tokens_per_block);
  const int token_block = token / tokens_per_block;
  const int32_t block = table[(token_block * kv.num_layers + layer) * kv.num_kv_heads + kv_head];
  auto* base = static_cast<char*>(kv.pool) + static_cast<int64_t>(block) * kv.block_bytes;
  return reinterpret_cast<bf16*>(base) +
         static_cast<int64_t>((value ? tokens_per_block : 0) + token % tokens_per_block) *
             kv.head_dim;
}

// Launches `kernel` for programmatic dependent launch (see BeginKernel) and returns the launch
// error, if any.
template <typename... Params, typename... Args>
cudaError_t LaunchKernel(void (*kernel)(Params...), dim3 grid, dim3 block, size_t shared_bytes,
                         cudaStream_t stream, Args... args) {
  cudaLaunchAttribute attribute{};
  attribute.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attribute.val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t config{};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = shared_bytes;
  config.stream = stream;
  config.attrs = &attribute;
  config.numAttrs = 1;
  const cudaError_t launched = cudaLaunchKernelEx(&config, kernel, static_cast<Params>(args)...);
  return launched != cudaSuccess ? launched : cudaGetLastError();
}

#endif  // __CUDACC__

// Blocks of `threads` covering `count` items, capped so huge counts use grid-stride loops.
inline unsigned int BlocksFor(int64_t count, int threads) {
  const int64_t blocks = (count + threads - 1) / threads;
  return static_cast<unsigned int>(blocks < 1 ? 1 : (blocks > 65535 * 8 ? 65535 * 8 : blocks));
}

}  // namespace muxserve::kernels
