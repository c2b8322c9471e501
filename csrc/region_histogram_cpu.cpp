#include <stdexcept>
#include <string>
#include <vector>

#include "ops_cpu.h"
#include "parallel.h"
#include "region_histogram.cuh"

namespace fmae {

void region_histogram_cpu(const uint8_t* maps, float* out, int64_t B, int64_t T, int64_t H, int64_t W,
                          int64_t tt, int64_t th, int64_t tw, int64_t K) {
  const TubeletGrid g = make_grid(T, H, W, tt, th, tw);
  const int64_t slab_tokens = g.Hp * g.Wp;  // tokens of one tubelet time slice
  const float inv_volume = 1.0f / static_cast<float>(g.tubelet_volume());
  // One task per (clip, time slice): its tokens' counts fit in cache and no two tasks
  // write the same output row.
  parallel_for(B * g.Tp, 4, [&](int64_t begin, int64_t end) {
    std::vector<int32_t> counts(slab_tokens * K);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / g.Tp, ti = task % g.Tp;
      const uint8_t* clip = maps + b * T * H * W;
      const int64_t first = token_of_pixel(g, ti * tt, 0, 0);
      std::fill(counts.begin(), counts.end(), 0);
      uint8_t worst = 0;
      for (int64_t t = ti * tt; t < (ti + 1) * tt; ++t) {
        for (int64_t h = 0; h < H; ++h) {
          const uint8_t* row = clip + (t * H + h) * W;
          for (int64_t wi = 0; wi < g.Wp; ++wi) {
            int32_t* c = counts.data() + (token_of_pixel(g, t, h, wi * tw) - first) * K;
            for (int64_t dw = 0; dw < tw; ++dw) {
              const uint8_t v = row[wi * tw + dw];
              worst = v > worst ? v : worst;
              ++c[v < K ? v : 0];
            }
          }
        }
      }
      if (worst >= K)
        throw std::invalid_argument("region_maps holds id " + std::to_string(worst) + " >= num_classes (" +
                                    std::to_string(K) + ")");
      float* o = out + (b * g.num_tokens() + first) * K;
      for (int64_t i = 0; i < slab_tokens * K; ++i) o[i] = static_cast<float>(counts[i]) * inv_volume;
    }
  });
}

}  // namespace fmae
