// CPU reference ops (fp32). The CPU backend runs them; the CUDA kernels are checked against them.
// Pointer parameters carry their shapes; row-major throughout.
#pragma once

#include <cstdint>

#include "kernels/paged_kv.h"

namespace muxserve::kernels {

// out[i] = table[tokens[i]].
void EmbeddingCpu(const int32_t* tokens,  // [n]
                  const float* table,     // [vocab, hidden]
                  int64_t n, int64_t hidden,
                  float* out);            // [n, hidden]

// out = x / rms(x) * weight, per row.
void RmsNormCpu(const float* x,       // [n, hidden]
                const float* weight,  // [hidden]
                int64_t n, int64_t hidden, float eps,
                float* out);          // [n, hidden]

// residual += delta; out = RmsNorm(residual).
void AddRmsNormCpu(float* residual,     // [n, hidden]
                   const float* delta,  // [n, hidden]
                   const float* weight, int64_t n, int64_t hidden, float eps,
                   float* out);         // [n, hidden]

// out = a @ w^T (+ bias): the HF Linear layout, through OpenBLAS.
void GemmCpu(const float* a,     // [m, k]
             const float* w,     // [n, k]
             const float* bias,  // [n] or null
             int64_t m, int64_t n, int64_t k,
             float* out);        // [m, n]

// Rotates q and k in place (rotate_half / NeoX layout, as HF Llama). `inv_freq` [head_dim / 2]
// already includes any rope scaling.
void RopeCpu(float* qkv,               // [n, row_stride]; q at column 0, k at column k_offset
             const int32_t* positions,  // [n]
             const float* inv_freq,     // [head_dim / 2]
             int64_t n, int64_t row_stride, int64_t num_q_heads, int64_t num_kv_heads,
             int64_t k_offset, int64_t head_dim);

// out = silu(gate) * up, gate and up the two halves of each row of gate_up.
void SiluMulCpu(const float* gate_up,  // [n, 2 * inter]
                int64_t n, int64_t inter,
                float* out);           // [n, inter]

// Writes each new token's K and V into its head blocks.
void KvAppendCpu(const float* qkv,             // [n, row_stride]; k at k_offset, v at v_offset
                 const StepSequence* seqs, int64_t num_seqs,
                 const int32_t* block_tables,  // concatenated per-sequence tables
                 int64_t row_stride, int64_t k_offset, int64_t v_offset, int64_t layer,
                 const PagedKv& kv);

// Causal attention of every new token over its sequence's cached K/V (GQA: query head h reads
// KV head h / (num_q_heads / num_kv_heads)).
void PagedAttentionCpu(const float* qkv,  // [n, row_stride]; q at column 0
                       const StepSequence* seqs, int64_t num_seqs,
                       const int32_t* block_tables, int64_t row_stride, int64_t num_q_heads,
                       int64_t layer, float scale, const PagedKv& kv,
                       float* out);  // [n, num_q_heads * head_dim]

}  // namespace muxserve::kernels
