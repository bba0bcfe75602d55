// Plain-text tables for the muxserve CLI's listings.
#pragma once

#include <cstdio>
#include <string>
#include <vector>

namespace muxserve::cli {

// Prints `header` and `rows` as left-aligned columns separated by two spaces, each as wide as
// its widest cell.
void PrintTable(std::FILE* out, const std::vector<std::string>& header,
                const std::vector<std::vector<std::string>>& rows);

}  // namespace muxserve::cli
