// gather_tokens / scatter_tokens on the GPU: row copies between a [B, M, C] tensor and
// the rows of a [B, n, C] grid that an int64 [B, M] index names. Dtype-agnostic: a row
// is C * elem_size bytes, copied in the widest word that its size and the pointers'
// alignment allow (16 bytes for the usual bf16/fp32 rows of 768 channels).
#include "launch.cuh"
#include "ops_cuda.h"
#include "tokens.cuh"

namespace fmae {

namespace {

constexpr int kThreads = 256;
constexpr int kWarp = 32;
constexpr int kRowsPerBlock = kThreads / kWarp;

// One warp per index entry r: kScatter copies row r of `from` to the grid row it
// names in `to`; otherwise (gather) the grid row of `from` to row r of `to`. An index
// out of range (possible only when the caller skipped its check) writes nothing in a
// scatter and a zero row in a gather, so that memory is never touched out of bounds.
template <typename Word, bool kScatter>
__global__ void __launch_bounds__(kThreads)
    copy_token_rows(const Word* __restrict__ from, const int64_t* __restrict__ index, Word* __restrict__ to,
                    int64_t rows, int64_t M, int64_t n_tokens, int64_t row_words) {
  const int lane = threadIdx.x % kWarp;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * kRowsPerBlock;
  for (int64_t r = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.x / kWarp; r < rows; r += warps) {
    const int64_t idx = index[r];
    if (index_in_range(idx, n_tokens)) {
      const int64_t grid_row = token_row(r, M, idx, n_tokens);
      const Word* src = from + (kScatter ? r : grid_row) * row_words;
      Word* dst = to + (kScatter ? grid_row : r) * row_words;
      for (int64_t j = lane; j < row_words; j += kWarp) dst[j] = src[j];
    } else if (!kScatter) {
      for (int64_t j = lane; j < row_words; j += kWarp) to[r * row_words + j] = Word{};
    }
  }
}

template <bool kScatter>
void launch_copy(const void* from, const int64_t* index, void* to, int64_t rows, int64_t M, int64_t n_tokens,
                 int64_t row_bytes, cudaStream_t stream) {
  const unsigned int blocks = blocks_for(rows, kRowsPerBlock);
  const auto launch = [&](auto word) {
    using Word = decltype(word);
    copy_token_rows<Word, kScatter><<<blocks, kThreads, 0, stream>>>(
        static_cast<const Word*>(from), index, static_cast<Word*>(to), rows, M, n_tokens,
        row_bytes / static_cast<int64_t>(sizeof(Word)));
  };
  // Every row starts a multiple of row_bytes after its base pointer.
  const uintptr_t align = reinterpret_cast<uintptr_t>(from) | reinterpret_cast<uintptr_t>(to) |
                          static_cast<uintptr_t>(row_bytes);
  if (align % 16 == 0)
    launch(uint4{});
  else if (align % 8 == 0)
    launch(uint2{});
  else if (align % 4 == 0)
    launch(uint32_t{});
  else if (align % 2 == 0)
    launch(uint16_t{});
  else
    launch(uint8_t{});
  check_launch(kScatter ? "scatter_tokens" : "gather_tokens");
}

}  // namespace

void gather_tokens_cuda(const void* x, const int64_t* index, void* out, int64_t B, int64_t N, int64_t M,
                        int64_t C, int64_t elem_size, uintptr_t stream) {
  if (B * M == 0 || C * elem_size == 0) return;
  DeviceGuard device(out);
  launch_copy<false>(x, index, out, B * M, M, N, C * elem_size, as_stream(stream));
}

void scatter_tokens_cuda(const void* src, const int64_t* index, void* out, int64_t B, int64_t M, int64_t n,
                         int64_t C, int64_t elem_size, uintptr_t stream) {
  const int64_t row_bytes = C * elem_size;
  if (B * n * row_bytes == 0) return;
  DeviceGuard device(out);
  check_cuda(cudaMemsetAsync(out, 0, static_cast<size_t>(B * n * row_bytes), as_stream(stream)), "scatter_tokens memset");
  if (B * M > 0) launch_copy<true>(src, index, out, B * M, M, n, row_bytes, as_stream(stream));
}

}  // namespace fmae
