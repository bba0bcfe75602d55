// Arbitrary bytes as the daemon's YAML config: any outcome but a crash, leak or sanitizer report.
#include <cstddef>
#include <cstdint>
#include <string>

#include "muxserve/config/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  // A directory that does not exist: model paths fail their checks without touching real files.
  auto config = muxserve::config::ParseConfig(text, "/nonexistent-fuzz-dir/muxserve.yaml");
  if (!config.ok()) (void)config.status().message().size();
  return 0;
}
