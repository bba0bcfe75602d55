#include "pre_tokenizer.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "json_util.h"
#include "muxserve/common/status.h"
#include "nfc.h"
#include "utf8.h"

namespace muxserve::model {
namespace {

constexpr std::string_view kTrailingWhitespaceGroup = "muxserve_trailing_ws";
// Unicode White_Space for RE2, whose \s is ASCII only: \t \n \v \f \r, U+0085 and the
// separators (space, no-break space, the U+2000 block, line and paragraph separators, ...).
constexpr std::string_view kWhitespaceClassBody = R"(\t\n\x0B\f\r\x{85}\p{Z})";

// See SplitPattern: Oniguruma pattern -> RE2 pattern.
std::string TranslatePattern(std::string_view pattern) {
  constexpr std::string_view kLookahead = R"(\s+(?!\S))";
  std::string out;
  bool in_class = false;
  for (size_t i = 0; i < pattern.size(); ++i) {
    if (!in_class && pattern.substr(i, kLookahead.size()) == kLookahead) {
      absl::StrAppend(&out, "(?P<", AsAbsl(kTrailingWhitespaceGroup), ">[",
                      AsAbsl(kWhitespaceClassBody), "]+)");
      i += kLookahead.size() - 1;
      continue;
    }
    const char c = pattern[i];
    if (c == '\\' && i + 1 < pattern.size()) {
      const char escaped = pattern[++i];
      if (escaped == 's') {
        if (in_class) {
          out.append(kWhitespaceClassBody);
        } else {
          absl::StrAppend(&out, "[", AsAbsl(kWhitespaceClassBody), "]");
        }
      } else if (escaped == 'S' && !in_class) {
        absl::StrAppend(&out, "[^", AsAbsl(kWhitespaceClassBody), "]");
      } else {
        out.push_back('\\');
        out.push_back(escaped);
      }
      continue;
    }
    if (c == '[' && !in_class) {
      in_class = true;
      out.push_back(c);
      // A ']' right after '[' or '[^' is a literal member, not the end of the class.
      if (i + 1 < pattern.size() && pattern[i + 1] == '^') out.push_back(pattern[++i]);
      if (i + 1 < pattern.size() && pattern[i + 1] == ']') out.push_back(pattern[++i]);
      continue;
    }
    if (c == ']' && in_class) in_class = false;
    out.push_back(c);
  }
  return out;
}

// Byte length of the last char of non-empty `text`.
size_t LastCharLength(std::string_view text) {
  size_t start = text.size() - 1;
  while (start > 0 && text.size() - start < 4 &&
         (static_cast<uint8_t>(text[start]) & 0xC0) == 0x80) {
    --start;
  }
  std::string_view last = text.substr(start);
  return Utf8CharLength(last) == last.size() ? last.size() : 1;
}

// Whether one char is Unicode White_Space, which Oniguruma's \s matches (RE2's \s is ASCII).
bool IsWhitespace(std::string_view one_char) {
  if (NextUtf8(one_char).kind != Utf8Step::kValid) return false;
  const uint32_t c = DecodeCodePoint(one_char);
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
         c == 0x3000;
}

absl::Status Unsupported(const std::string& origin, std::string_view what,
                         const nlohmann::json& node) {
  auto type = node.find("type");
  std::string name =
      type != node.end() && type->is_string() ? type->get<std::string>() : JsonSnippet(node);
  return absl::UnimplementedError(
      absl::StrCat(origin, ": ", AsAbsl(what), " '", name, "' is not supported"));
}

absl::Status TooDeep(const std::string& origin, std::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(
      origin, ": ", AsAbsl(what), ": Sequences nest deeper than ", kMaxSequenceNesting));
}

// The string of a "pattern" member: {"String": s} or {"Regex": r}.
struct PatternSpec {
  bool regex;
  std::string text;
};
absl::StatusOr<PatternSpec> ReadPattern(const nlohmann::json& node, const std::string& origin,
                                        std::string_view where) {
  auto pattern = node.find("pattern");
  if (pattern != node.end() && pattern->is_object()) {
    for (const char* kind : {"String", "Regex"}) {
      auto text = pattern->find(kind);
      if (text != pattern->end() && text->is_string()) {
        return PatternSpec{std::string_view(kind) == "Regex", text->get<std::string>()};
      }
    }
  }
  return absl::InvalidArgumentError(absl::StrCat(
      origin, ": ", AsAbsl(where), ".pattern: expected {\"String\": ...} or {\"Regex\": ...}"));
}

}  // namespace

const std::array<std::string, 256>& ByteLevelChars() {
  static const std::array<std::string, 256> chars = [] {
    std::array<std::string, 256> table;
    uint32_t next_unprintable = 256;
    for (uint32_t byte = 0; byte < 256; ++byte) {
      const bool printable = (byte >= '!' && byte <= '~') || (byte >= 0xA1 && byte <= 0xAC) ||
                             (byte >= 0xAE && byte <= 0xFF);
      AppendCodePoint(printable ? byte : next_unprintable++, &table[byte]);
    }
    return table;
  }();
  return chars;
}

int ByteOfByteLevelChar(uint32_t code_point) {
  // The table maps onto U+0000..U+0143; its inverse fits an array.
  static const std::array<int, 324> bytes = [] {
    std::array<int, 324> table;
    table.fill(-1);
    for (int byte = 0; byte < 256; ++byte) {
      table[DecodeCodePoint(ByteLevelChars()[byte])] = byte;
    }
    return table;
  }();
  return code_point < bytes.size() ? bytes[code_point] : -1;
}

absl::StatusOr<SplitPattern> SplitPattern::Compile(std::string_view hf_pattern) {
  re2::RE2::Options options;
  options.set_log_errors(false);
  std::string translated = TranslatePattern(hf_pattern);
  auto regex = std::make_shared<const re2::RE2>(translated, options);
  if (!regex->ok()) {
    return absl::UnimplementedError(absl::StrCat("split pattern '", AsAbsl(hf_pattern),
                                                 "' is not supported by RE2: ", regex->error()));
  }
  SplitPattern pattern;
  auto group = regex->NamedCapturingGroups().find(std::string(kTrailingWhitespaceGroup));
  if (group != regex->NamedCapturingGroups().end())
    pattern.trailing_whitespace_group_ = group->second;
  pattern.regex_ = std::move(regex);
  return pattern;
}

void SplitPattern::Split(std::string_view text, std::vector<std::string_view>* pieces) const {
  re2::StringPiece match;
  size_t position = 0;
  while (position < text.size()) {
    // Without capture groups RE2 stays on its DFA, several times faster than with them. A
    // match that starts right here is the leftmost one, and finding it needs only the forward
    // DFA; these patterns nearly always have one, so the unanchored search is the fallback.
    if (!regex_->Match(text, position, text.size(), re2::RE2::ANCHOR_START, &match, 1) &&
        !regex_->Match(text, position, text.size(), re2::RE2::UNANCHORED, &match, 1)) {
      break;
    }
    const size_t begin = static_cast<size_t>(match.data() - text.data());
    size_t end = begin + match.size();
    if (end == begin) {
      // An empty match splits nothing: step over one char so the search moves on.
      end = std::min(text.size(), begin + Utf8CharLength(text.substr(begin)));
    } else if (end < text.size() && EndsInTrimmableWhitespace(text.substr(begin, end - begin))) {
      end -= LastCharLength(text.substr(begin, end - begin));
    }
    if (begin > position) pieces->push_back(text.substr(position, begin - position));
    pieces->push_back(text.substr(begin, end - begin));
    position = end;
  }
  if (position < text.size()) pieces->push_back(text.substr(position));
}

bool SplitPattern::EndsInTrimmableWhitespace(std::string_view match) const {
  if (trailing_whitespace_group_ < 0) return false;
  const size_t last = LastCharLength(match);
  if (last == match.size() || !IsWhitespace(match.substr(match.size() - last))) return false;
  // A run of whitespace before a non-space: trimmed only when it is the rewritten `\s+(?!\S)`
  // that matched (an earlier alternative, such as Llama 3's `\s*[\r\n]+`, keeps it whole).
  // Matching the same span again, the same alternative wins: leftmost-first takes the first
  // alternative that matches at a position, whatever its length.
  std::vector<re2::StringPiece> groups(static_cast<size_t>(trailing_whitespace_group_) + 1);
  return regex_->Match(match, 0, match.size(), re2::RE2::ANCHOR_BOTH, groups.data(),
                       static_cast<int>(groups.size())) &&
         groups.back().data() != nullptr;
}

absl::StatusOr<PreTokenizer> PreTokenizer::FromJson(const nlohmann::json& normalizer,
                                                    const nlohmann::json& pre_tokenizer,
                                                    const std::string& origin) {
  PreTokenizer result;
  RETURN_IF_ERROR(ParseNormalizer(normalizer, origin, 0, &result.steps_));
  RETURN_IF_ERROR(ParsePreTokenizer(pre_tokenizer, origin, 0, &result.steps_));
  return result;
}

absl::Status PreTokenizer::ParseNormalizer(const nlohmann::json& node, const std::string& origin,
                                           int depth, std::vector<Step>* steps) {
  if (node.is_null()) return absl::OkStatus();
  if (!node.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(origin, ": normalizer: expected an object"));
  }
  const std::string type = node.value("type", "");
  if (type == "Sequence") {
    if (depth >= kMaxSequenceNesting) return TooDeep(origin, "normalizer");
    auto list = node.find("normalizers");
    if (list == node.end() || !list->is_array()) {
      return absl::InvalidArgumentError(
          absl::StrCat(origin, ": normalizer.normalizers: expected a list"));
    }
    for (const nlohmann::json& child : *list) {
      RETURN_IF_ERROR(ParseNormalizer(child, origin, depth + 1, steps));
    }
    return absl::OkStatus();
  }
  if (type == "Prepend") {
    Step step = MakeStep(Step::kPrepend, node.value("prepend", ""));
    steps->push_back(std::move(step));
    return absl::OkStatus();
  }
  if (type == "Replace") {
    ASSIGN_OR_RETURN(PatternSpec pattern, ReadPattern(node, origin, "normalizer"));
    if (pattern.regex || pattern.text.empty()) return Unsupported(origin, "regex normalizer", node);
    Step step = MakeStep(Step::kReplace, pattern.text);
    step.replacement = node.value("content", "");
    steps->push_back(std::move(step));
    return absl::OkStatus();
  }
  if (type == "NFC") {
    steps->push_back(MakeStep(Step::kNfc));
    return absl::OkStatus();
  }
  return Unsupported(origin, "normalizer", node);
}

absl::Status PreTokenizer::ParsePreTokenizer(const nlohmann::json& node, const std::string& origin,
                                             int depth, std::vector<Step>* steps) {
  if (node.is_null()) return absl::OkStatus();
  if (!node.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(origin, ": pre_tokenizer: expected an object"));
  }
  const std::string type = node.value("type", "");
  if (type == "Sequence") {
    if (depth >= kMaxSequenceNesting) return TooDeep(origin, "pre_tokenizer");
    auto list = node.find("pretokenizers");
    if (list == node.end() || !list->is_array()) {
      return absl::InvalidArgumentError(
          absl::StrCat(origin, ": pre_tokenizer.pretokenizers: expected a list"));
    }
    for (const nlohmann::json& child : *list) {
      RETURN_IF_ERROR(ParsePreTokenizer(child, origin, depth + 1, steps));
    }
    return absl::OkStatus();
  }
  if (type == "Split") {
    ASSIGN_OR_RETURN(PatternSpec pattern, ReadPattern(node, origin, "pre_tokenizer"));
    if (node.value("behavior", "Isolated") != "Isolated" || node.value("invert", false)) {
      return absl::UnimplementedError(absl::StrCat(
          origin, ": pre_tokenizer Split: only behavior \"Isolated\" without invert is supported"));
    }
    std::string regex = pattern.regex ? pattern.text : re2::RE2::QuoteMeta(pattern.text);
    absl::StatusOr<SplitPattern> compiled = SplitPattern::Compile(regex);
    if (!compiled.ok()) return Annotate(compiled.status(), origin + ": pre_tokenizer Split");
    Step step = MakeStep(Step::kSplit);
    step.patterns.push_back(*std::move(compiled));
    steps->push_back(std::move(step));
    return absl::OkStatus();
  }
  if (type == "ByteLevel") {
    Step step = MakeStep(Step::kByteLevel);
    step.add_prefix_space = node.value("add_prefix_space", false);
    if (node.value("use_regex", true)) {
      absl::StatusOr<SplitPattern> compiled = SplitPattern::Compile(kGpt2SplitPattern);
      if (!compiled.ok()) return Annotate(compiled.status(), origin + ": pre_tokenizer ByteLevel");
      step.patterns.push_back(*std::move(compiled));
    }
    steps->push_back(std::move(step));
    return absl::OkStatus();
  }
  if (type == "Metaspace") {
    Step step = MakeStep(Step::kMetaspace, node.value("replacement", "\xE2\x96\x81"));
    if (step.text.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(origin, ": pre_tokenizer Metaspace: empty replacement"));
    }
    step.split = node.value("split", true);
    // Newer files name a prepend_scheme; older ones say add_prefix_space.
    std::string scheme = node.contains("prepend_scheme") && node["prepend_scheme"].is_string()
                             ? node["prepend_scheme"].get<std::string>()
                             : (node.value("add_prefix_space", true) ? "always" : "never");
    if (scheme == "always") {
      step.prepend = Step::kAlways;
    } else if (scheme == "first") {
      step.prepend = Step::kFirst;
    } else if (scheme == "never") {
      step.prepend = Step::kNever;
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat(origin, ": pre_tokenizer Metaspace: unknown prepend_scheme '", scheme, "'"));
    }
    steps->push_back(std::move(step));
    return absl::OkStatus();
  }
  return Unsupported(origin, "pre_tokenizer", node);
}

void PreTokenizer::Apply(const Step& step, std::vector<Piece>* pieces) {
  std::vector<Piece> next;
  auto split_into = [](const SplitPattern& pattern, const Piece& piece, std::vector<Piece>* out) {
    std::vector<std::string_view> parts;
    pattern.Split(piece.text, &parts);
    for (size_t i = 0; i < parts.size(); ++i) {
      out->push_back({std::string(parts[i]), piece.at_start && i == 0});
    }
  };
  for (Piece& piece : *pieces) {
    switch (step.kind) {
      case Step::kPrepend:
        if (!piece.text.empty()) piece.text.insert(0, step.text);
        next.push_back(std::move(piece));
        break;
      case Step::kReplace:
        piece.text = absl::StrReplaceAll(piece.text, {{step.text, step.replacement}});
        next.push_back(std::move(piece));
        break;
      case Step::kNfc:
        piece.text = ToNfc(piece.text);
        next.push_back(std::move(piece));
        break;
      case Step::kSplit:
        split_into(step.patterns.front(), piece, &next);
        break;
      case Step::kByteLevel: {
        if (step.add_prefix_space && !piece.text.starts_with(' ')) piece.text.insert(0, " ");
        std::vector<Piece> words;
        if (step.patterns.empty()) {
          words.push_back(std::move(piece));
        } else {
          split_into(step.patterns.front(), piece, &words);
        }
        for (Piece& word : words) {
          std::string mapped;
          for (char byte : word.text) mapped += ByteLevelChars()[static_cast<uint8_t>(byte)];
          next.push_back({std::move(mapped), word.at_start});
        }
        break;
      }
      case Step::kMetaspace: {
        std::string text = absl::StrReplaceAll(piece.text, {{" ", step.text}});
        const bool prepend =
            step.prepend == Step::kAlways || (step.prepend == Step::kFirst && piece.at_start);
        if (prepend && !text.starts_with(step.text)) text.insert(0, step.text);
        if (!step.split) {
          next.push_back({std::move(text), piece.at_start});
          break;
        }
        // Each occurrence of the replacement starts a new word ("MergedWithNext").
        size_t start = 0;
        while (start < text.size()) {
          size_t cut = text.find(step.text, start + 1);
          if (cut == std::string::npos) cut = text.size();
          next.push_back({text.substr(start, cut - start), piece.at_start && start == 0});
          start = cut;
        }
        break;
      }
    }
  }
  *pieces = std::move(next);
}

void PreTokenizer::Split(std::string_view segment, size_t segment_offset,
                         std::vector<std::string>* words) const {
  std::vector<Piece> pieces;
  pieces.push_back({std::string(segment), segment_offset == 0});
  for (const Step& step : steps_) Apply(step, &pieces);
  for (Piece& piece : pieces) {
    if (!piece.text.empty()) words->push_back(std::move(piece.text));
  }
}

}  // namespace muxserve::model
