// CPU implementations of FMAE's ops over raw buffers (the extension does not link
// libtorch, so it works with whichever torch the user has).
#pragma once
#include <cstdint>
#include <string>

#include "tokens.cuh"

namespace fmae {

// maps: uint8 [B, T, H, W]; out: float32 [B, N, K]. Throws std::invalid_argument on an
// id >= K.
void region_histogram_cpu(const uint8_t* maps, float* out, int64_t B, int64_t T, int64_t H, int64_t W,
                          int64_t tt, int64_t th, int64_t tw, int64_t K);

// x: [B, N, C] with element strides xs (any layout, expanded too), index: int64 [B, M],
// out: contiguous [B, M, C]; elements of elem_size bytes. Throws std::out_of_range on an
// index outside [0, N).
void gather_tokens_cpu(const void* x, TokenStrides xs, const int64_t* index, void* out, int64_t B, int64_t N,
                       int64_t M, int64_t C, int64_t elem_size);

// src: [B, M, C] with element strides ss, index: int64 [B, M], out: contiguous
// [B, n, C] (zero where nothing lands), each row written once. Throws
// std::out_of_range on an index outside [0, n).
void scatter_tokens_cpu(const void* src, TokenStrides ss, const int64_t* index, void* out, int64_t B, int64_t M,
                        int64_t n, int64_t C, int64_t elem_size);

// tokens: contiguous [B, V, C], mask_token: [C], both of `dtype` ("float32", "bfloat16",
// "float16" or "float64"); pos_table: [N, C] of `pos_dtype` (dtype or "float32");
// index: int64 [B, L]; out: [B, L, C] of dtype,
// out[b, l] = (tokens[b, l] if l < V else mask_token) + dtype(pos_table[index[b, l]]).
// Throws std::out_of_range on an index outside [0, N).
void decoder_input_cpu(const void* tokens, const void* mask_token, const void* pos_table, const int64_t* index,
                       void* out, int64_t B, int64_t V, int64_t L, int64_t N, int64_t C, const std::string& dtype,
                       const std::string& pos_dtype);

// grad: [B, K, C] of `dtype` with element strides gs (any layout, expanded too); out:
// [C] of its accumulator type (float64 for "float64", float32 otherwise), the sum over
// B and K, in an order fixed by the shape alone: the mask token's gradient.
void sum_rows_cpu(const void* grad, TokenStrides gs, void* out, int64_t B, int64_t K, int64_t C,
                  const std::string& dtype);

}  // namespace fmae
