// Arbitrary bytes as a .safetensors file: the header length, the JSON header and the tensor
// table (dtypes, shapes, offsets) must be checked before anything is read through them.
#include <cstddef>
#include <cstdint>
#include <span>

#include "muxserve/model/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const std::byte> file(reinterpret_cast<const std::byte*>(data), size);
  auto tensors = muxserve::model::ParseSafetensors(file, "fuzz.safetensors");
  if (!tensors.ok()) return 0;
  // Every tensor the parser accepted lies inside the file: touch its first and last byte.
  volatile std::byte sink{};
  for (const auto& [name, info] : *tensors) {
    const std::span<const std::byte> bytes = info.data;
    if (!bytes.empty()) sink = bytes.front() ^ bytes.back();
  }
  (void)sink;
  return 0;
}
