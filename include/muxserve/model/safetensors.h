// Read-only safetensors files over mmap, and a writer for synthetic models.
// Format: 8-byte little-endian header length N, N bytes of JSON {name: {dtype, shape,
// data_offsets: [begin, end]}, "__metadata__": {...}}, then the byte buffer.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "muxserve/common/dtype.h"

namespace muxserve::model {

// Random contents of a tensor that has no bytes: values of this mean and standard deviation,
// drawn from `seed` by whoever loads the tensor (synthetic models made at load time).
struct RandomInit {
  uint64_t seed = 0;
  float mean = 0;
  float std = 0;
};

struct TensorInfo {
  DType dtype;
  std::vector<int64_t> shape;
  std::span<const std::byte> data;  // points into the mapping; empty when `random` is set
  std::optional<RandomInit> random = std::nullopt;

  int64_t NumElements() const;
};

class SafetensorsFile {
 public:
  // Maps the file and validates the header: dtypes we support (F32, BF16, F16), shapes whose
  // byte size matches data_offsets, offsets inside the file and not overlapping.
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Open(const std::filesystem::path& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::map<std::string, TensorInfo>& tensors() const { return tensors_; }
  const std::filesystem::path& path() const { return path_; }

 private:
  SafetensorsFile() = default;
  std::filesystem::path path_;
  void* mapping_ = nullptr;
  size_t mapping_size_ = 0;
  std::map<std::string, TensorInfo> tensors_;
};

// Parses a header + buffer held in memory (used by Open, and directly by fuzzers and tests).
absl::StatusOr<std::map<std::string, TensorInfo>> ParseSafetensors(std::span<const std::byte> file,
                                                                   const std::string& origin);

struct TensorToWrite {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  std::vector<std::byte> data;
};
[[nodiscard]] absl::Status WriteSafetensors(const std::filesystem::path& path,
                                            const std::vector<TensorToWrite>& tensors);

// Writing without holding every tensor in memory: `fill` is called once per tensor, in the
// file's order (sorted by name), with a buffer of exactly that tensor's byte size.
struct TensorLayout {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
};
using TensorFiller = std::function<absl::Status(const TensorLayout&, std::span<std::byte>)>;
[[nodiscard]] absl::Status WriteSafetensorsStreaming(const std::filesystem::path& path,
                                                     std::vector<TensorLayout> tensors,
                                                     const TensorFiller& fill);

}  // namespace muxserve::model
