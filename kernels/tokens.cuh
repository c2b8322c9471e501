// Index math of gather_tokens / scatter_tokens on [B, N, C] token tensors.
#pragma once
#include "hd.cuh"

namespace fmae {

// Row of the full [B*N] token grid that index row (b, m) with value idx refers to.
FMAE_HD int64_t token_row(int64_t b, int64_t idx, int64_t n_tokens) { return b * n_tokens + idx; }

FMAE_HD bool index_in_range(int64_t idx, int64_t n_tokens) { return idx >= 0 && idx < n_tokens; }

}  // namespace fmae
