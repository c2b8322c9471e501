// Index math of region_histogram, shared by the CUDA kernel and the C++ CPU path.
//
// Token order is VideoMAE's: n = (ti * Hp + hi) * Wp + wi. Both paths split each clip
// into *runs*: up to `run_tokens` consecutive tokens of one token row (fixed ti, hi),
// so a run's counters (run_tokens * K ints) fit in GPU shared memory / CPU cache and
// its output rows are contiguous. A run is read as tt * th pixel rows; each row holds
// one `tw`-pixel segment per token.
#pragma once
#include "hd.cuh"

namespace fmae {

// Counters per run: 16 KiB of int32, under the 48 KiB of shared memory any launch gets.
constexpr int64_t kRunCounters = 4096;

struct TubeletGrid {
  int64_t T, H, W;     // map size
  int64_t tt, th, tw;  // tubelet size
  int64_t Tp, Hp, Wp;  // tokens along each axis
  int64_t K;           // number of classes
  int64_t run_tokens;  // most tokens in one run
  int64_t row_runs;    // runs per token row

  FMAE_HD int64_t num_tokens() const { return Tp * Hp * Wp; }
  FMAE_HD int64_t tubelet_volume() const { return tt * th * tw; }
  FMAE_HD int64_t runs_per_clip() const { return Tp * Hp * row_runs; }
  // Pixel rows of a run (rows of tw-pixel segments, one per token).
  FMAE_HD int64_t run_rows() const { return tt * th; }
};

FMAE_HD TubeletGrid make_grid(int64_t T, int64_t H, int64_t W, int64_t tt, int64_t th, int64_t tw, int64_t K) {
  const int64_t Wp = W / tw;
  const int64_t per_run = kRunCounters / K > 0 ? kRunCounters / K : 1;
  const int64_t run_tokens = Wp < per_run ? Wp : per_run;
  const int64_t row_runs = run_tokens > 0 ? (Wp + run_tokens - 1) / run_tokens : 0;
  return TubeletGrid{T, H, W, tt, th, tw, T / tt, H / th, Wp, K, run_tokens, row_runs};
}

struct TokenRun {
  int64_t first_token;  // token index n (within the clip) of the run's first token
  int64_t num_tokens;   // tokens in this run (the last run of a row may be shorter)
  int64_t origin;       // offset in the [T, H, W] map of the first token's (0, 0, 0) pixel
};

// The u-th run of a clip, u in [0, runs_per_clip()), in token order.
FMAE_HD TokenRun token_run(const TubeletGrid& g, int64_t u) {
  const int64_t row = u / g.row_runs;  // token row ti * Hp + hi
  const int64_t first_wi = (u % g.row_runs) * g.run_tokens;
  const int64_t ti = row / g.Hp, hi = row % g.Hp;
  const int64_t left = g.Wp - first_wi;
  return TokenRun{row * g.Wp + first_wi, left < g.run_tokens ? left : g.run_tokens,
                  (ti * g.tt * g.H + hi * g.th) * g.W + first_wi * g.tw};
}

// Offset in the [T, H, W] map of the tw-pixel segment that the run's token `wi`
// (0-based within the run) has in pixel row r = dt * th + dh.
FMAE_HD int64_t segment_offset(const TubeletGrid& g, const TokenRun& run, int64_t r, int64_t wi) {
  return run.origin + ((r / g.th) * g.H + r % g.th) * g.W + wi * g.tw;
}

// Counter a region id goes to. An id >= K cannot be counted; sending it to bin 0
// keeps the kernels memory-safe on unchecked input (the callers report such ids).
FMAE_HD int64_t histogram_bin(uint8_t id, int64_t K) { return id < K ? id : 0; }

}  // namespace fmae
