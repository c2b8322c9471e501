// region_histogram on the GPU: one block per run of tokens (see region_histogram.cuh),
// counting into shared memory, then writing the run's contiguous output rows.
#include "launch.cuh"
#include "ops_cuda.h"
#include "region_histogram.cuh"

namespace fmae {

namespace {

constexpr int kThreads = 256;

// Adds a segment's pixels to its token's counters, one atomic per run of equal ids:
// region maps are piecewise constant, so a segment usually costs one atomic.
struct RunCounter {
  int* counts;  // the token's K counters in shared memory
  int64_t K;
  int64_t bin = -1;
  int run = 0;

  __device__ void add(uint8_t id) {
    const int64_t b = histogram_bin(id, K);
    if (b != bin) {
      flush();
      bin = b;
    }
    ++run;
  }
  __device__ void flush() {
    if (run > 0) atomicAdd(counts + bin, run);
    run = 0;
  }
};

// kVec16: segments are 16-byte aligned multiples of 16 bytes, read as uint4.
template <bool kVec16>
__global__ void __launch_bounds__(kThreads)
    region_histogram_kernel(const uint8_t* __restrict__ maps, float* __restrict__ out, int64_t total_runs,
                            TubeletGrid g, float inv_volume) {
  extern __shared__ int counts[];  // [g.run_tokens, K]
  const int64_t runs = g.runs_per_clip();
  for (int64_t task = blockIdx.x; task < total_runs; task += gridDim.x) {
    const int64_t b = task / runs;
    const TokenRun run = token_run(g, task % runs);
    const uint8_t* clip = maps + b * g.T * g.H * g.W;
    const int64_t n_counts = run.num_tokens * g.K;
    for (int64_t i = threadIdx.x; i < n_counts; i += blockDim.x) counts[i] = 0;
    __syncthreads();
    // Consecutive threads take consecutive segments of a pixel row: coalesced reads.
    const int64_t segments = g.run_rows() * run.num_tokens;
    for (int64_t s = threadIdx.x; s < segments; s += blockDim.x) {
      const int64_t r = s / run.num_tokens, wi = s % run.num_tokens;
      const uint8_t* seg = clip + segment_offset(g, run, r, wi);
      RunCounter counter{counts + wi * g.K, g.K};
      if constexpr (kVec16) {
        for (int64_t dw = 0; dw < g.tw; dw += 16) {
          const uint4 v = __ldg(reinterpret_cast<const uint4*>(seg + dw));
          const uint8_t* ids = reinterpret_cast<const uint8_t*>(&v);
#pragma unroll
          for (int q = 0; q < 16; ++q) counter.add(ids[q]);
        }
      } else {
        for (int64_t dw = 0; dw < g.tw; ++dw) counter.add(__ldg(seg + dw));
      }
      counter.flush();
    }
    __syncthreads();
    float* o = out + (b * g.num_tokens() + run.first_token) * g.K;
    for (int64_t i = threadIdx.x; i < n_counts; i += blockDim.x) o[i] = static_cast<float>(counts[i]) * inv_volume;
    __syncthreads();  // the next task's zeroing must not overtake these reads
  }
}

}  // namespace

void region_histogram_cuda(const uint8_t* maps, float* out, int64_t B, int64_t T, int64_t H, int64_t W,
                           int64_t tt, int64_t th, int64_t tw, int64_t K, uintptr_t stream) {
  const TubeletGrid g = make_grid(T, H, W, tt, th, tw, K);
  const int64_t total_runs = B * g.runs_per_clip();
  if (total_runs == 0) return;
  DeviceGuard device(out);
  const float inv_volume = 1.0f / static_cast<float>(g.tubelet_volume());
  const size_t shared = static_cast<size_t>(g.run_tokens * K) * sizeof(int);
  const unsigned int blocks = blocks_for(total_runs, 1);
  // tw divides W, so every segment starts a multiple of tw bytes after `maps`.
  const bool vec16 = tw % 16 == 0 && reinterpret_cast<uintptr_t>(maps) % 16 == 0;
  if (vec16)
    region_histogram_kernel<true><<<blocks, kThreads, shared, as_stream(stream)>>>(maps, out, total_runs, g, inv_volume);
  else
    region_histogram_kernel<false><<<blocks, kThreads, shared, as_stream(stream)>>>(maps, out, total_runs, g, inv_volume);
  check_launch("region_histogram_kernel");
}

}  // namespace fmae
