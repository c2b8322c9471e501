// CPU implementations of FMAE's ops over raw buffers (the extension does not link
// libtorch, so it works with whichever torch the user has).
#pragma once
#include <cstdint>

namespace fmae {

// maps: uint8 [B, T, H, W]; out: float32 [B, N, K]. Throws std::invalid_argument on an
// id >= K.
void region_histogram_cpu(const uint8_t* maps, float* out, int64_t B, int64_t T, int64_t H, int64_t W,
                          int64_t tt, int64_t th, int64_t tw, int64_t K);

// x: [B, N, C], index: int64 [B, M], out: [B, M, C]; elements of elem_size bytes.
// Throws std::out_of_range on an index outside [0, N).
void gather_tokens_cpu(const void* x, const int64_t* index, void* out, int64_t B, int64_t N, int64_t M,
                       int64_t C, int64_t elem_size);

// src: [B, M, C], index: int64 [B, M], out: [B, n, C] (zero where nothing lands).
// Throws std::out_of_range on an index outside [0, n).
void scatter_tokens_cpu(const void* src, const int64_t* index, void* out, int64_t B, int64_t M, int64_t n,
                        int64_t C, int64_t elem_size);

}  // namespace fmae
