// The normalizer and pre-tokenizer stages of an HF tokenizer.json, which turn the text between
// added tokens into the words BPE merges within. Supported: normalizers Prepend, Replace (string
// patterns), NFC and Sequence; pre-tokenizers ByteLevel, Split (regex, "Isolated"), Metaspace and
// Sequence. Anything else is UNIMPLEMENTED naming its type.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "re2/re2.h"

namespace muxserve::model {

// GPT-2's bytes_to_unicode: printable bytes map to the same code point, the others to U+0100
// onwards in byte order. Each entry is the UTF-8 text of one byte's char.
const std::array<std::string, 256>& ByteLevelChars();
// The byte a byte-level char stands for, or -1 when `code_point` is not one of them.
int ByteOfByteLevelChar(uint32_t code_point);

// Sequences nested deeper than this in tokenizer.json are rejected.
inline constexpr int kMaxSequenceNesting = 8;

// GPT-2's pre-tokenizer pattern (ByteLevel with use_regex).
inline constexpr std::string_view kGpt2SplitPattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// A split pattern compiled for RE2. HF patterns are Oniguruma regexes: their one lookahead,
// `\s+(?!\S)` (a run of whitespace that leaves its last char to the next word), becomes a named
// group whose matches Split() trims by hand, and `\s` widens to Unicode's whitespace.
class SplitPattern {
 public:
  static absl::StatusOr<SplitPattern> Compile(std::string_view hf_pattern);
  // Splits `text` into matches and the text between them ("Isolated"); no piece is empty.
  void Split(std::string_view text, std::vector<std::string_view>* pieces) const;

 private:
  // Whether a match that ends before more text is the rewritten `\s+(?!\S)` matching two or
  // more whitespace chars, whose last char then goes to the next piece.
  bool EndsInTrimmableWhitespace(std::string_view match) const;

  std::shared_ptr<const re2::RE2> regex_;
  int trailing_whitespace_group_ = -1;  // capture group of the rewritten `\s+(?!\S)`, or -1
};

class PreTokenizer {
 public:
  // `normalizer` and `pre_tokenizer` are the members of tokenizer.json (null when absent).
  static absl::StatusOr<PreTokenizer> FromJson(const nlohmann::json& normalizer,
                                               const nlohmann::json& pre_tokenizer,
                                               const std::string& origin);

  // Appends the words of `segment`, text between added tokens that starts at byte
  // `segment_offset` of the whole input (Metaspace's "first" scheme prepends only at offset 0).
  void Split(std::string_view segment, size_t segment_offset,
             std::vector<std::string>* words) const;

 private:
  struct Step {
    enum Kind { kPrepend, kReplace, kNfc, kSplit, kByteLevel, kMetaspace };
    Kind kind = kSplit;
    std::string text;         // kPrepend: the prefix; kReplace: the pattern; kMetaspace: "▁"
    std::string replacement;  // kReplace
    bool add_prefix_space = false;                               // kByteLevel
    bool split = false;                                          // kMetaspace
    enum Prepend { kAlways, kFirst, kNever } prepend = kAlways;  // kMetaspace
    std::vector<SplitPattern> patterns;  // kSplit, or kByteLevel with use_regex
  };
  static Step MakeStep(Step::Kind kind, std::string text = "") {
    Step step;
    step.kind = kind;
    step.text = std::move(text);
    return step;
  }
  struct Piece {
    std::string text;
    bool at_start;  // begins at offset 0 of the whole input
  };

  // `depth` counts enclosing Sequences, bounded so that a hostile file cannot nest without end.
  static absl::Status ParseNormalizer(const nlohmann::json& node, const std::string& origin,
                                      int depth, std::vector<Step>* steps);
  static absl::Status ParsePreTokenizer(const nlohmann::json& node, const std::string& origin,
                                        int depth, std::vector<Step>* steps);
  static void Apply(const Step& step, std::vector<Piece>* pieces);

  // Normalizer steps first, then pre-tokenizer steps: before any split the normalizer's one
  // piece is the whole segment, as HF normalizes it.
  std::vector<Step> steps_;
};

}  // namespace muxserve::model
