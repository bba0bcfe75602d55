// The cost table file that `muxserve profile` writes and TableCostModel reads
// (docs/planner.md: "Cost tables"): measured step times per (model shape, tp, phase) on a grid
// of SM share x batch x tokens, and interference measurements. One reader and one writer, so the
// profiler's merge and the planner's load agree on the format.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace muxserve::planner {

inline constexpr char kCostTableFormat[] = "muxserve-cost-table-v1";

// Measured step times of one (model shape, tp, phase) on a grid, in milliseconds:
// ms[s][b][c] at sm_fractions[s], batches[b], tokens[c] (prompt tokens for prefill, context
// for decode).
struct CostGrid {
  std::vector<double> sm_fractions{};
  std::vector<double> batches{};
  std::vector<double> tokens{};
  std::vector<double> ms{};  // row-major [sm][batch][tokens]
};

// One grid of the file with what it is of.
struct TableGrid {
  std::string model{};  // planner::ShapeKey
  int tp = 1;
  std::string phase{};  // "prefill" | "decode"
  CostGrid grid{};
  // False when the profiler ran out of time before the grid's last SM share: it then holds the
  // shares it finished, and a later `muxserve profile` measures it again.
  bool complete = true;
  std::string source{};  // optional: where and how it was measured
};

// A decode step of one model while another model's prefill runs on the complementary SMs,
// against the same step alone on the same SMs.
struct InterferenceEntry {
  std::string decode_model{};  // names in the config it was measured from
  std::string prefill_model{};
  std::string decode_shape{};  // ShapeKeys: what a later run finds it by
  std::string prefill_shape{};
  double decode_sm_fraction = 0;  // the prefill had the rest of the SMs
  int64_t decode_batch = 0;
  int64_t decode_context = 0;
  int64_t prefill_batch = 0;
  int64_t prefill_tokens = 0;
  double alone_ms = 0;
  double with_prefill_ms = 0;
  double slowdown = 0;  // with_prefill_ms / alone_ms
};

struct CostTable {
  std::string gpu{};  // the name of the GPU it was measured on (cluster.gpu.name), or "cpu"
  std::vector<TableGrid> grids{};
  std::vector<InterferenceEntry> interference{};

  // The grid of (model, tp, phase), or null.
  const TableGrid* FindGrid(const std::string& model, int tp, const std::string& phase) const;
  // Replaces the grid of the same (model, tp, phase), or appends it.
  void PutGrid(TableGrid grid);
  const InterferenceEntry* FindInterference(const std::string& decode_shape,
                                            const std::string& prefill_shape,
                                            double decode_sm_fraction) const;
  // Replaces the entry of the same shapes and decode share, or appends it.
  void PutInterference(InterferenceEntry entry);
};

// Parses and validates a table; errors name `origin` and the field. Unknown keys are ignored.
absl::StatusOr<CostTable> ParseCostTable(const std::string& json_text, const std::string& origin);
// NOT_FOUND when the file does not exist.
absl::StatusOr<CostTable> LoadCostTable(const std::filesystem::path& path);

std::string CostTableToJson(const CostTable& table);
// Writes the JSON through a temporary file renamed into place, so an interrupted run never
// leaves half a table.
[[nodiscard]] absl::Status WriteCostTable(const CostTable& table,
                                          const std::filesystem::path& path);

}  // namespace muxserve::planner
