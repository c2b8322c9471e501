// decoder_input on the GPU: one warp per output row writes
// (visible token or mask token) + pos_table[index] in one pass, with the arithmetic of
// kernels/decoder_input.cuh that the C++ CPU path also runs.
#include <stdexcept>
#include <string>

#include "decoder_input.cuh"
#include "launch.cuh"
#include "ops_cuda.h"
#include "tokens.cuh"

namespace fmae {

namespace {

constexpr int kThreads = 256;
constexpr int kWarp = 32;
constexpr int kRowsPerBlock = kThreads / kWarp;

// An index out of range (possible only when the caller skipped its check) adds no
// position embedding, so that memory is never read out of bounds.
template <typename T, typename P>
__global__ void __launch_bounds__(kThreads)
    decoder_input_rows(const T* __restrict__ tokens, const T* __restrict__ mask_token, const P* __restrict__ pos,
                       const int64_t* __restrict__ index, T* __restrict__ out, int64_t rows, int64_t V, int64_t L,
                       int64_t N, int64_t C) {
  const int lane = threadIdx.x % kWarp;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * kRowsPerBlock;
  for (int64_t r = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.x / kWarp; r < rows; r += warps) {
    const int64_t idx = index[r];
    const int64_t s = decoder_source_row(r, L, V);
    const T* x = s >= 0 ? tokens + s * C : mask_token;
    T* y = out + r * C;
    if (index_in_range(idx, N)) {
      const P* p = pos + idx * C;
      for (int64_t c = lane; c < C; c += kWarp) y[c] = decoder_element<T, P>(x[c], p[c]);
    } else {
      for (int64_t c = lane; c < C; c += kWarp) y[c] = x[c];
    }
  }
}

template <typename T, typename P>
void launch_typed(const void* tokens, const void* mask_token, const void* pos_table, const int64_t* index, void* out,
                  int64_t B, int64_t V, int64_t L, int64_t N, int64_t C, cudaStream_t stream) {
  const int64_t rows = B * L;
  decoder_input_rows<T, P><<<blocks_for(rows, kRowsPerBlock), kThreads, 0, stream>>>(
      static_cast<const T*>(tokens), static_cast<const T*>(mask_token), static_cast<const P*>(pos_table), index,
      static_cast<T*>(out), rows, V, L, N, C);
}

// pos_table is either in the tokens' dtype or float32 (the Python side casts others).
template <typename T>
void launch_pos(bool pos_float32, const void* tokens, const void* mask_token, const void* pos_table,
                const int64_t* index, void* out, int64_t B, int64_t V, int64_t L, int64_t N, int64_t C,
                cudaStream_t stream) {
  if (pos_float32)
    launch_typed<T, float>(tokens, mask_token, pos_table, index, out, B, V, L, N, C, stream);
  else
    launch_typed<T, T>(tokens, mask_token, pos_table, index, out, B, V, L, N, C, stream);
}

}  // namespace

void decoder_input_cuda(const void* tokens, const void* mask_token, const void* pos_table, const int64_t* index,
                        void* out, int64_t B, int64_t V, int64_t L, int64_t N, int64_t C, const std::string& dtype,
                        const std::string& pos_dtype, uintptr_t stream) {
  const bool pos_float32 = pos_dtype == "float32";
  if (!pos_float32 && pos_dtype != dtype)
    throw std::invalid_argument("pos_table must be float32 or " + dtype + ", got " + pos_dtype);
  if (B * L * C == 0) return;
  DeviceGuard device(out);
  const cudaStream_t s = as_stream(stream);
  if (dtype == "float32")
    launch_pos<float>(pos_float32, tokens, mask_token, pos_table, index, out, B, V, L, N, C, s);
  else if (dtype == "bfloat16")
    launch_pos<bf16>(pos_float32, tokens, mask_token, pos_table, index, out, B, V, L, N, C, s);
  else if (dtype == "float16")
    launch_pos<f16>(pos_float32, tokens, mask_token, pos_table, index, out, B, V, L, N, C, s);
  else if (dtype == "float64")
    launch_pos<double>(pos_float32, tokens, mask_token, pos_table, index, out, B, V, L, N, C, s);
  else
    throw std::invalid_argument("decoder_input: unsupported dtype " + dtype);
  check_launch("decoder_input");
}

}  // namespace fmae
