#include "muxserve/server/router.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace muxserve::server {

std::string_view ModelStateName(ModelState state) {
  switch (state) {
    case ModelState::kLoading:
      return "loading";
    case ModelState::kServing:
      return "serving";
    case ModelState::kFailed:
      return "failed";
  }
  return "unknown";
}

absl::Status Router::AddLoading(const std::string& name, const std::string& unit) {
  absl::MutexLock lock(&mu_);
  if (entries_.contains(name)) {
    return absl::AlreadyExistsError(absl::StrCat("model '", name, "' is already registered"));
  }
  auto entry = std::make_shared<ModelEntry>();
  entry->name = name;
  entry->unit = unit;
  entries_.emplace(name, std::move(entry));
  order_.push_back(name);
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<const ModelEntry>> Router::FindLocked(
    const std::string& name) const {
  auto it = entries_.find(name);
  if (it == entries_.end()) {
    return absl::NotFoundError(absl::StrCat("model: no model named '", name, "'"));
  }
  return it->second;
}

absl::Status Router::SetServing(ModelEntry entry) {
  absl::MutexLock lock(&mu_);
  auto current = FindLocked(entry.name);
  if (!current.ok()) return current.status();
  if ((*current)->unit != entry.unit) {
    return absl::InvalidArgumentError(absl::StrCat("model '", entry.name, "' belongs to unit '",
                                                   (*current)->unit, "', not '", entry.unit, "'"));
  }
  entry.state = ModelState::kServing;
  entry.error.clear();
  const std::string name = entry.name;
  entries_[name] = std::make_shared<const ModelEntry>(std::move(entry));
  return absl::OkStatus();
}

absl::Status Router::SetFailed(const std::string& name, const absl::Status& error) {
  absl::MutexLock lock(&mu_);
  auto current = FindLocked(name);
  if (!current.ok()) return current.status();
  auto entry = std::make_shared<ModelEntry>();
  entry->name = name;
  entry->unit = (*current)->unit;
  entry->state = ModelState::kFailed;
  entry->error = std::string(error.message());
  entries_[name] = std::move(entry);
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<const ModelEntry>> Router::FindServing(
    const std::string& name) const {
  absl::ReaderMutexLock lock(&mu_);
  auto entry = FindLocked(name);
  if (!entry.ok()) return entry.status();
  switch ((*entry)->state) {
    case ModelState::kServing:
      return entry;
    case ModelState::kLoading:
      return absl::UnavailableError(absl::StrCat("model '", name, "' is still loading"));
    case ModelState::kFailed:
      return absl::UnavailableError(
          absl::StrCat("model '", name, "' failed to load: ", (*entry)->error));
  }
  return absl::InternalError("unreachable model state");
}

std::vector<std::shared_ptr<const ModelEntry>> Router::List() const {
  absl::ReaderMutexLock lock(&mu_);
  std::vector<std::shared_ptr<const ModelEntry>> list;
  list.reserve(order_.size());
  for (const std::string& name : order_) list.push_back(entries_.at(name));
  return list;
}

bool Router::AllSettled() const {
  absl::ReaderMutexLock lock(&mu_);
  for (const auto& [name, entry] : entries_) {
    if (entry->state == ModelState::kLoading) return false;
  }
  return true;
}

}  // namespace muxserve::server
