// Element types of weights, activations and KV blocks, with host-side conversions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

#include "absl/status/statusor.h"

namespace muxserve {

enum class DType : uint8_t { kFloat32, kBFloat16, kFloat16 };

size_t DTypeSize(DType dtype);
std::string_view DTypeName(DType dtype);  // "float32", "bfloat16", "float16"
// Accepts the names above and the HF spellings ("bf16", "fp16", "fp32", "half", "float").
absl::StatusOr<DType> ParseDType(std::string_view name);

// Round-to-nearest-even float -> bfloat16 bits, and back.
inline uint16_t FloatToBf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40);  // NaN
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>(bits >> 16);
}
inline float Bf16ToFloat(uint16_t h) {
  uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}
uint16_t FloatToFp16(float f);
float Fp16ToFloat(uint16_t h);

// Converts `count` elements of `src` (of type `dtype`) to float32.
void ConvertToFloat(const void* src, DType dtype, size_t count, float* dst);
// Converts `count` float32 elements to `dtype`, written to `dst`.
void ConvertFromFloat(const float* src, size_t count, DType dtype, void* dst);

}  // namespace muxserve
