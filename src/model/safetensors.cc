#include "muxserve/model/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <fstream>
#include <optional>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "json_util.h"
#include "muxserve/common/status.h"
#include "nlohmann/json.hpp"

namespace muxserve::model {
namespace {

// A header larger than this is not a model header but a damaged or hostile file.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;
constexpr size_t kLengthBytes = 8;

// dtypes the format defines that we do not load.
constexpr std::array<std::string_view, 16> kUnsupportedDTypes = {
    "F64", "I64",  "I32",     "I16",     "I8",      "U64",     "U32",     "U16",
    "U8",  "BOOL", "F8_E4M3", "F8_E5M2", "F8_E8M0", "F6_E2M3", "F6_E3M2", "F4"};

std::string_view SafetensorsDTypeName(DType dtype) {
  switch (dtype) {
    case DType::kFloat32:
      return "F32";
    case DType::kBFloat16:
      return "BF16";
    case DType::kFloat16:
      return "F16";
  }
  return "";
}

std::string ShapeString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

// Element count and byte size of a shape, or nullopt when they overflow int64.
std::optional<int64_t> ByteSize(const std::vector<int64_t>& shape, DType dtype) {
  int64_t bytes = static_cast<int64_t>(DTypeSize(dtype));
  for (int64_t dim : shape) {
    if (dim < 0 || __builtin_mul_overflow(bytes, dim, &bytes)) return std::nullopt;
  }
  return bytes;
}

struct ParsedEntry {
  std::string name;
  TensorInfo info;
  uint64_t begin;
  uint64_t end;
};

absl::StatusOr<ParsedEntry> ParseEntry(const std::string& name, const nlohmann::json& entry,
                                       std::span<const std::byte> buffer,
                                       const std::string& origin) {
  auto error = [&](std::string_view message) {
    return absl::InvalidArgumentError(
        absl::StrCat(origin, ": tensor '", name, "': ", AsAbsl(message)));
  };
  if (!entry.is_object()) return error("expected an object");
  ParsedEntry parsed{name, {}, 0, 0};

  auto dtype_it = entry.find("dtype");
  if (dtype_it == entry.end() || !dtype_it->is_string()) return error("missing string 'dtype'");
  const std::string dtype = dtype_it->get<std::string>();
  if (dtype == "F32") {
    parsed.info.dtype = DType::kFloat32;
  } else if (dtype == "BF16") {
    parsed.info.dtype = DType::kBFloat16;
  } else if (dtype == "F16") {
    parsed.info.dtype = DType::kFloat16;
  } else if (std::find(kUnsupportedDTypes.begin(), kUnsupportedDTypes.end(), dtype) !=
             kUnsupportedDTypes.end()) {
    return absl::UnimplementedError(absl::StrCat(origin, ": tensor '", name, "': dtype ", dtype,
                                                 " is not supported (F32, BF16, F16)"));
  } else {
    return error(absl::StrCat("unknown dtype '", dtype, "'"));
  }

  auto shape_it = entry.find("shape");
  if (shape_it == entry.end() || !shape_it->is_array()) return error("missing list 'shape'");
  for (const nlohmann::json& dim : *shape_it) {
    std::optional<int64_t> value = JsonToInt64(dim);
    if (!value.has_value() || *value < 0) {
      return error(absl::StrCat("shape ", JsonSnippet(*shape_it), " has an entry that is not a ",
                                "non-negative integer"));
    }
    parsed.info.shape.push_back(*value);
  }
  std::optional<int64_t> bytes = ByteSize(parsed.info.shape, parsed.info.dtype);
  if (!bytes.has_value())
    return error(absl::StrCat("shape ", JsonSnippet(*shape_it), " is too large"));

  auto offsets_it = entry.find("data_offsets");
  if (offsets_it == entry.end() || !offsets_it->is_array() || offsets_it->size() != 2) {
    return error("missing 'data_offsets' [begin, end]");
  }
  std::optional<int64_t> begin = JsonToInt64((*offsets_it)[0]);
  std::optional<int64_t> end = JsonToInt64((*offsets_it)[1]);
  if (!begin.has_value() || !end.has_value() || *begin < 0 || *begin > *end) {
    return error(absl::StrCat("data_offsets ", JsonSnippet(*offsets_it),
                              " must be integers with 0 <= begin <= end"));
  }
  if (static_cast<uint64_t>(*end) > buffer.size()) {
    return error(absl::StrCat("data_offsets ", JsonSnippet(*offsets_it),
                              " run past the end of the ", buffer.size(), "-byte data buffer"));
  }
  if (*end - *begin != *bytes) {
    return error(absl::StrCat("data_offsets ", JsonSnippet(*offsets_it), " hold ", *end - *begin,
                              " bytes but ", dtype, " shape ", ShapeString(parsed.info.shape),
                              " needs ", *bytes));
  }
  parsed.begin = static_cast<uint64_t>(*begin);
  parsed.end = static_cast<uint64_t>(*end);
  parsed.info.data = buffer.subspan(parsed.begin, parsed.end - parsed.begin);
  return parsed;
}

absl::Status CheckNoOverlap(std::vector<const ParsedEntry*> entries, const std::string& origin) {
  std::erase_if(entries, [](const ParsedEntry* e) { return e->begin == e->end; });
  std::sort(entries.begin(), entries.end(), [](const ParsedEntry* a, const ParsedEntry* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
  });
  for (size_t i = 1; i < entries.size(); ++i) {
    if (entries[i]->begin < entries[i - 1]->end) {
      return absl::InvalidArgumentError(absl::StrCat(origin, ": tensors '", entries[i - 1]->name,
                                                     "' and '", entries[i]->name,
                                                     "' overlap in the data buffer"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

int64_t TensorInfo::NumElements() const {
  int64_t count = 1;
  for (int64_t dim : shape) count *= dim;
  return count;
}

absl::StatusOr<std::map<std::string, TensorInfo>> ParseSafetensors(std::span<const std::byte> file,
                                                                   const std::string& origin) {
  if (file.size() < kLengthBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(origin, ": ", file.size(),
                     " bytes is too short for a safetensors file (8-byte header "
                     "length first)"));
  }
  uint64_t header_length = 0;
  for (size_t i = 0; i < kLengthBytes; ++i) {
    header_length |= static_cast<uint64_t>(std::to_integer<uint8_t>(file[i])) << (8 * i);
  }
  if (header_length > kMaxHeaderBytes) {
    return absl::InvalidArgumentError(absl::StrCat(origin, ": header length ", header_length,
                                                   " exceeds the limit of ", kMaxHeaderBytes));
  }
  if (header_length > file.size() - kLengthBytes) {
    return absl::InvalidArgumentError(absl::StrCat(origin, ": header length ", header_length,
                                                   " runs past the end of the ", file.size(),
                                                   "-byte file (truncated?)"));
  }
  std::string_view header_text(reinterpret_cast<const char*>(file.data()) + kLengthBytes,
                               header_length);
  ASSIGN_OR_RETURN(nlohmann::json header, ParseJson(header_text, origin + " (header)"));
  if (!header.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(origin, ": header is a JSON ", JsonTypeName(header), ", not an object"));
  }
  std::span<const std::byte> buffer = file.subspan(kLengthBytes + header_length);

  std::vector<ParsedEntry> entries;
  entries.reserve(header.size());
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") continue;
    ASSIGN_OR_RETURN(ParsedEntry parsed, ParseEntry(name, entry, buffer, origin));
    entries.push_back(std::move(parsed));
  }
  std::vector<const ParsedEntry*> pointers;
  for (const ParsedEntry& entry : entries) pointers.push_back(&entry);
  RETURN_IF_ERROR(CheckNoOverlap(std::move(pointers), origin));

  std::map<std::string, TensorInfo> tensors;
  for (ParsedEntry& entry : entries) tensors.emplace(std::move(entry.name), std::move(entry.info));
  return tensors;
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(
    const std::filesystem::path& path) {
  const std::string origin = path.string();
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return absl::ErrnoToStatus(errno, absl::StrCat(origin, ": cannot open"));
  struct stat info;
  if (::fstat(fd, &info) != 0) {
    int error = errno;
    ::close(fd);
    return absl::ErrnoToStatus(error, absl::StrCat(origin, ": cannot stat"));
  }
  if (!S_ISREG(info.st_mode)) {
    ::close(fd);
    return absl::InvalidArgumentError(absl::StrCat(origin, ": not a regular file"));
  }
  if (info.st_size == 0) {
    ::close(fd);
    return absl::InvalidArgumentError(absl::StrCat(origin, ": empty file"));
  }
  std::unique_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->path_ = path;
  void* mapping = ::mmap(nullptr, static_cast<size_t>(info.st_size), PROT_READ, MAP_PRIVATE, fd, 0);
  int map_error = errno;
  ::close(fd);
  if (mapping == MAP_FAILED) return absl::ErrnoToStatus(map_error, absl::StrCat(origin, ": mmap"));
  file->mapping_ = mapping;
  file->mapping_size_ = static_cast<size_t>(info.st_size);

  std::span<const std::byte> bytes(static_cast<const std::byte*>(mapping), file->mapping_size_);
  ASSIGN_OR_RETURN(file->tensors_, ParseSafetensors(bytes, origin));
  return file;
}

SafetensorsFile::~SafetensorsFile() {
  if (mapping_ != nullptr) ::munmap(mapping_, mapping_size_);
}

absl::Status WriteSafetensorsStreaming(const std::filesystem::path& path,
                                       std::vector<TensorLayout> tensors,
                                       const TensorFiller& fill) {
  const std::string origin = path.string();
  std::sort(tensors.begin(), tensors.end(),
            [](const TensorLayout& a, const TensorLayout& b) { return a.name < b.name; });

  nlohmann::ordered_json header;
  header["__metadata__"] = {{"format", "pt"}};
  std::vector<int64_t> sizes;
  int64_t offset = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const TensorLayout& tensor = tensors[i];
    if (tensor.name.empty() || tensor.name == "__metadata__") {
      return absl::InvalidArgumentError(
          absl::StrCat(origin, ": invalid tensor name '", tensor.name, "'"));
    }
    if (i > 0 && tensors[i - 1].name == tensor.name) {
      return absl::InvalidArgumentError(
          absl::StrCat(origin, ": tensor '", tensor.name, "' given twice"));
    }
    std::optional<int64_t> bytes = ByteSize(tensor.shape, tensor.dtype);
    if (!bytes.has_value()) {
      return absl::InvalidArgumentError(absl::StrCat(
          origin, ": tensor '", tensor.name, "': invalid shape ", ShapeString(tensor.shape)));
    }
    header[tensor.name] = {{"dtype", SafetensorsDTypeName(tensor.dtype)},
                           {"shape", tensor.shape},
                           {"data_offsets", {offset, offset + *bytes}}};
    sizes.push_back(*bytes);
    offset += *bytes;
  }
  std::string header_text = header.dump();
  // As HF's writer does: pad with spaces so that the data buffer starts 8-byte aligned.
  header_text.append((kLengthBytes - header_text.size() % kLengthBytes) % kLengthBytes, ' ');

  const std::filesystem::path temporary = path.string() + ".partial";
  {
    std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
    if (!out) {
      return absl::ErrnoToStatus(errno,
                                 absl::StrCat(temporary.string(), ": cannot open for writing"));
    }
    std::array<char, kLengthBytes> length;
    for (size_t i = 0; i < kLengthBytes; ++i) {
      length[i] = static_cast<char>((header_text.size() >> (8 * i)) & 0xff);
    }
    out.write(length.data(), length.size());
    out.write(header_text.data(), static_cast<std::streamsize>(header_text.size()));
    std::vector<std::byte> buffer;
    for (size_t i = 0; i < tensors.size(); ++i) {
      buffer.assign(static_cast<size_t>(sizes[i]), std::byte{0});
      absl::Status filled = fill(tensors[i], std::span<std::byte>(buffer));
      if (!filled.ok()) {
        out.close();
        std::filesystem::remove(temporary);
        return Annotate(filled, absl::StrCat(origin, ": tensor '", tensors[i].name, "'"));
      }
      out.write(reinterpret_cast<const char*>(buffer.data()),
                static_cast<std::streamsize>(buffer.size()));
    }
    out.close();
    if (!out) {
      std::filesystem::remove(temporary);
      return absl::DataLossError(absl::StrCat(temporary.string(), ": write failed"));
    }
  }
  std::error_code error;
  std::filesystem::rename(temporary, path, error);
  if (error) {
    std::filesystem::remove(temporary);
    return absl::InternalError(
        absl::StrCat(origin, ": cannot rename from ", temporary.string(), ": ", error.message()));
  }
  return absl::OkStatus();
}

absl::Status WriteSafetensors(const std::filesystem::path& path,
                              const std::vector<TensorToWrite>& tensors) {
  std::vector<TensorLayout> layouts;
  std::map<std::string, const TensorToWrite*> by_name;
  for (const TensorToWrite& tensor : tensors) {
    std::optional<int64_t> bytes = ByteSize(tensor.shape, tensor.dtype);
    if (bytes.has_value() && static_cast<size_t>(*bytes) != tensor.data.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat(path.string(), ": tensor '", tensor.name, "' has ", tensor.data.size(),
                       " bytes of data but ", AsAbsl(DTypeName(tensor.dtype)), " shape ",
                       ShapeString(tensor.shape), " needs ", *bytes));
    }
    layouts.push_back({tensor.name, tensor.dtype, tensor.shape});
    by_name.emplace(tensor.name, &tensor);
  }
  return WriteSafetensorsStreaming(
      path, std::move(layouts), [&](const TensorLayout& layout, std::span<std::byte> out) {
        const std::vector<std::byte>& data = by_name.at(layout.name)->data;
        std::copy(data.begin(), data.end(), out.begin());
        return absl::OkStatus();
      });
}

}  // namespace muxserve::model
