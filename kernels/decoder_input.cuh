// Index math and arithmetic of decoder_input, shared by the CUDA kernel and the C++ CPU
// path: out[b, l] = (tokens[b, l] if l < V else mask_token) + T(pos_table[index[b, l]]).
#pragma once
#include "hd.cuh"
#include "scalar.cuh"

namespace fmae {

// Row of the [B * V] visible tokens that row r of the [B * L] output starts from, or -1
// where it starts from the mask token (its last L - V positions of each clip).
FMAE_HD int64_t decoder_source_row(int64_t r, int64_t L, int64_t V) {
  const int64_t l = r % L;
  return l < V ? (r / L) * V + l : -1;
}

// One output element: `x` (a token's or the mask token's) plus the position embedding
// `p` cast to T first, added in T's accumulator type and rounded once, as torch's
// `x + pos.to(x.dtype)`.
template <typename T, typename P>
FMAE_HD T decoder_element(T x, P p) {
  return Scalar<T>::store(Scalar<T>::load(x) + as_acc_of<T>(p));
}

}  // namespace fmae
