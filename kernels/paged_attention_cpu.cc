#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/cpu_ops.h"

namespace muxserve::kernels {

void KvAppendCpu(const float* qkv, const StepSequence* seqs, int64_t num_seqs,
                 const int32_t* block_tables, int64_t row_stride, int64_t k_offset,
                 int64_t v_offset, int64_t layer, const PagedKv& kv) {
  const size_t row_bytes = kv.head_dim * sizeof(float);
  for (int64_t s = 0; s < num_seqs; ++s) {
    const StepSequence& seq = seqs[s];
    const int32_t* table = block_tables + seq.table_offset;
    const int64_t first_position = seq.context_len - seq.q_len;
    for (int64_t i = 0; i < seq.q_len; ++i) {
      const float* row = qkv + (seq.q_start + i) * row_stride;
      for (int64_t h = 0; h < kv.num_kv_heads; ++h) {
        std::memcpy(KvRow(kv, table, layer, h, first_position + i, false),
                    row + k_offset + h * kv.head_dim, row_bytes);
        std::memcpy(KvRow(kv, table, layer, h, first_position + i, true),
                    row + v_offset + h * kv.head_dim, row_bytes);
      }
    }
  }
}

void PagedAttentionCpu(const float* qkv, const StepSequence* seqs, int64_t num_seqs,
                       const int32_t* block_tables, int64_t row_stride, int64_t num_q_heads,
                       int64_t layer, float scale, const PagedKv& kv, float* out) {
  const int64_t d = kv.head_dim;
  const int64_t group = num_q_heads / kv.num_kv_heads;
  for (int64_t s = 0; s < num_seqs; ++s) {
    const StepSequence& seq = seqs[s];
    const int32_t* table = block_tables + seq.table_offset;
    const int64_t first_position = seq.context_len - seq.q_len;
#pragma omp parallel for collapse(2) if (seq.q_len * num_q_heads > 8)
    for (int64_t i = 0; i < seq.q_len; ++i) {
      for (int64_t h = 0; h < num_q_heads; ++h) {
        const float* q = qkv + (seq.q_start + i) * row_stride + h * d;
        float* o = out + (seq.q_start + i) * num_q_heads * d + h * d;
        const int64_t kv_head = h / group;
        const int64_t visible = first_position + i + 1;  // causal: keys at positions <= own
        std::vector<float> scores(visible);
        float max_score = -INFINITY;
        for (int64_t t = 0; t < visible; ++t) {
          const float* k = KvRow(kv, table, layer, kv_head, t, false);
          float dot = 0;
          for (int64_t j = 0; j < d; ++j) dot += q[j] * k[j];
          scores[t] = dot * scale;
          max_score = std::max(max_score, scores[t]);
        }
        double denom = 0;
        for (int64_t t = 0; t < visible; ++t) {
          scores[t] = std::exp(scores[t] - max_score);
          denom += scores[t];
        }
        std::fill(o, o + d, 0.0f);
        for (int64_t t = 0; t < visible; ++t) {
          const float* v = KvRow(kv, table, layer, kv_head, t, true);
          const float p = static_cast<float>(scores[t] / denom);
          for (int64_t j = 0; j < d; ++j) o[j] += p * v[j];
        }
      }
    }
  }
}

}  // namespace muxserve::kernels
