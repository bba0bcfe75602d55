// Token sampling on the GPU: greedy, temperature, top-k, top-p, seeded. One block per row.
#pragma once

#include <cstdint>

#include "kernels/cuda_common.cuh"

namespace muxserve::kernels {

// One row's sampling parameters (engine::SamplingParams) and the seed of this step's draw.
struct SampleRowParams {
  float temperature;  // <= 0: greedy (argmax, the lowest index among equal maxima)
  int32_t top_k;      // <= 0 or >= vocab: no top-k cut
  float top_p;        // >= 1: no nucleus cut
  uint64_t seed;      // the draw is a function of the seed alone: advance it every step
};

// Picks one token per row by the host sampler's rule (engine::Sampler): keep the top_k largest
// logits, then the smallest set of the largest kept whose softmax(logits / temperature) mass
// reaches top_p, and draw among those in proportion to that softmax. Values equal to a cut's
// value are all kept. The draw walks the kept tokens in index order (the host walks them by rank):
// the same distribution, though not the same token for the same uniform number. Logits must be
// finite. Cuts are found by radix selection over the float bits (no sort), so a step costs a few
// passes over each row.
cudaError_t SampleCuda(const float* logits,  // [rows, vocab]
                       int64_t rows, int64_t vocab,
                       const SampleRowParams* params,  // [rows], device memory
                       int32_t* tokens,                // [rows]
                       cudaStream_t stream);

}  // namespace muxserve::kernels
