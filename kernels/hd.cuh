// FMAE_HD marks index math shared by the CUDA kernels and the C++ CPU path, so the
// CPU tests run the same arithmetic the GPU does.
#pragma once
#include <cstdint>

#if defined(__CUDACC__)
#define FMAE_HD __host__ __device__ __forceinline__
#else
#define FMAE_HD inline
#endif
