// Model name -> where and how it is served. Entries are immutable snapshots: a state change
// replaces the entry, so a request keeps a consistent view (and its tokenizer) while it runs.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "muxserve/common/dtype.h"
#include "muxserve/engine/unit_engine.h"
#include "muxserve/model/chat_template.h"
#include "muxserve/model/model_spec.h"
#include "muxserve/model/tokenizer.h"

namespace muxserve::server {

enum class ModelState { kLoading, kServing, kFailed };
std::string_view ModelStateName(ModelState state);  // "loading", "serving", "failed"

struct ModelEntry {
  std::string name;
  std::string unit;
  ModelState state = ModelState::kLoading;
  std::string error;  // why, when failed
  // Set when serving.
  engine::UnitEngine* engine = nullptr;
  std::shared_ptr<const model::Tokenizer> tokenizer;
  std::optional<model::ChatTemplate> chat_template;  // none: Chat is unavailable
  model::ModelSpec spec;
  DType dtype = DType::kFloat32;
  int64_t max_context = 0;
};

class Router {
 public:
  // A model that is being loaded. ALREADY_EXISTS when the name is taken.
  [[nodiscard]] absl::Status AddLoading(const std::string& name, const std::string& unit);
  // The loaded model (its state becomes serving; name and unit must match AddLoading's).
  [[nodiscard]] absl::Status SetServing(ModelEntry entry);
  [[nodiscard]] absl::Status SetFailed(const std::string& name, const absl::Status& error);

  // The model, ready for requests: NOT_FOUND when unknown, UNAVAILABLE with the reason while it
  // loads or when it failed.
  absl::StatusOr<std::shared_ptr<const ModelEntry>> FindServing(const std::string& name) const;
  // Every model in the order added.
  std::vector<std::shared_ptr<const ModelEntry>> List() const;
  // True when no model is loading any more.
  bool AllSettled() const;

 private:
  absl::StatusOr<std::shared_ptr<const ModelEntry>> FindLocked(const std::string& name) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  std::vector<std::string> order_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, std::shared_ptr<const ModelEntry>> entries_ ABSL_GUARDED_BY(mu_);
};

}  // namespace muxserve::server
