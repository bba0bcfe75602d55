// Unicode Normalization Form C, which the NFC normalizer of tokenizer.json (Qwen2) applies: no
// listed dependency provides it (ICU is not one), so it is done here from tables generated out
// of Python's unicodedata (nfc_tables.inc, tests/model/scripts/make_nfc_tables.py).
#pragma once

#include <string>
#include <string_view>

namespace muxserve::model {

// `text` in NFC. Ill-formed UTF-8 bytes pass through unchanged, each one a char that neither
// composes nor reorders.
std::string ToNfc(std::string_view text);

}  // namespace muxserve::model
