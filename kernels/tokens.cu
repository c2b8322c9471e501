// gather_tokens / scatter_tokens on the GPU: row copies between a [B, M, C] tensor and
// the rows of a [B, n, C] grid that an int64 [B, M] index names. The side read from
// (x of a gather, src of a scatter) may have any strides, expanded ones included; the
// side written is contiguous. Dtype-agnostic: when channels are contiguous a row is
// C * elem_size bytes, copied in the widest word that its size, the pointers and the
// row strides allow (16 bytes for the usual bf16/fp32 rows of 768 channels); otherwise
// element by element.
#include "launch.cuh"
#include "ops_cuda.h"
#include "tokens.cuh"

namespace fmae {

namespace {

constexpr int kThreads = 256;
constexpr int kWarp = 32;
constexpr int kRowsPerBlock = kThreads / kWarp;

// One warp per index entry r: kScatter copies row r of `from` to the grid row it
// names in `to`; otherwise (gather) the grid row of `from` to row r of `to`. `fs` are
// from's strides in Words. An index out of range (possible only when the caller skipped
// its check) writes nothing in a scatter and a zero row in a gather, so that memory is
// never touched out of bounds.
template <typename Word, bool kScatter>
__global__ void __launch_bounds__(kThreads)
    copy_token_rows(const Word* __restrict__ from, TokenStrides fs, const int64_t* __restrict__ index,
                    Word* __restrict__ to, int64_t rows, int64_t M, int64_t n_tokens, int64_t row_words) {
  const int lane = threadIdx.x % kWarp;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * kRowsPerBlock;
  for (int64_t r = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.x / kWarp; r < rows; r += warps) {
    const int64_t idx = index[r];
    if (index_in_range(idx, n_tokens)) {
      const Word* src = from + strided_row(fs, r / M, kScatter ? r % M : idx);
      Word* dst = to + (kScatter ? token_row(r, M, idx, n_tokens) : r) * row_words;
      for (int64_t j = lane; j < row_words; j += kWarp) dst[j] = src[j * fs.c];
    } else if (!kScatter) {
      for (int64_t j = lane; j < row_words; j += kWarp) to[r * row_words + j] = Word{};
    }
  }
}

template <bool kScatter, typename Word>
void launch_words(const void* from, TokenStrides fs, const int64_t* index, void* to, int64_t rows, int64_t M,
                  int64_t n_tokens, int64_t row_words, cudaStream_t stream) {
  copy_token_rows<Word, kScatter><<<blocks_for(rows, kRowsPerBlock), kThreads, 0, stream>>>(
      static_cast<const Word*>(from), fs, index, static_cast<Word*>(to), rows, M, n_tokens, row_words);
}

// `fs` in elements of elem_size bytes.
template <bool kScatter>
void launch_copy(const void* from, TokenStrides fs, const int64_t* index, void* to, int64_t rows, int64_t M,
                 int64_t n_tokens, int64_t C, int64_t elem_size, cudaStream_t stream) {
  const auto launch = [&](auto word) {
    using Word = decltype(word);
    const int64_t per_word = static_cast<int64_t>(sizeof(Word)) / elem_size;
    const TokenStrides ws{fs.b / per_word, fs.t / per_word, fs.c};
    launch_words<kScatter, Word>(from, ws, index, to, rows, M, n_tokens, C / per_word, stream);
  };
  // Every row starts a multiple of the row strides (read side) or of the row size
  // (written side) after its base pointer; wide words need contiguous channels.
  const int64_t row_bytes = C * elem_size;
  const uintptr_t align = reinterpret_cast<uintptr_t>(from) | reinterpret_cast<uintptr_t>(to) |
                          static_cast<uintptr_t>(row_bytes) | static_cast<uintptr_t>(fs.b * elem_size) |
                          static_cast<uintptr_t>(fs.t * elem_size);
  if (fs.c == 1 && align % 16 == 0)
    launch(uint4{});
  else if (fs.c == 1 && align % 8 == 0)
    launch(uint2{});
  else if (elem_size == 8)
    launch(uint64_t{});
  else if (fs.c == 1 && align % 4 == 0)
    launch(uint32_t{});
  else if (elem_size == 4)
    launch(uint32_t{});
  else if (fs.c == 1 && align % 2 == 0)
    launch(uint16_t{});
  else if (elem_size == 2)
    launch(uint16_t{});
  else
    launch(uint8_t{});
  check_launch(kScatter ? "scatter_tokens" : "gather_tokens");
}

}  // namespace

void gather_tokens_cuda(const void* x, TokenStrides xs, const int64_t* index, void* out, int64_t B, int64_t N,
                        int64_t M, int64_t C, int64_t elem_size, uintptr_t stream) {
  if (B * M == 0 || C * elem_size == 0) return;
  DeviceGuard device(out);
  launch_copy<false>(x, xs, index, out, B * M, M, N, C, elem_size, as_stream(stream));
}

void scatter_tokens_cuda(const void* src, TokenStrides ss, const int64_t* index, void* out, int64_t B, int64_t M,
                         int64_t n, int64_t C, int64_t elem_size, uintptr_t stream) {
  const int64_t row_bytes = C * elem_size;
  if (B * n * row_bytes == 0) return;
  DeviceGuard device(out);
  // GPU memory is not faulted in page by page as a fresh CPU buffer is: a memset and a
  // copy are two cheap passes.
  check_cuda(cudaMemsetAsync(out, 0, static_cast<size_t>(B * n * row_bytes), as_stream(stream)),
             "scatter_tokens memset");
  if (B * M > 0) launch_copy<true>(src, ss, index, out, B * M, M, n, C, elem_size, as_stream(stream));
}

}  // namespace fmae
