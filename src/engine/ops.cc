#include "muxserve/engine/ops.h"

#include "absl/strings/str_cat.h"
#include "muxserve/common/status.h"

namespace muxserve::engine {

namespace {

absl::StatusOr<SliceBounds> ResolveSlice(const WeightSlice& slice) {
  const model::TensorInfo& tensor = *slice.tensor;
  const int64_t elements = tensor.NumElements();
  const int64_t total_rows = tensor.shape.empty() ? 1 : tensor.shape[0];
  SliceBounds bounds;
  bounds.total_cols = total_rows > 0 ? elements / total_rows : 0;
  bounds.row_begin = slice.row_begin;
  bounds.rows = slice.rows < 0 ? total_rows - slice.row_begin : slice.rows;
  bounds.col_begin = slice.col_begin;
  bounds.cols = slice.cols < 0 ? bounds.total_cols - slice.col_begin : slice.cols;
  if (bounds.row_begin < 0 || bounds.rows < 0 || bounds.row_begin + bounds.rows > total_rows ||
      bounds.col_begin < 0 || bounds.cols < 0 ||
      bounds.col_begin + bounds.cols > bounds.total_cols) {
    return absl::InvalidArgumentError(absl::StrCat(
        "weight slice rows [", slice.row_begin, ", +", bounds.rows, ") columns [", slice.col_begin,
        ", +", bounds.cols, ") is outside a tensor of ", total_rows, " x ", bounds.total_cols));
  }
  return bounds;
}

}  // namespace

absl::StatusOr<std::vector<SliceBounds>> ResolveSlices(std::span<const WeightSlice> parts,
                                                       int64_t* elements) {
  std::vector<SliceBounds> bounds;
  *elements = 0;
  for (const WeightSlice& part : parts) {
    ASSIGN_OR_RETURN(const SliceBounds slice, ResolveSlice(part));
    bounds.push_back(slice);
    *elements += slice.elements();
  }
  return bounds;
}

}  // namespace muxserve::engine
