#include <cstring>

#include "kernels/cpu_ops.h"

namespace muxserve::kernels {

void EmbeddingCpu(const int32_t* tokens, const float* table, int64_t n, int64_t hidden,
                  float* out) {
  for (int64_t i = 0; i < n; ++i) {
    std::memcpy(out + i * hidden, table + static_cast<int64_t>(tokens[i]) * hidden,
                hidden * sizeof(float));
  }
}

}  // namespace muxserve::kernels
