#include "muxserve/model/tokenizer.h"

#include <random>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "test_util.h"
#include "utf8.h"

namespace muxserve::model {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

const nlohmann::json& Golden() {
  static const nlohmann::json golden =
      nlohmann::json::parse(testing::ReadFile(testing::TestDataDir() / "golden.json"));
  return golden;
}

std::unique_ptr<Tokenizer> LoadFixture(const std::string& name) {
  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer =
      Tokenizer::Load(testing::TestDataDir() / name);
  EXPECT_TRUE(tokenizer.ok()) << tokenizer.status();
  return tokenizer.ok() ? *std::move(tokenizer) : nullptr;
}

// A copy of a fixture's tokenizer.json in a fresh directory, edited by `edit`, with more files.
void WriteEditedFixture(const std::filesystem::path& dir, const std::string& name,
                        const std::function<void(nlohmann::json&)>& edit) {
  nlohmann::json root =
      nlohmann::json::parse(testing::ReadFile(testing::TestDataDir() / name / "tokenizer.json"));
  edit(root);
  testing::WriteFile(dir / "tokenizer.json", root.dump());
}

// Each fixture against the ids, and decoded text, that HF tokenizers gives (make_golden.py).
class TokenizerGoldenTest : public ::testing::TestWithParam<std::string> {};

TEST_P(TokenizerGoldenTest, MatchesHuggingFace) {
  std::unique_ptr<Tokenizer> tokenizer = LoadFixture(GetParam());
  ASSERT_NE(tokenizer, nullptr);
  const nlohmann::json& tests = Golden()["tests"];
  const nlohmann::json& encodings = Golden()["encodings"][GetParam()];
  ASSERT_EQ(tests.size(), encodings.size());
  for (size_t i = 0; i < tests.size(); ++i) {
    const std::string text = tests[i].get<std::string>();
    const std::vector<int32_t> expected = encodings[i]["ids"].get<std::vector<int32_t>>();
    std::vector<int32_t> ids = tokenizer->Encode(text, /*add_bos=*/false);
    EXPECT_EQ(ids, expected) << "text: \"" << text << "\"";
    EXPECT_EQ(tokenizer->Decode(expected, /*skip_special=*/false),
              encodings[i]["decoded"].get<std::string>())
        << "text: \"" << text << "\"";
    EXPECT_EQ(tokenizer->Decode(expected, /*skip_special=*/true),
              encodings[i]["decoded_skip"].get<std::string>())
        << "text: \"" << text << "\"";
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, TokenizerGoldenTest,
                         ::testing::Values("byte_level", "qwen2", "gpt2", "llama2", "metaspace"));

TEST(TokenizerTest, ByteLevelRoundTripsAnyText) {
  std::unique_ptr<Tokenizer> tokenizer = LoadFixture("byte_level");
  ASSERT_NE(tokenizer, nullptr);
  for (std::string text :
       {"plain ASCII, with punctuation: (a+b)*c; 42!", "Grüße, naïve café — “quotes”",
        "中文字符和日本語のかな", "emoji 🦀🚀 with ZWJ 👩‍💻 and flags 🇫🇷",
        "mixed\r\n line\tendings \n\n  ", "<|im_start|>system\nbe brief<|im_end|>"}) {
    EXPECT_EQ(tokenizer->Decode(tokenizer->Encode(text, false), false), text);
  }
  // Ill-formed UTF-8 in the input still encodes: each byte keeps its byte-level token.
  const std::string broken = "ok \xC3 then \xFF\xFE end";
  std::vector<int32_t> ids = tokenizer->Encode(broken, false);
  std::string bytes;
  for (int32_t id : ids) bytes += tokenizer->TokenBytes(id, -1);
  EXPECT_EQ(bytes, broken);
}

// Random text from a palette of ASCII, whitespace, multi-byte chars and marker fragments.
std::string RandomText(std::mt19937& random) {
  static const std::vector<std::string> kPalette = {
      "a", "Z",  "7", " ", "  ", "\n",     "\t",     "\r\n",       "'s",     ".",      "<",
      "|", "im", "é", "ß", "中", "\u3000", "\u00a0", "\U0001F600", "\u200d", "\u0301", "_"};
  std::string text;
  const int length = std::uniform_int_distribution<int>(0, 30)(random);
  for (int i = 0; i < length; ++i) {
    text += kPalette[std::uniform_int_distribution<size_t>(0, kPalette.size() - 1)(random)];
  }
  return text;
}

// As in HF: Metaspace with prepend_scheme "first" adds no "▁" before a leading space, yet the
// decoder strips one, so only text that starts with a space loses a char (Mistral v0.3 too).
TEST(TokenizerTest, RandomTextRoundTrips) {
  for (const char* name : {"byte_level", "gpt2", "llama2", "metaspace"}) {
    std::unique_ptr<Tokenizer> tokenizer = LoadFixture(name);
    ASSERT_NE(tokenizer, nullptr);
    std::mt19937 random(99);
    for (int trial = 0; trial < 300; ++trial) {
      const std::string text = RandomText(random);
      const std::string decoded = tokenizer->Decode(tokenizer->Encode(text, false), false);
      if (std::string_view(name) == "metaspace" && text.starts_with(' ')) {
        EXPECT_EQ(decoded, text.substr(1));
      } else {
        EXPECT_EQ(decoded, text) << name;
      }
    }
  }
}

TEST(TokenizerTest, RandomBytesNeverBreakByteLevelEncoding) {
  std::unique_ptr<Tokenizer> tokenizer = LoadFixture("byte_level");
  ASSERT_NE(tokenizer, nullptr);
  std::mt19937 random(3);
  std::uniform_int_distribution<int> byte(0, 255);
  for (int trial = 0; trial < 300; ++trial) {
    std::string text(std::uniform_int_distribution<size_t>(0, 40)(random), '\0');
    for (char& c : text) c = static_cast<char>(byte(random));
    std::string bytes;
    for (int32_t id : tokenizer->Encode(text, false)) bytes += tokenizer->TokenBytes(id, -1);
    EXPECT_EQ(bytes, text);
  }
}

TEST(TokenizerTest, SpecialTokensAreNeverSplit) {
  for (const char* name : {"byte_level", "qwen2", "gpt2", "llama2", "metaspace"}) {
    std::unique_ptr<Tokenizer> tokenizer = LoadFixture(name);
    ASSERT_NE(tokenizer, nullptr);
    std::optional<int32_t> im_start = tokenizer->TokenId("<|im_start|>");
    std::optional<int32_t> im_end = tokenizer->TokenId("<|im_end|>");
    ASSERT_TRUE(im_start.has_value() && im_end.has_value());
    EXPECT_TRUE(tokenizer->IsSpecial(*im_start));
    std::vector<int32_t> ids = tokenizer->Encode("x<|im_start|><|im_end|>y<|im_start|>", false);
    EXPECT_EQ(std::count(ids.begin(), ids.end(), *im_start), 2) << name;
    EXPECT_EQ(std::count(ids.begin(), ids.end(), *im_end), 1) << name;
    // An incomplete marker is ordinary text.
    ids = tokenizer->Encode("<|im_start", false);
    EXPECT_EQ(std::count(ids.begin(), ids.end(), *im_start), 0) << name;
    EXPECT_EQ(tokenizer->Decode(ids, true), "<|im_start") << name;
  }
}

TEST(TokenizerTest, ByteFallbackDecodesLeadingSpaceOnlyAtTheStart) {
  std::unique_ptr<Tokenizer> tokenizer = LoadFixture("llama2");
  ASSERT_NE(tokenizer, nullptr);
  std::vector<int32_t> ids = tokenizer->Encode("Hello world", false);
  ASSERT_FALSE(ids.empty());
  const std::string first = tokenizer->TokenBytes(ids[0], -1);  // "▁Hello▁wor"
  EXPECT_TRUE(first.starts_with("Hello ")) << first;
  EXPECT_EQ(tokenizer->TokenBytes(ids[0], 5), " " + first);
  // "☃" is not in the vocabulary: three <0xNN> tokens, each one raw byte.
  ids = tokenizer->Encode("\u2603", false);
  std::vector<std::string> bytes;
  for (int32_t id : ids) bytes.push_back(tokenizer->TokenBytes(id, 1));
  EXPECT_THAT(bytes, ElementsAre(" ", "\xE2", "\x98", "\x83"));
  EXPECT_EQ(tokenizer->Decode(ids, false), "\u2603");
}

// Concatenating StreamDecoder output gives Decode of all ids, whatever the ids.
void ExpectStreamMatchesDecode(const Tokenizer& tokenizer, const std::vector<int32_t>& ids,
                               bool skip_special) {
  StreamDecoder stream(&tokenizer, skip_special);
  std::string streamed;
  for (int32_t id : ids) {
    std::string piece = stream.Push(id);
    // Every piece is complete, valid UTF-8 on its own.
    std::string valid;
    EXPECT_EQ(AppendLossyUtf8(piece, /*final=*/false, &valid), piece.size());
    EXPECT_EQ(valid, piece);
    streamed += piece;
  }
  streamed += stream.Flush();
  EXPECT_EQ(streamed, tokenizer.Decode(ids, skip_special));
}

TEST(TokenizerTest, StreamDecoderMatchesDecodeOnRandomIds) {
  for (const char* name : {"byte_level", "qwen2", "gpt2", "llama2", "metaspace"}) {
    std::unique_ptr<Tokenizer> tokenizer = LoadFixture(name);
    ASSERT_NE(tokenizer, nullptr);
    std::mt19937 random(123);
    std::uniform_int_distribution<int32_t> any_id(0, tokenizer->vocab_size() - 1);
    for (int trial = 0; trial < 200; ++trial) {
      std::vector<int32_t> ids(std::uniform_int_distribution<int>(0, 24)(random));
      for (int32_t& id : ids) id = any_id(random);
      ExpectStreamMatchesDecode(*tokenizer, ids, trial % 2 == 0);
    }
  }
}

TEST(TokenizerTest, StreamDecoderHoldsMultiByteCharsSplitAcrossTokens) {
  std::unique_ptr<Tokenizer> tokenizer = LoadFixture("gpt2");
  ASSERT_NE(tokenizer, nullptr);
  // A Gothic letter unseen in training stays four byte-level tokens.
  std::vector<int32_t> ids = tokenizer->Encode("a\U00010348b", false);
  ASSERT_EQ(ids.size(), 6u);
  StreamDecoder stream(tokenizer.get(), false);
  EXPECT_EQ(stream.Push(ids[0]), "a");
  EXPECT_EQ(stream.Push(ids[1]), "");
  EXPECT_EQ(stream.Push(ids[2]), "");
  EXPECT_EQ(stream.Push(ids[3]), "");
  EXPECT_EQ(stream.Push(ids[4]), "\U00010348");
  EXPECT_EQ(stream.Push(ids[5]), "b");
  EXPECT_EQ(stream.Flush(), "");

  // Cut short: the held bytes become one U+FFFD at the end, as Decode gives.
  StreamDecoder cut(tokenizer.get(), false);
  EXPECT_EQ(cut.Push(ids[0]), "a");
  EXPECT_EQ(cut.Push(ids[1]), "");
  EXPECT_EQ(cut.Push(ids[2]), "");
  EXPECT_EQ(cut.Flush(), "\uFFFD");
  EXPECT_EQ(tokenizer->Decode(std::vector<int32_t>(ids.begin(), ids.begin() + 3), false),
            "a\uFFFD");
  // A broken sequence followed by more text is replaced as soon as it is known to be broken.
  StreamDecoder broken(tokenizer.get(), false);
  EXPECT_EQ(broken.Push(ids[1]), "");
  EXPECT_EQ(broken.Push(ids[5]), "\uFFFDb");
}

TEST(TokenizerTest, StreamDecoderStripsTheFirstSpaceOnce) {
  std::unique_ptr<Tokenizer> tokenizer = LoadFixture("llama2");
  ASSERT_NE(tokenizer, nullptr);
  std::vector<int32_t> ids = tokenizer->Encode("Hello world", false);
  StreamDecoder stream(tokenizer.get(), true);
  std::string text = stream.Push(1);  // <s>, skipped
  for (int32_t id : ids) text += stream.Push(id);
  EXPECT_EQ(text + stream.Flush(), "Hello world");
}

TEST(TokenizerTest, ConfigsSetBosEosAndChatTemplate) {
  testing::TempDir dir;
  WriteEditedFixture(dir.path(), "llama2", [](nlohmann::json&) {});
  testing::WriteFile(dir.path() / "tokenizer_config.json", R"({
    "add_bos_token": true, "add_eos_token": false,
    "bos_token": {"__type": "AddedToken", "content": "<s>", "special": true},
    "eos_token": "</s>",
    "chat_template": [{"name": "tool_use", "template": "tools"},
                      {"name": "default", "template": "{{ '[INST] ' }}"}]})");
  testing::WriteFile(dir.path() / "generation_config.json", R"({"eos_token_id": [2, 701]})");
  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer = Tokenizer::Load(dir.path());
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  EXPECT_EQ((*tokenizer)->bos_id(), 1);
  EXPECT_THAT((*tokenizer)->eos_ids(), ElementsAre(2, 701));
  EXPECT_EQ((*tokenizer)->chat_template(), "{{ '[INST] ' }}");
  std::vector<int32_t> ids = (*tokenizer)->Encode("Hello", true);
  ASSERT_FALSE(ids.empty());
  EXPECT_EQ(ids[0], 1);
  EXPECT_EQ((*tokenizer)->Encode("Hello", false).size() + 1, ids.size());
  EXPECT_EQ((*tokenizer)->Decode(ids, true), "Hello");
  EXPECT_EQ((*tokenizer)->Decode(ids, false), "<s> Hello");
}

TEST(TokenizerTest, BosFromPostProcessorWhenConfigIsSilent) {
  testing::TempDir dir;
  WriteEditedFixture(dir.path(), "byte_level", [](nlohmann::json& root) {
    root["post_processor"] = {{"type", "Sequence"},
                              {"processors",
                               {{{"type", "ByteLevel"}},
                                {{"type", "TemplateProcessing"},
                                 {"single",
                                  {{{"SpecialToken", {{"id", "<|endoftext|>"}, {"type_id", 0}}}},
                                   {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}}}}}};
  });
  testing::WriteFile(dir.path() / "tokenizer_config.json",
                     R"({"bos_token": "<|endoftext|>", "eos_token": "<|im_end|>"})");
  testing::WriteFile(dir.path() / "chat_template.jinja", "<|im_start|>{{ x }}");
  auto tokenizer = Tokenizer::Load(dir.path());
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  EXPECT_EQ((*tokenizer)->Encode("hi", true)[0], 0);
  EXPECT_EQ((*tokenizer)->Encode("hi", false)[0], (*tokenizer)->Encode("hi", true)[1]);
  EXPECT_THAT((*tokenizer)->eos_ids(), ElementsAre(2));
  EXPECT_EQ((*tokenizer)->chat_template(), "<|im_start|>{{ x }}");
}

TEST(TokenizerTest, WithoutConfigsThereIsNoBos) {
  std::unique_ptr<Tokenizer> tokenizer = LoadFixture("llama2");
  ASSERT_NE(tokenizer, nullptr);
  EXPECT_FALSE(tokenizer->bos_id().has_value());
  EXPECT_TRUE(tokenizer->eos_ids().empty());
  EXPECT_TRUE(tokenizer->chat_template().empty());
  EXPECT_EQ(tokenizer->Encode("Hello", true), tokenizer->Encode("Hello", false));
  EXPECT_EQ(tokenizer->vocab_size(), 702);
  EXPECT_EQ(tokenizer->TokenId("<0x41>"), 68);
  EXPECT_FALSE(tokenizer->TokenId("not a token").has_value());
  EXPECT_FALSE(tokenizer->IsSpecial(68));
  EXPECT_FALSE(tokenizer->IsSpecial(-1));
  EXPECT_EQ(tokenizer->TokenBytes(-1, -1), "");
  EXPECT_EQ(tokenizer->TokenBytes(100000, -1), "");
}

struct LoadErrorCase {
  std::string name;
  std::function<void(nlohmann::json&)> edit;
  absl::StatusCode code;
  std::string expected;
  friend void PrintTo(const LoadErrorCase& c, std::ostream* os) { *os << c.name; }
};

class TokenizerLoadErrorTest : public ::testing::TestWithParam<LoadErrorCase> {};

TEST_P(TokenizerLoadErrorTest, IsAClearError) {
  testing::TempDir dir;
  WriteEditedFixture(dir.path(), "gpt2", GetParam().edit);
  auto tokenizer = Tokenizer::Load(dir.path());
  ASSERT_FALSE(tokenizer.ok());
  EXPECT_EQ(tokenizer.status().code(), GetParam().code) << tokenizer.status();
  EXPECT_THAT(std::string(tokenizer.status().message()), HasSubstr(GetParam().expected));
  EXPECT_THAT(std::string(tokenizer.status().message()), HasSubstr(dir.path().string()));
}

INSTANTIATE_TEST_SUITE_P(
    Cases, TokenizerLoadErrorTest,
    ::testing::Values(
        LoadErrorCase{"UnigramModel", [](nlohmann::json& r) { r["model"]["type"] = "Unigram"; },
                      absl::StatusCode::kUnimplemented, "'model.type': 'Unigram'"},
        LoadErrorCase{"NoModel", [](nlohmann::json& r) { r.erase("model"); },
                      absl::StatusCode::kInvalidArgument, "'model'"},
        LoadErrorCase{"NoVocab", [](nlohmann::json& r) { r["model"].erase("vocab"); },
                      absl::StatusCode::kInvalidArgument, "'model.vocab'"},
        LoadErrorCase{"VocabIdNotInteger",
                      [](nlohmann::json& r) { r["model"]["vocab"]["zz"] = "seven"; },
                      absl::StatusCode::kInvalidArgument, "token 'zz' has a non-integer id"},
        LoadErrorCase{"VocabIdHuge",
                      [](nlohmann::json& r) { r["model"]["vocab"]["zz"] = int64_t{1} << 40; },
                      absl::StatusCode::kInvalidArgument, "token 'zz' has id"},
        LoadErrorCase{"MergeOfUnknownToken",
                      [](nlohmann::json& r) { r["model"]["merges"][3] = "qq@ ww@"; },
                      absl::StatusCode::kInvalidArgument,
                      "'model.merges[3]': 'qq@' is not in the vocabulary"},
        LoadErrorCase{"MalformedMerge", [](nlohmann::json& r) { r["model"]["merges"][0] = "abc"; },
                      absl::StatusCode::kInvalidArgument, "'model.merges[0]': expected"},
        LoadErrorCase{"WordPieceDecoder",
                      [](nlohmann::json& r) {
                        r["decoder"] = {{"type", "WordPiece"}};
                      },
                      absl::StatusCode::kUnimplemented, "decoder 'WordPiece'"},
        LoadErrorCase{"NoDecoder", [](nlohmann::json& r) { r["decoder"] = nullptr; },
                      absl::StatusCode::kInvalidArgument, "decoder"},
        LoadErrorCase{"WhitespacePreTokenizer",
                      [](nlohmann::json& r) {
                        r["pre_tokenizer"] = {{"type", "Whitespace"}};
                      },
                      absl::StatusCode::kUnimplemented, "pre_tokenizer 'Whitespace'"},
        LoadErrorCase{"LookbehindPattern",
                      [](nlohmann::json& r) {
                        r["pre_tokenizer"] = {{"type", "Split"},
                                              {"pattern", {{"Regex", "(?<=a)b"}}},
                                              {"behavior", "Isolated"}};
                      },
                      absl::StatusCode::kUnimplemented, "not supported by RE2"},
        LoadErrorCase{"LowercaseNormalizer",
                      [](nlohmann::json& r) {
                        r["normalizer"] = {{"type", "Lowercase"}};
                      },
                      absl::StatusCode::kUnimplemented, "normalizer 'Lowercase'"},
        LoadErrorCase{"AddedTokenWithoutContent",
                      [](nlohmann::json& r) { r["added_tokens"][1].erase("content"); },
                      absl::StatusCode::kInvalidArgument, "'added_tokens[1]'"},
        LoadErrorCase{"EndlesslyNestedSequences",
                      [](nlohmann::json& r) {
                        nlohmann::json node = {{"type", "ByteLevel"}};
                        for (int i = 0; i < 50; ++i) {
                          node = {{"type", "Sequence"}, {"decoders", {node}}};
                        }
                        r["decoder"] = node;
                      },
                      absl::StatusCode::kInvalidArgument, "Sequences nest deeper than"},
        LoadErrorCase{"WrongTypeDeepInside",
                      [](nlohmann::json& r) { r["model"]["byte_fallback"] = "yes"; },
                      absl::StatusCode::kInvalidArgument, "malformed tokenizer files"}),
    [](const ::testing::TestParamInfo<LoadErrorCase>& info) { return info.param.name; });

TEST(TokenizerTest, MissingOrMalformedFilesAreNamed) {
  testing::TempDir dir;
  auto tokenizer = Tokenizer::Load(dir.path());
  ASSERT_FALSE(tokenizer.ok());
  EXPECT_EQ(tokenizer.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(tokenizer.status().message()), HasSubstr("tokenizer.json"));

  testing::WriteFile(dir.path() / "tokenizer.json", "{\"model\": ");
  tokenizer = Tokenizer::Load(dir.path());
  ASSERT_FALSE(tokenizer.ok());
  EXPECT_THAT(std::string(tokenizer.status().message()), HasSubstr("tokenizer.json: invalid JSON"));

  WriteEditedFixture(dir.path(), "gpt2", [](nlohmann::json&) {});
  testing::WriteFile(dir.path() / "tokenizer_config.json", R"({"bos_token": "<nope>"})");
  tokenizer = Tokenizer::Load(dir.path());
  ASSERT_FALSE(tokenizer.ok());
  EXPECT_THAT(std::string(tokenizer.status().message()),
              HasSubstr("tokenizer_config.json: key 'bos_token': '<nope>' is not in the"));

  testing::WriteFile(dir.path() / "tokenizer_config.json", R"({"chat_template": 5})");
  tokenizer = Tokenizer::Load(dir.path());
  ASSERT_FALSE(tokenizer.ok());
  EXPECT_THAT(std::string(tokenizer.status().message()), HasSubstr("'chat_template'"));

  testing::WriteFile(dir.path() / "tokenizer_config.json", "{}");
  testing::WriteFile(dir.path() / "generation_config.json", R"({"eos_token_id": [1, 99999]})");
  tokenizer = Tokenizer::Load(dir.path());
  ASSERT_FALSE(tokenizer.ok());
  EXPECT_THAT(std::string(tokenizer.status().message()),
              HasSubstr("generation_config.json: key 'eos_token_id'"));
}

}  // namespace
}  // namespace muxserve::model
