#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "huge_pages.h"
#include "ops_cpu.h"
#include "parallel.h"
#include "tokens.cuh"

namespace fmae {

namespace {

[[noreturn]] void throw_out_of_range(int64_t idx, int64_t n) {
  throw std::out_of_range("index " + std::to_string(idx) + " out of range [0, " + std::to_string(n) + ")");
}

// Rows are at least a few hundred bytes, so a grain of 64 rows keeps threads busy.
constexpr int64_t kRowGrain = 64;

template <typename Word>
void copy_strided(Word* dst, const Word* src, int64_t C, int64_t stride) {
  if (stride == 0) {  // an expanded row: one value (a scalar's gradient, say)
    const Word v = src[0];
    for (int64_t c = 0; c < C; ++c) dst[c] = v;
  } else {
    for (int64_t c = 0; c < C; ++c) dst[c] = src[c * stride];
  }
}

// Copies C elements of elem_size bytes, `stride` elements apart, from src to the
// contiguous dst. Elements are moved as integers of their width: bit-exact.
void copy_row(char* dst, const char* src, int64_t C, int64_t stride, int64_t elem_size) {
  if (stride == 1) {
    std::memcpy(dst, src, C * elem_size);
    return;
  }
  switch (elem_size) {
    case 1: return copy_strided(reinterpret_cast<uint8_t*>(dst), reinterpret_cast<const uint8_t*>(src), C, stride);
    case 2: return copy_strided(reinterpret_cast<uint16_t*>(dst), reinterpret_cast<const uint16_t*>(src), C, stride);
    case 4: return copy_strided(reinterpret_cast<uint32_t*>(dst), reinterpret_cast<const uint32_t*>(src), C, stride);
    case 8: return copy_strided(reinterpret_cast<uint64_t*>(dst), reinterpret_cast<const uint64_t*>(src), C, stride);
    default: throw std::invalid_argument("element size must be 1, 2, 4 or 8 bytes, got " + std::to_string(elem_size));
  }
}

}  // namespace

void gather_tokens_cpu(const void* x, TokenStrides xs, const int64_t* index, void* out, int64_t B, int64_t N,
                       int64_t M, int64_t C, int64_t elem_size) {
  const int64_t row_bytes = C * elem_size;
  const char* src = static_cast<const char*>(x);
  char* dst = static_cast<char*>(out);
  parallel_for(B * M, kRowGrain, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const int64_t idx = index[r];
      if (!index_in_range(idx, N)) throw_out_of_range(idx, N);
      copy_row(dst + r * row_bytes, src + strided_row(xs, r / M, idx) * elem_size, C, xs.c, elem_size);
    }
  });
}

void scatter_tokens_cpu(const void* src, TokenStrides ss, const int64_t* index, void* out, int64_t B, int64_t M,
                        int64_t n, int64_t C, int64_t elem_size) {
  const int64_t row_bytes = C * elem_size;
  const char* s = static_cast<const char*>(src);
  char* dst = static_cast<char*>(out);
  // Which source token lands on each grid row (-1: none). With it every grid row is
  // written once, zeros or a copy, by one thread: a fresh output is first touched in
  // parallel (its page faults are most of the cost, see huge_pages.h) and never twice.
  std::vector<int64_t> source(B * n, -1);
  for (int64_t r = 0; r < B * M; ++r) {
    const int64_t idx = index[r];
    if (!index_in_range(idx, n)) throw_out_of_range(idx, n);
    source[token_row(r, M, idx, n)] = r;
  }
  advise_huge_pages(out, B * n * row_bytes);
  parallel_for(B * n, kRowGrain, [&](int64_t begin, int64_t end) {
    for (int64_t g = begin; g < end; ++g) {
      const int64_t r = source[g];
      if (r < 0)
        std::memset(dst + g * row_bytes, 0, row_bytes);
      else
        copy_row(dst + g * row_bytes, s + strided_row(ss, r / M, r % M) * elem_size, C, ss.c, elem_size);
    }
  });
}

}  // namespace fmae
