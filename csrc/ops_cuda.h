// CUDA implementations of FMAE's ops over raw device buffers (kernels/*.cu), the GPU
// mirror of ops_cpu.h. Each launches on `stream` (a cudaStream_t passed as an integer,
// so this header needs no CUDA headers), on the device that owns the output, and
// returns without synchronising. Launch errors throw std::runtime_error.
#pragma once
#include <cstdint>
#include <string>

#include "tokens.cuh"

namespace fmae {

// maps: uint8 [B, T, H, W]; out: float32 [B, N, K]. Ids >= K are not detected (the
// caller checks them); they count as class 0.
void region_histogram_cuda(const uint8_t* maps, float* out, int64_t B, int64_t T, int64_t H, int64_t W,
                           int64_t tt, int64_t th, int64_t tw, int64_t K, uintptr_t stream);

// x: [B, N, C] with element strides xs (any layout, expanded too), index: int64 [B, M],
// out: contiguous [B, M, C]; elements of elem_size bytes. An index outside [0, N) is
// not detected (the caller checks); its row is zero.
void gather_tokens_cuda(const void* x, TokenStrides xs, const int64_t* index, void* out, int64_t B, int64_t N,
                        int64_t M, int64_t C, int64_t elem_size, uintptr_t stream);

// src: [B, M, C] with element strides ss, index: int64 [B, M], out: contiguous
// [B, n, C] (zero where nothing lands). An index outside [0, n) is not detected (the
// caller checks); its row is dropped.
void scatter_tokens_cuda(const void* src, TokenStrides ss, const int64_t* index, void* out, int64_t B, int64_t M,
                         int64_t n, int64_t C, int64_t elem_size, uintptr_t stream);

// As decoder_input_cpu (ops_cpu.h). An index outside [0, N) is not detected (the
// caller checks); its row gets no position embedding.
void decoder_input_cuda(const void* tokens, const void* mask_token, const void* pos_table, const int64_t* index,
                        void* out, int64_t B, int64_t V, int64_t L, int64_t N, int64_t C, const std::string& dtype,
                        const std::string& pos_dtype, uintptr_t stream);

}  // namespace fmae
