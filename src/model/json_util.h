// Reading and writing the JSON files of an HF model directory. nlohmann exceptions stop here:
// every failure becomes a Status naming the file and the key.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace muxserve::model {

// The whole file; NOT_FOUND naming the path when it does not exist.
absl::StatusOr<std::string> ReadFileToString(const std::filesystem::path& path);
// Writes (replacing) a file; errors name the path.
[[nodiscard]] absl::Status WriteStringToFile(const std::filesystem::path& path,
                                             std::string_view contents);

// Parses JSON text; a syntax error is INVALID_ARGUMENT naming `origin` and the byte offset.
absl::StatusOr<nlohmann::json> ParseJson(std::string_view text, const std::string& origin);

// The JSON type of a value in words ("string", "array", ...), for error messages.
std::string JsonTypeName(const nlohmann::json& value);

// Typed access to the members of one JSON object. Errors read
// "<origin>: key '<prefix><key>': ...", so nested objects name their full key path.
class JsonObjectReader {
 public:
  JsonObjectReader(const nlohmann::json& object, std::string origin, std::string prefix = "")
      : object_(object), origin_(std::move(origin)), prefix_(std::move(prefix)) {}

  // Absent and null both read as "not given".
  bool Has(std::string_view key) const;
  const nlohmann::json* Find(std::string_view key) const;

  absl::StatusOr<int64_t> Int(std::string_view key) const;
  absl::StatusOr<std::optional<int64_t>> OptionalInt(std::string_view key) const;
  absl::StatusOr<std::optional<double>> OptionalDouble(std::string_view key) const;
  absl::StatusOr<std::optional<bool>> OptionalBool(std::string_view key) const;
  absl::StatusOr<std::optional<std::string>> OptionalString(std::string_view key) const;

  // "<origin>: key '<prefix><key>': <message>" as INVALID_ARGUMENT.
  absl::Status Error(std::string_view key, std::string_view message) const;
  // The reader of a nested object, its keys prefixed with "<key>.".
  JsonObjectReader Nested(const nlohmann::json& object, std::string_view key) const;
  const std::string& origin() const { return origin_; }

 private:
  const nlohmann::json& object_;
  std::string origin_;
  std::string prefix_;
};

// A value for an error message: scalars and flat lists as JSON, cut at 80 chars; nested values
// by their type only (dumping is recursive, and a hostile file may nest deeply).
std::string JsonSnippet(const nlohmann::json& value);

// Reads an integer-valued JSON number; nullopt for floats, strings and out-of-range values.
std::optional<int64_t> JsonToInt64(const nlohmann::json& value);

}  // namespace muxserve::model
