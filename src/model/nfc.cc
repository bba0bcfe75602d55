#include "nfc.h"

#include <algorithm>
#include <array>
#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

#include "utf8.h"

namespace muxserve::model {
namespace {

struct CombiningClass {
  uint32_t code_point;
  uint8_t value;
};
struct Decomposition {
  uint32_t code_point;
  std::array<uint32_t, 4> parts;  // 0-padded
};
struct Composition {
  uint32_t first;
  uint32_t second;
  uint32_t composite;
};

#include "nfc_tables.inc"

// Hangul syllables, composed and decomposed by formula (Unicode chapter 3.12).
constexpr uint32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
constexpr uint32_t kLCount = 19, kVCount = 21, kTCount = 28, kNCount = kVCount * kTCount;
constexpr uint32_t kSCount = kLCount * kNCount;

// Below this every char is its own NFC and composes with nothing that follows it... except
// that a base letter may take a combining mark after it, which the mark's check catches.
constexpr uint32_t kFirstAffected = 0x300;

// A raw byte of ill-formed input: kept as is, outside the code point range.
constexpr uint32_t kRawByte = 0x80000000;

uint8_t CombiningClassOf(uint32_t cp) {
  if (cp < kFirstAffected || cp >= kRawByte) return 0;
  auto it = std::lower_bound(
      std::begin(kCombiningClasses), std::end(kCombiningClasses), cp,
      [](const CombiningClass& entry, uint32_t value) { return entry.code_point < value; });
  return it != std::end(kCombiningClasses) && it->code_point == cp ? it->value : 0;
}

const Decomposition* DecompositionOf(uint32_t cp) {
  if (cp < 0xC0 || cp >= kRawByte) return nullptr;
  auto it = std::lower_bound(
      std::begin(kDecompositions), std::end(kDecompositions), cp,
      [](const Decomposition& entry, uint32_t value) { return entry.code_point < value; });
  return it != std::end(kDecompositions) && it->code_point == cp ? &*it : nullptr;
}

// Whether `cp` may be the second of a composition pair (a Hangul vowel or trailing consonant,
// or the second char of a primary composite).
bool ComposesBackwards(uint32_t cp) {
  static const std::vector<uint32_t> seconds = [] {
    std::vector<uint32_t> list;
    for (const Composition& entry : kCompositions) list.push_back(entry.second);
    std::sort(list.begin(), list.end());
    list.erase(std::unique(list.begin(), list.end()), list.end());
    return list;
  }();
  if ((cp >= kVBase && cp < kVBase + kVCount) || (cp > kTBase && cp < kTBase + kTCount)) {
    return true;
  }
  return std::binary_search(seconds.begin(), seconds.end(), cp);
}

std::optional<uint32_t> Compose(uint32_t first, uint32_t second) {
  if (first >= kLBase && first < kLBase + kLCount && second >= kVBase &&
      second < kVBase + kVCount) {
    return kSBase + ((first - kLBase) * kVCount + (second - kVBase)) * kTCount;
  }
  if (first >= kSBase && first < kSBase + kSCount && (first - kSBase) % kTCount == 0 &&
      second > kTBase && second < kTBase + kTCount) {
    return first + (second - kTBase);
  }
  auto it =
      std::lower_bound(std::begin(kCompositions), std::end(kCompositions), std::pair{first, second},
                       [](const Composition& entry, const std::pair<uint32_t, uint32_t>& key) {
                         return std::pair{entry.first, entry.second} < key;
                       });
  if (it != std::end(kCompositions) && it->first == first && it->second == second) {
    return it->composite;
  }
  return std::nullopt;
}

void Decompose(uint32_t cp, std::vector<uint32_t>* out) {
  if (cp >= kSBase && cp < kSBase + kSCount) {
    const uint32_t index = cp - kSBase;
    out->push_back(kLBase + index / kNCount);
    out->push_back(kVBase + (index % kNCount) / kTCount);
    if (index % kTCount != 0) out->push_back(kTBase + index % kTCount);
    return;
  }
  if (const Decomposition* entry = DecompositionOf(cp)) {
    for (uint32_t part : entry->parts) {
      if (part != 0) out->push_back(part);
    }
    return;
  }
  out->push_back(cp);
}

// Whether a char leaves NFC text as it is whatever surrounds it: nothing to decompose, a
// starter, and never the second of a pair.
bool IsStable(uint32_t cp) {
  if (cp < kFirstAffected) return true;
  if (cp >= kRawByte) return true;
  return CombiningClassOf(cp) == 0 && DecompositionOf(cp) == nullptr &&
         !(cp >= kSBase && cp < kSBase + kSCount) && !ComposesBackwards(cp);
}

}  // namespace

std::string ToNfc(std::string_view text) {
  std::vector<uint32_t> chars;
  bool stable = true;
  for (size_t position = 0; position < text.size();) {
    const Utf8Step step = NextUtf8(text.substr(position));
    if (step.kind == Utf8Step::kValid) {
      chars.push_back(DecodeCodePoint(text.substr(position, step.length)));
      position += step.length;
    } else {
      chars.push_back(kRawByte | static_cast<uint8_t>(text[position]));
      ++position;
    }
    stable = stable && IsStable(chars.back());
  }
  if (stable) return std::string(text);

  // Decompose fully, then put each run of non-starters in canonical order (stable by class).
  std::vector<uint32_t> decomposed;
  for (uint32_t cp : chars) Decompose(cp, &decomposed);
  for (size_t i = 0; i < decomposed.size();) {
    if (CombiningClassOf(decomposed[i]) == 0) {
      ++i;
      continue;
    }
    size_t end = i;
    while (end < decomposed.size() && CombiningClassOf(decomposed[end]) != 0) ++end;
    std::stable_sort(decomposed.begin() + i, decomposed.begin() + end, [](uint32_t a, uint32_t b) {
      return CombiningClassOf(a) < CombiningClassOf(b);
    });
    i = end;
  }

  // Canonical composition: each char joins the last starter unless a char between them with a
  // class of 0, or of at least its own class, blocks it.
  std::vector<uint32_t> composed;
  std::optional<size_t> starter;
  int last_class = -1;
  for (uint32_t cp : decomposed) {
    const int cls = CombiningClassOf(cp);
    if (starter.has_value()) {
      const bool blocked = last_class != -1 && (last_class == 0 || last_class >= cls);
      if (!blocked) {
        if (std::optional<uint32_t> joined = Compose(composed[*starter], cp)) {
          composed[*starter] = *joined;
          continue;
        }
      }
    }
    if (cls == 0) {
      starter = composed.size();
      last_class = -1;
    } else {
      last_class = cls;
    }
    composed.push_back(cp);
  }

  std::string out;
  out.reserve(text.size());
  for (uint32_t cp : composed) {
    if (cp >= kRawByte) {
      out.push_back(static_cast<char>(cp & 0xFF));
    } else {
      AppendCodePoint(cp, &out);
    }
  }
  return out;
}

}  // namespace muxserve::model
