// Arbitrary bytes as tokenizer.json: loading must fail cleanly or give a tokenizer that encodes
// and decodes without crashing.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "muxserve/model/tokenizer.h"

namespace {

// One scratch directory per fuzzing process.
const std::filesystem::path& ScratchDir() {
  static const std::filesystem::path dir = [] {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "muxserve-fuzz-XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) std::abort();
    std::atexit([] { std::filesystem::remove_all(ScratchDir()); });
    return std::filesystem::path(pattern);
  }();
  return dir;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::filesystem::path& dir = ScratchDir();
  {
    std::ofstream out(dir / "tokenizer.json", std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  auto tokenizer = muxserve::model::Tokenizer::Load(dir);
  if (!tokenizer.ok()) return 0;
  const std::vector<int32_t> ids = (*tokenizer)->Encode("Hello, world! <s> 123 \xe4\xbd\xa0", true);
  (void)(*tokenizer)->Decode(ids, /*skip_special=*/false);
  muxserve::model::StreamDecoder decoder(tokenizer->get(), /*skip_special=*/true);
  for (int32_t id : ids) (void)decoder.Push(id);
  (void)decoder.Flush();
  return 0;
}
