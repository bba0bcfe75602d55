#include "cli_tokenize.h"

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "cli_table.h"
#include "fmt/core.h"
#include "muxserve/model/tokenizer.h"
#include "nlohmann/json.hpp"

namespace muxserve::cli {
namespace {

struct TokenizeFlags {
  std::filesystem::path model_dir;
  std::optional<std::string> text;
  bool add_bos = false;
  bool show_pieces = false;
};

struct DetokenizeFlags {
  std::filesystem::path model_dir;
  std::string ids;
  bool skip_special = false;
};

std::unique_ptr<model::Tokenizer> LoadTokenizer(const std::filesystem::path& model_dir) {
  absl::StatusOr<std::unique_ptr<model::Tokenizer>> tokenizer = model::Tokenizer::Load(model_dir);
  if (!tokenizer.ok()) {
    fmt::print(stderr, "error: {}\n", std::string(tokenizer.status().message()));
    return nullptr;
  }
  return *std::move(tokenizer);
}

// A token's text for display, quoted so that spaces and newlines show: JSON escapes when it is
// whole UTF-8, C escapes of every byte when it is part of a char split across tokens.
std::string QuotedPiece(const model::Tokenizer& tokenizer, int32_t id) {
  const std::string bytes = tokenizer.TokenBytes(id, /*previous=*/0);
  try {
    return nlohmann::json(bytes).dump();
  } catch (const nlohmann::json::type_error&) {
    return absl::StrCat("\"", absl::CHexEscape(bytes), "\"");
  }
}

int RunTokenize(const TokenizeFlags& flags) {
  std::unique_ptr<model::Tokenizer> tokenizer = LoadTokenizer(flags.model_dir);
  if (tokenizer == nullptr) return 1;
  // Without --text, all of stdin is the text (its bytes as they are, newlines included).
  const std::string text =
      flags.text.has_value()
          ? *flags.text
          : std::string(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
  const std::vector<int32_t> ids = tokenizer->Encode(text, flags.add_bos);
  if (!flags.show_pieces) {
    fmt::print("{}\n", absl::StrJoin(ids, ","));
    return 0;
  }
  std::vector<std::vector<std::string>> rows;
  for (int32_t id : ids) {
    rows.push_back({std::to_string(id), QuotedPiece(*tokenizer, id),
                    tokenizer->IsSpecial(id) ? "special" : ""});
  }
  PrintTable(stdout, {"ID", "TOKEN", ""}, rows);
  fmt::print("{} tokens, {} bytes\n", ids.size(), text.size());
  return 0;
}

int RunDetokenize(const DetokenizeFlags& flags) {
  std::unique_ptr<model::Tokenizer> tokenizer = LoadTokenizer(flags.model_dir);
  if (tokenizer == nullptr) return 1;
  std::vector<int32_t> ids;
  // Commas, spaces or both separate the ids, so tokenize's output can be pasted back.
  for (absl::string_view field :
       absl::StrSplit(flags.ids, absl::ByAnyChar(", \t\n"), absl::SkipEmpty())) {
    int32_t id = 0;
    if (!absl::SimpleAtoi(field, &id) || id < 0 || id >= tokenizer->vocab_size()) {
      fmt::print(stderr, "error: --ids: '{}' is not a token id in [0, {})\n", std::string(field),
                 tokenizer->vocab_size());
      return 1;
    }
    ids.push_back(id);
  }
  fmt::print("{}\n", tokenizer->Decode(ids, flags.skip_special));
  return 0;
}

}  // namespace

void AddTokenizeCommands(CLI::App& app, int* exit_code) {
  auto tokenize_flags = std::make_shared<TokenizeFlags>();
  CLI::App* tokenize = app.add_subcommand(
      "tokenize", "Print the token ids of a text with a model directory's tokenizer");
  tokenize->add_option("--model-dir", tokenize_flags->model_dir, "HF model directory")->required();
  tokenize->add_option("--text", tokenize_flags->text, "The text (default: all of stdin)");
  tokenize->add_flag("--add-bos", tokenize_flags->add_bos,
                     "Prepend BOS when the tokenizer's config asks for it");
  tokenize->add_flag("--pieces", tokenize_flags->show_pieces,
                     "A table of ids with each token's text instead of the id list");
  tokenize->callback([tokenize_flags, exit_code] { *exit_code = RunTokenize(*tokenize_flags); });

  auto detokenize_flags = std::make_shared<DetokenizeFlags>();
  CLI::App* detokenize = app.add_subcommand(
      "detokenize", "Print the text of token ids with a model directory's tokenizer");
  detokenize->add_option("--model-dir", detokenize_flags->model_dir, "HF model directory")
      ->required();
  detokenize->add_option("--ids", detokenize_flags->ids, "Token ids, e.g. 1,2,3")->required();
  detokenize->add_flag("--skip-special", detokenize_flags->skip_special,
                       "Leave special tokens out");
  detokenize->callback(
      [detokenize_flags, exit_code] { *exit_code = RunDetokenize(*detokenize_flags); });
}

}  // namespace muxserve::cli
