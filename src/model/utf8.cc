#include "utf8.h"

namespace muxserve::model {

Utf8Step NextUtf8(std::string_view bytes) {
  const auto lead = static_cast<uint8_t>(bytes[0]);
  if (lead < 0x80) return {Utf8Step::kValid, 1};
  // Unicode table 3-7: the lead byte fixes the length and the range of the second byte.
  size_t continuation;
  uint8_t low = 0x80;
  uint8_t high = 0xBF;
  if (lead >= 0xC2 && lead <= 0xDF) {
    continuation = 1;
  } else if (lead == 0xE0) {
    continuation = 2;
    low = 0xA0;
  } else if (lead == 0xED) {
    continuation = 2;
    high = 0x9F;
  } else if (lead >= 0xE1 && lead <= 0xEF) {
    continuation = 2;
  } else if (lead == 0xF0) {
    continuation = 3;
    low = 0x90;
  } else if (lead == 0xF4) {
    continuation = 3;
    high = 0x8F;
  } else if (lead >= 0xF1 && lead <= 0xF3) {
    continuation = 3;
  } else {
    return {Utf8Step::kInvalid, 1};
  }
  for (size_t i = 1; i <= continuation; ++i) {
    if (i >= bytes.size()) return {Utf8Step::kIncomplete, i};
    const auto byte = static_cast<uint8_t>(bytes[i]);
    if (byte < low || byte > high) return {Utf8Step::kInvalid, i};
    low = 0x80;
    high = 0xBF;
  }
  return {Utf8Step::kValid, continuation + 1};
}

size_t Utf8CharLength(std::string_view text) {
  Utf8Step step = NextUtf8(text);
  return step.kind == Utf8Step::kValid ? step.length : 1;
}

size_t AppendLossyUtf8(std::string_view bytes, bool final, std::string* out) {
  size_t position = 0;
  while (position < bytes.size()) {
    Utf8Step step = NextUtf8(bytes.substr(position));
    if (step.kind == Utf8Step::kIncomplete) {
      if (!final) break;
      out->append(kReplacementChar);
      position = bytes.size();
      break;
    }
    if (step.kind == Utf8Step::kValid) {
      out->append(bytes.substr(position, step.length));
    } else {
      out->append(kReplacementChar);
    }
    position += step.length;
  }
  return position;
}

void AppendCodePoint(uint32_t code_point, std::string* out) {
  if (code_point < 0x80) {
    out->push_back(static_cast<char>(code_point));
  } else if (code_point < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (code_point >> 6)));
    out->push_back(static_cast<char>(0x80 | (code_point & 0x3F)));
  } else if (code_point < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (code_point >> 12)));
    out->push_back(static_cast<char>(0x80 | ((code_point >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (code_point & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (code_point >> 18)));
    out->push_back(static_cast<char>(0x80 | ((code_point >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((code_point >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (code_point & 0x3F)));
  }
}

uint32_t DecodeCodePoint(std::string_view valid_char) {
  const auto lead = static_cast<uint8_t>(valid_char[0]);
  if (valid_char.size() == 1) return lead;
  uint32_t code_point = lead & (0x7F >> valid_char.size());
  for (size_t i = 1; i < valid_char.size(); ++i) {
    code_point = (code_point << 6) | (static_cast<uint8_t>(valid_char[i]) & 0x3F);
  }
  return code_point;
}

}  // namespace muxserve::model
