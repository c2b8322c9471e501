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

// Element strides of a strided [B, T, C] operand. Upstream gradients come in with any
// layout (an expanded one has stride 0), and reading them through their strides spares
// materialising them.
struct TokenStrides {
  int64_t b, t, c;
};

// Offset (in elements) of token t of clip b in a strided [B, T, C] operand.
FMAE_HD int64_t strided_row(const TokenStrides& s, int64_t b, int64_t t) { return b * s.b + t * s.t; }

}  // namespace fmae
