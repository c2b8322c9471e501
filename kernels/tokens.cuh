// Index math of gather_tokens / scatter_tokens on [B, N, C] token tensors, shared by
// the CUDA kernels and the C++ CPU path.
#pragma once
#include "hd.cuh"

namespace fmae {

// Row of the full [B * n_tokens] token grid that entry r of the flattened [B, M]
// index, holding `idx`, refers to.
FMAE_HD int64_t token_row(int64_t r, int64_t M, int64_t idx, int64_t n_tokens) {
  return (r / M) * n_tokens + idx;
}

FMAE_HD bool index_in_range(int64_t idx, int64_t n_tokens) { return idx >= 0 && idx < n_tokens; }

}  // namespace fmae
