#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

#include "decoder_input.cuh"
#include "huge_pages.h"
#include "ops_cpu.h"
#include "parallel.h"
#include "tokens.cuh"

namespace fmae {

namespace {

// A row is a few hundred elements of arithmetic: 32 rows per task at the least.
constexpr int64_t kRowGrain = 32;

template <typename T, typename P>
void decoder_input_typed(const void* tokens, const void* mask_token, const void* pos_table, const int64_t* index,
                         void* out, int64_t B, int64_t V, int64_t L, int64_t N, int64_t C) {
  const T* tok = static_cast<const T*>(tokens);
  const T* mask = static_cast<const T*>(mask_token);
  const P* pos = static_cast<const P*>(pos_table);
  T* o = static_cast<T*>(out);
  advise_huge_pages(out, B * L * C * static_cast<int64_t>(sizeof(T)));
  parallel_for(B * L, kRowGrain, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const int64_t idx = index[r];
      if (!index_in_range(idx, N))
        throw std::out_of_range("index " + std::to_string(idx) + " out of range [0, " + std::to_string(N) + ")");
      const int64_t s = decoder_source_row(r, L, V);
      const T* x = s >= 0 ? tok + s * C : mask;
      const P* p = pos + idx * C;
      T* y = o + r * C;
      for (int64_t c = 0; c < C; ++c) y[c] = decoder_element<T, P>(x[c], p[c]);
    }
  });
}

// pos_table is either in the tokens' dtype or float32 (the Python side casts others).
template <typename T>
void decoder_input_pos(bool pos_float32, const void* tokens, const void* mask_token, const void* pos_table,
                       const int64_t* index, void* out, int64_t B, int64_t V, int64_t L, int64_t N, int64_t C) {
  if (pos_float32)
    decoder_input_typed<T, float>(tokens, mask_token, pos_table, index, out, B, V, L, N, C);
  else
    decoder_input_typed<T, T>(tokens, mask_token, pos_table, index, out, B, V, L, N, C);
}

// Rows summed per task of the mask token's gradient: a fixed split, so the sum's order
// (and its rounding) does not depend on the number of threads.
constexpr int64_t kSumRows = 128;

template <typename T>
void sum_rows_typed(const void* grad, TokenStrides gs, void* out, int64_t B, int64_t K, int64_t C) {
  using Acc = typename Scalar<T>::acc;
  const T* g = static_cast<const T*>(grad);
  const int64_t rows = B * K, chunks = (rows + kSumRows - 1) / kSumRows;
  std::vector<Acc> partial(chunks * C, Acc{0});
  parallel_for(chunks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t chunk = begin; chunk < end; ++chunk) {
      Acc* acc = partial.data() + chunk * C;
      const int64_t last = std::min(rows, (chunk + 1) * kSumRows);
      for (int64_t r = chunk * kSumRows; r < last; ++r) {
        const T* row = g + strided_row(gs, r / K, r % K);
        if (gs.c == 1) {  // the usual case, kept apart so that it vectorises
          for (int64_t c = 0; c < C; ++c) acc[c] += Scalar<T>::load(row[c]);
        } else {
          for (int64_t c = 0; c < C; ++c) acc[c] += Scalar<T>::load(row[c * gs.c]);
        }
      }
    }
  });
  Acc* o = static_cast<Acc*>(out);
  for (int64_t c = 0; c < C; ++c) o[c] = Acc{0};
  for (int64_t chunk = 0; chunk < chunks; ++chunk)
    for (int64_t c = 0; c < C; ++c) o[c] += partial[chunk * C + c];
}

}  // namespace

void sum_rows_cpu(const void* grad, TokenStrides gs, void* out, int64_t B, int64_t K, int64_t C,
                  const std::string& dtype) {
  if (dtype == "float32")
    sum_rows_typed<float>(grad, gs, out, B, K, C);
  else if (dtype == "bfloat16")
    sum_rows_typed<bf16>(grad, gs, out, B, K, C);
  else if (dtype == "float16")
    sum_rows_typed<f16>(grad, gs, out, B, K, C);
  else if (dtype == "float64")
    sum_rows_typed<double>(grad, gs, out, B, K, C);
  else
    throw std::invalid_argument("sum_rows: unsupported dtype " + dtype);
}

void decoder_input_cpu(const void* tokens, const void* mask_token, const void* pos_table, const int64_t* index,
                       void* out, int64_t B, int64_t V, int64_t L, int64_t N, int64_t C, const std::string& dtype,
                       const std::string& pos_dtype) {
  const bool pos_float32 = pos_dtype == "float32";
  if (!pos_float32 && pos_dtype != dtype)
    throw std::invalid_argument("pos_table must be float32 or " + dtype + ", got " + pos_dtype);
  if (dtype == "float32")
    decoder_input_pos<float>(pos_float32, tokens, mask_token, pos_table, index, out, B, V, L, N, C);
  else if (dtype == "bfloat16")
    decoder_input_pos<bf16>(pos_float32, tokens, mask_token, pos_table, index, out, B, V, L, N, C);
  else if (dtype == "float16")
    decoder_input_pos<f16>(pos_float32, tokens, mask_token, pos_table, index, out, B, V, L, N, C);
  else if (dtype == "float64")
    decoder_input_pos<double>(pos_float32, tokens, mask_token, pos_table, index, out, B, V, L, N, C);
  else
    throw std::invalid_argument("decoder_input: unsupported dtype " + dtype);
}

}  // namespace fmae
