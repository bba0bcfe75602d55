#include "muxserve/planner/cost_table.h"

#include <cmath>
#include <fstream>
#include <sstream>
#include <system_error>
#include <utility>

#include "absl/strings/str_cat.h"
#include "muxserve/common/status.h"
#include "nlohmann/json.hpp"

namespace muxserve::planner {
namespace {

using Json = nlohmann::ordered_json;

absl::Status TableError(const std::string& origin, std::string_view field,
                        std::string_view reason) {
  return absl::InvalidArgumentError(
      absl::StrCat(origin, ": field '", AsAbsl(field), "': ", AsAbsl(reason)));
}

// A strictly increasing list of positive numbers.
absl::StatusOr<std::vector<double>> ReadAxis(const Json& grid, const std::string& path,
                                             const std::string& origin, const char* key) {
  const std::string field = absl::StrCat(path, ".", key);
  if (!grid.contains(key) || !grid[key].is_array() || grid[key].empty()) {
    return TableError(origin, field, "required: a non-empty list of numbers");
  }
  std::vector<double> axis;
  for (const Json& value : grid[key]) {
    if (!value.is_number() || value.get<double>() <= 0 ||
        (!axis.empty() && value.get<double>() <= axis.back())) {
      return TableError(origin, field, "expected increasing positive numbers");
    }
    axis.push_back(value.get<double>());
  }
  return axis;
}

absl::StatusOr<TableGrid> ReadGrid(const Json& entry, const std::string& path,
                                   const std::string& origin) {
  if (!entry.is_object()) return TableError(origin, path, "expected an object");
  TableGrid out;
  if (!entry.contains("model") || !entry["model"].is_string()) {
    return TableError(origin, path + ".model", "required: a shape key (see docs/planner.md)");
  }
  out.model = entry["model"].get<std::string>();
  if (!entry.contains("tp") || !entry["tp"].is_number_integer() || entry["tp"].get<int>() < 1) {
    return TableError(origin, path + ".tp", "required: a positive integer");
  }
  out.tp = entry["tp"].get<int>();
  out.phase = entry.value("phase", "");
  if (out.phase != "prefill" && out.phase != "decode") {
    return TableError(origin, path + ".phase", "expected \"prefill\" or \"decode\"");
  }
  if (entry.contains("complete") && !entry["complete"].is_boolean()) {
    return TableError(origin, path + ".complete", "expected true or false");
  }
  out.complete = entry.value("complete", true);
  if (entry.contains("source") && !entry["source"].is_string()) {
    return TableError(origin, path + ".source", "expected a string");
  }
  out.source = entry.value("source", "");
  CostGrid& grid = out.grid;
  ASSIGN_OR_RETURN(grid.sm_fractions, ReadAxis(entry, path, origin, "sm_fractions"));
  ASSIGN_OR_RETURN(grid.batches, ReadAxis(entry, path, origin, "batches"));
  ASSIGN_OR_RETURN(grid.tokens, ReadAxis(entry, path, origin, "tokens"));
  const std::string ms_path = path + ".ms";
  const Json& ms = entry.contains("ms") ? entry["ms"] : Json();
  const std::string shape_text = absl::StrCat("expected ", grid.sm_fractions.size(), " x ",
                                              grid.batches.size(), " x ", grid.tokens.size(),
                                              " positive numbers (sm_fractions x batches x "
                                              "tokens)");
  if (!ms.is_array() || ms.size() != grid.sm_fractions.size()) {
    return TableError(origin, ms_path, shape_text);
  }
  for (const Json& by_batch : ms) {
    if (!by_batch.is_array() || by_batch.size() != grid.batches.size()) {
      return TableError(origin, ms_path, shape_text);
    }
    for (const Json& by_tokens : by_batch) {
      if (!by_tokens.is_array() || by_tokens.size() != grid.tokens.size()) {
        return TableError(origin, ms_path, shape_text);
      }
      for (const Json& value : by_tokens) {
        if (!value.is_number() || value.get<double>() <= 0) {
          return TableError(origin, ms_path, shape_text);
        }
        grid.ms.push_back(value.get<double>());
      }
    }
  }
  return out;
}

absl::StatusOr<InterferenceEntry> ReadInterference(const Json& entry, const std::string& path,
                                                   const std::string& origin) {
  if (!entry.is_object()) return TableError(origin, path, "expected an object");
  InterferenceEntry out;
  for (auto [key, value] : {std::pair{"decode_model", &out.decode_model},
                            std::pair{"prefill_model", &out.prefill_model},
                            std::pair{"decode_shape", &out.decode_shape},
                            std::pair{"prefill_shape", &out.prefill_shape}}) {
    if (!entry.contains(key) || !entry[key].is_string()) {
      return TableError(origin, absl::StrCat(path, ".", key), "required: a string");
    }
    *value = entry[key].get<std::string>();
  }
  for (auto [key, value] : {std::pair{"decode_batch", &out.decode_batch},
                            std::pair{"decode_context", &out.decode_context},
                            std::pair{"prefill_batch", &out.prefill_batch},
                            std::pair{"prefill_tokens", &out.prefill_tokens}}) {
    if (!entry.contains(key) || !entry[key].is_number_integer() || entry[key].get<int64_t>() < 1) {
      return TableError(origin, absl::StrCat(path, ".", key), "required: a positive integer");
    }
    *value = entry[key].get<int64_t>();
  }
  for (auto [key, value] :
       {std::pair{"decode_sm_fraction", &out.decode_sm_fraction},
        std::pair{"alone_ms", &out.alone_ms}, std::pair{"with_prefill_ms", &out.with_prefill_ms},
        std::pair{"slowdown", &out.slowdown}}) {
    if (!entry.contains(key) || !entry[key].is_number() || entry[key].get<double>() <= 0) {
      return TableError(origin, absl::StrCat(path, ".", key), "required: a positive number");
    }
    *value = entry[key].get<double>();
  }
  if (out.decode_sm_fraction >= 1) {
    return TableError(origin, path + ".decode_sm_fraction",
                      "expected a share below 1 (the prefill has the rest)");
  }
  return out;
}

// Whole numbers as integers, so axes read as batches and tokens.
Json Number(double value) {
  if (value == std::floor(value) && std::abs(value) < 1e15) {
    return Json(static_cast<int64_t>(value));
  }
  return Json(value);
}

Json Axis(const std::vector<double>& values) {
  Json axis = Json::array();
  for (double value : values) axis.push_back(Number(value));
  return axis;
}

bool SameShare(double a, double b) { return std::abs(a - b) < 1e-6; }

}  // namespace

const TableGrid* CostTable::FindGrid(const std::string& model, int tp,
                                     const std::string& phase) const {
  for (const TableGrid& grid : grids) {
    if (grid.model == model && grid.tp == tp && grid.phase == phase) return &grid;
  }
  return nullptr;
}

void CostTable::PutGrid(TableGrid grid) {
  for (TableGrid& existing : grids) {
    if (existing.model == grid.model && existing.tp == grid.tp && existing.phase == grid.phase) {
      existing = std::move(grid);
      return;
    }
  }
  grids.push_back(std::move(grid));
}

const InterferenceEntry* CostTable::FindInterference(const std::string& decode_shape,
                                                     const std::string& prefill_shape,
                                                     double decode_sm_fraction) const {
  for (const InterferenceEntry& entry : interference) {
    if (entry.decode_shape == decode_shape && entry.prefill_shape == prefill_shape &&
        SameShare(entry.decode_sm_fraction, decode_sm_fraction)) {
      return &entry;
    }
  }
  return nullptr;
}

void CostTable::PutInterference(InterferenceEntry entry) {
  for (InterferenceEntry& existing : interference) {
    if (existing.decode_shape == entry.decode_shape &&
        existing.prefill_shape == entry.prefill_shape &&
        SameShare(existing.decode_sm_fraction, entry.decode_sm_fraction)) {
      existing = std::move(entry);
      return;
    }
  }
  interference.push_back(std::move(entry));
}

namespace {

// The table in `root`; a value of an unexpected type may throw, which ParseCostTable catches.
absl::StatusOr<CostTable> CostTableFromJson(const Json& root, const std::string& origin) {
  if (!root.is_object() || root.value("format", "") != kCostTableFormat) {
    return TableError(origin, "format", absl::StrCat("expected \"", kCostTableFormat, "\""));
  }
  CostTable table;
  if (!root.contains("gpu") || !root["gpu"].is_string()) {
    return TableError(origin, "gpu", "required: the name of the GPU it was measured on");
  }
  table.gpu = root["gpu"].get<std::string>();
  if (!root.contains("grids") || !root["grids"].is_array()) {
    return TableError(origin, "grids", "required: a list of grids");
  }
  for (size_t i = 0; i < root["grids"].size(); ++i) {
    const std::string path = absl::StrCat("grids[", i, "]");
    ASSIGN_OR_RETURN(TableGrid grid, ReadGrid(root["grids"][i], path, origin));
    if (table.FindGrid(grid.model, grid.tp, grid.phase) != nullptr) {
      return TableError(origin, path, "a second grid for the same model, tp and phase");
    }
    table.grids.push_back(std::move(grid));
  }
  if (root.contains("interference")) {
    if (!root["interference"].is_array()) {
      return TableError(origin, "interference", "expected a list of measurements");
    }
    for (size_t i = 0; i < root["interference"].size(); ++i) {
      ASSIGN_OR_RETURN(
          InterferenceEntry entry,
          ReadInterference(root["interference"][i], absl::StrCat("interference[", i, "]"), origin));
      table.interference.push_back(std::move(entry));
    }
  }
  return table;
}

}  // namespace

absl::StatusOr<CostTable> ParseCostTable(const std::string& json_text, const std::string& origin) {
  Json root;
  try {
    root = Json::parse(json_text);
  } catch (const nlohmann::json::exception& error) {
    return absl::InvalidArgumentError(absl::StrCat(origin, ": invalid JSON: ", error.what()));
  }
  try {
    return CostTableFromJson(root, origin);
  } catch (const nlohmann::json::exception& error) {
    // A field of a type the checks above do not name.
    return absl::InvalidArgumentError(absl::StrCat(origin, ": invalid cost table: ", error.what()));
  }
}

absl::StatusOr<CostTable> LoadCostTable(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(absl::StrCat("cannot read cost table '", path.string(), "'"));
  }
  std::ostringstream text;
  text << in.rdbuf();
  return ParseCostTable(text.str(), path.string());
}

std::string CostTableToJson(const CostTable& table) {
  Json grids = Json::array();
  for (const TableGrid& entry : table.grids) {
    const CostGrid& grid = entry.grid;
    Json ms = Json::array();
    const size_t nb = grid.batches.size(), nt = grid.tokens.size();
    for (size_t s = 0; s < grid.sm_fractions.size(); ++s) {
      Json by_batch = Json::array();
      for (size_t b = 0; b < nb; ++b) {
        Json by_tokens = Json::array();
        for (size_t t = 0; t < nt; ++t) by_tokens.push_back(grid.ms[(s * nb + b) * nt + t]);
        by_batch.push_back(std::move(by_tokens));
      }
      ms.push_back(std::move(by_batch));
    }
    Json out = {{"model", entry.model}, {"tp", entry.tp}, {"phase", entry.phase}};
    if (!entry.complete) out["complete"] = false;
    if (!entry.source.empty()) out["source"] = entry.source;
    out["sm_fractions"] = Axis(grid.sm_fractions);
    out["batches"] = Axis(grid.batches);
    out["tokens"] = Axis(grid.tokens);
    out["ms"] = std::move(ms);
    grids.push_back(std::move(out));
  }
  Json root = {{"format", kCostTableFormat}, {"gpu", table.gpu}, {"grids", std::move(grids)}};
  if (!table.interference.empty()) {
    Json interference = Json::array();
    for (const InterferenceEntry& e : table.interference) {
      interference.push_back({{"decode_model", e.decode_model},
                              {"prefill_model", e.prefill_model},
                              {"decode_shape", e.decode_shape},
                              {"prefill_shape", e.prefill_shape},
                              {"decode_sm_fraction", e.decode_sm_fraction},
                              {"decode_batch", e.decode_batch},
                              {"decode_context", e.decode_context},
                              {"prefill_batch", e.prefill_batch},
                              {"prefill_tokens", e.prefill_tokens},
                              {"alone_ms", e.alone_ms},
                              {"with_prefill_ms", e.with_prefill_ms},
                              {"slowdown", e.slowdown}});
    }
    root["interference"] = std::move(interference);
  }
  return root.dump(2) + "\n";
}

absl::Status WriteCostTable(const CostTable& table, const std::filesystem::path& path) {
  std::filesystem::path partial = path;
  partial += ".partial";
  {
    std::ofstream out(partial, std::ios::binary | std::ios::trunc);
    out << CostTableToJson(table);
    out.close();
    if (!out) {
      return absl::UnavailableError(absl::StrCat("cannot write '", partial.string(), "'"));
    }
  }
  std::error_code error;
  std::filesystem::rename(partial, path, error);
  if (error) {
    const std::string reason = error.message();
    std::filesystem::remove(partial, error);
    return absl::UnavailableError(
        absl::StrCat("cannot move the table to '", path.string(), "': ", reason));
  }
  return absl::OkStatus();
}

}  // namespace muxserve::planner
