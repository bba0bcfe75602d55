// UTF-8 scanning for tokenizers: splitting text into chars and lossy decoding of token bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace muxserve::model {

// What the bytes at the start of a non-empty string hold, by Unicode's "maximal subpart" rule.
struct Utf8Step {
  enum Kind { kValid, kInvalid, kIncomplete };
  Kind kind;
  // kValid: the char's length; kInvalid: the maximal ill-formed subpart's length (>= 1);
  // kIncomplete: every byte is a valid prefix of a char that needs more bytes.
  size_t length;
};
Utf8Step NextUtf8(std::string_view bytes);

// Length of the char at the start of `text` (non-empty): its UTF-8 length when well-formed,
// else 1, so that ill-formed input still splits into single bytes.
size_t Utf8CharLength(std::string_view text);

// Appends the decided part of `bytes` to `out` as valid UTF-8: well-formed chars are copied and
// each maximal ill-formed subpart becomes U+FFFD, as Rust's String::from_utf8_lossy (which HF
// tokenizers use) does. Unless `final`, an incomplete char at the end stays undecided.
// Returns the number of bytes consumed.
size_t AppendLossyUtf8(std::string_view bytes, bool final, std::string* out);

void AppendCodePoint(uint32_t code_point, std::string* out);
// The code point of one well-formed char (as NextUtf8 reports kValid for it).
uint32_t DecodeCodePoint(std::string_view valid_char);

inline constexpr std::string_view kReplacementChar = "\xEF\xBF\xBD";  // U+FFFD

}  // namespace muxserve::model
