#include "json_util.h"

#include <cerrno>
#include <fstream>
#include <limits>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "muxserve/common/status.h"

namespace muxserve::model {

absl::StatusOr<std::string> ReadFileToString(const std::filesystem::path& path) {
  std::error_code error;
  if (!std::filesystem::exists(path, error)) {
    return absl::NotFoundError(absl::StrCat(path.string(), ": no such file"));
  }
  if (std::filesystem::is_directory(path, error)) {
    return absl::InvalidArgumentError(absl::StrCat(path.string(), ": is a directory"));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::ErrnoToStatus(errno, absl::StrCat(path.string(), ": cannot open"));
  }
  std::ostringstream contents;
  contents << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat(path.string(), ": read failed"));
  return std::move(contents).str();
}

absl::Status WriteStringToFile(const std::filesystem::path& path, std::string_view contents) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) {
    return absl::ErrnoToStatus(errno, absl::StrCat(path.string(), ": cannot open for writing"));
  }
  out.write(contents.data(), static_cast<std::streamsize>(contents.size()));
  out.close();
  if (!out) return absl::DataLossError(absl::StrCat(path.string(), ": write failed"));
  return absl::OkStatus();
}

absl::StatusOr<nlohmann::json> ParseJson(std::string_view text, const std::string& origin) {
  try {
    return nlohmann::json::parse(text.begin(), text.end());
  } catch (const nlohmann::json::parse_error& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(origin, ": invalid JSON at byte ", e.byte, ": ", e.what()));
  } catch (const nlohmann::json::exception& e) {
    // Numbers out of range (1e999) and similar: found by the safetensors fuzzer.
    return absl::InvalidArgumentError(absl::StrCat(origin, ": invalid JSON: ", e.what()));
  }
}

std::string JsonTypeName(const nlohmann::json& value) {
  if (value.is_number_integer()) return "integer";
  if (value.is_number_float()) return "number";
  return value.type_name();
}

std::string JsonSnippet(const nlohmann::json& value) {
  constexpr size_t kMaxChars = 80;
  if (value.is_structured()) {
    for (const nlohmann::json& child : value) {
      if (child.is_structured()) return absl::StrCat("<", JsonTypeName(value), ">");
    }
  }
  std::string text = value.dump();
  if (text.size() > kMaxChars) text = absl::StrCat(text.substr(0, kMaxChars), "...");
  return text;
}

std::optional<int64_t> JsonToInt64(const nlohmann::json& value) {
  if (value.is_number_unsigned()) {
    uint64_t v = value.get<uint64_t>();
    if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return std::nullopt;
    return static_cast<int64_t>(v);
  }
  if (value.is_number_integer()) return value.get<int64_t>();
  return std::nullopt;
}

bool JsonObjectReader::Has(std::string_view key) const { return Find(key) != nullptr; }

const nlohmann::json* JsonObjectReader::Find(std::string_view key) const {
  auto it = object_.find(key);
  if (it == object_.end() || it->is_null()) return nullptr;
  return &*it;
}

absl::Status JsonObjectReader::Error(std::string_view key, std::string_view message) const {
  return absl::InvalidArgumentError(
      absl::StrCat(origin_, ": key '", prefix_, AsAbsl(key), "': ", AsAbsl(message)));
}

JsonObjectReader JsonObjectReader::Nested(const nlohmann::json& object,
                                          std::string_view key) const {
  return JsonObjectReader(object, origin_, absl::StrCat(prefix_, AsAbsl(key), "."));
}

absl::StatusOr<int64_t> JsonObjectReader::Int(std::string_view key) const {
  ASSIGN_OR_RETURN(std::optional<int64_t> value, OptionalInt(key));
  if (!value.has_value()) {
    return absl::InvalidArgumentError(
        absl::StrCat(origin_, ": missing required key '", prefix_, AsAbsl(key), "'"));
  }
  return *value;
}

absl::StatusOr<std::optional<int64_t>> JsonObjectReader::OptionalInt(std::string_view key) const {
  const nlohmann::json* value = Find(key);
  if (value == nullptr) return std::nullopt;
  std::optional<int64_t> result = JsonToInt64(*value);
  if (!result.has_value()) {
    return Error(key, absl::StrCat("expected an integer, got ", JsonTypeName(*value), " ",
                                   JsonSnippet(*value)));
  }
  return result;
}

absl::StatusOr<std::optional<double>> JsonObjectReader::OptionalDouble(std::string_view key) const {
  const nlohmann::json* value = Find(key);
  if (value == nullptr) return std::nullopt;
  if (!value->is_number()) {
    return Error(key, absl::StrCat("expected a number, got ", JsonTypeName(*value)));
  }
  return value->get<double>();
}

absl::StatusOr<std::optional<bool>> JsonObjectReader::OptionalBool(std::string_view key) const {
  const nlohmann::json* value = Find(key);
  if (value == nullptr) return std::nullopt;
  if (!value->is_boolean()) {
    return Error(key, absl::StrCat("expected true or false, got ", JsonTypeName(*value)));
  }
  return value->get<bool>();
}

absl::StatusOr<std::optional<std::string>> JsonObjectReader::OptionalString(
    std::string_view key) const {
  const nlohmann::json* value = Find(key);
  if (value == nullptr) return std::nullopt;
  if (!value->is_string()) {
    return Error(key, absl::StrCat("expected a string, got ", JsonTypeName(*value)));
  }
  return value->get<std::string>();
}

}  // namespace muxserve::model
