#include <cstring>
#include <stdexcept>
#include <string>

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

}  // namespace

void gather_tokens_cpu(const void* x, const int64_t* index, void* out, int64_t B, int64_t N, int64_t M,
                       int64_t C, int64_t elem_size) {
  const int64_t row_bytes = C * elem_size;
  const char* src = static_cast<const char*>(x);
  char* dst = static_cast<char*>(out);
  parallel_for(B * M, kRowGrain, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const int64_t idx = index[r];
      if (!index_in_range(idx, N)) throw_out_of_range(idx, N);
      std::memcpy(dst + r * row_bytes, src + token_row(r, M, idx, N) * row_bytes, row_bytes);
    }
  });
}

void scatter_tokens_cpu(const void* src, const int64_t* index, void* out, int64_t B, int64_t M, int64_t n,
                        int64_t C, int64_t elem_size) {
  const int64_t row_bytes = C * elem_size;
  const char* s = static_cast<const char*>(src);
  char* dst = static_cast<char*>(out);
  std::memset(dst, 0, B * n * row_bytes);
  parallel_for(B * M, kRowGrain, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const int64_t idx = index[r];
      if (!index_in_range(idx, n)) throw_out_of_range(idx, n);
      std::memcpy(dst + token_row(r, M, idx, n) * row_bytes, s + r * row_bytes, row_bytes);
    }
  });
}

}  // namespace fmae
