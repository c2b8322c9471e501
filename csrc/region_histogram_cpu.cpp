#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

#include "ops_cpu.h"
#include "parallel.h"
#include "region_histogram.cuh"

namespace fmae {

void region_histogram_cpu(const uint8_t* maps, float* out, int64_t B, int64_t T, int64_t H, int64_t W,
                          int64_t tt, int64_t th, int64_t tw, int64_t K) {
  // The same runs, segments and bins as the CUDA kernel (kernels/region_histogram.cu),
  // so the CPU tests check its index math.
  const TubeletGrid g = make_grid(T, H, W, tt, th, tw, K);
  const int64_t runs = g.runs_per_clip();
  const float inv_volume = 1.0f / static_cast<float>(g.tubelet_volume());
  // One task per run: no two tasks write the same output row. A run reads
  // tt * th * W pixels at most (7 KiB at 2x16x224), so 16 make a useful grain.
  parallel_for(B * runs, 16, [&](int64_t begin, int64_t end) {
    std::vector<int32_t> counts(g.run_tokens * K);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / runs;
      const TokenRun run = token_run(g, task % runs);
      const uint8_t* clip = maps + b * T * H * W;
      std::fill(counts.begin(), counts.end(), 0);
      uint8_t worst = 0;
      for (int64_t r = 0; r < g.run_rows(); ++r) {
        for (int64_t wi = 0; wi < run.num_tokens; ++wi) {
          const uint8_t* seg = clip + segment_offset(g, run, r, wi);
          int32_t* c = counts.data() + wi * K;
          for (int64_t dw = 0; dw < tw; ++dw) {
            worst = std::max(worst, seg[dw]);
            ++c[histogram_bin(seg[dw], K)];
          }
        }
      }
      if (worst >= K)
        throw std::invalid_argument("region_maps holds id " + std::to_string(worst) + " >= num_classes (" +
                                    std::to_string(K) + ")");
      float* o = out + (b * g.num_tokens() + run.first_token) * K;
      for (int64_t i = 0; i < run.num_tokens * K; ++i) o[i] = static_cast<float>(counts[i]) * inv_volume;
    }
  });
}

}  // namespace fmae
