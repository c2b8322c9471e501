// Index math of region_histogram: which token a pixel falls in, and which pixel is the
// i-th of a token. Token order is VideoMAE's: n = (ti * Hp + hi) * Wp + wi.
#pragma once
#include "hd.cuh"

namespace fmae {

struct TubeletGrid {
  int64_t T, H, W;     // map size
  int64_t tt, th, tw;  // tubelet size
  int64_t Tp, Hp, Wp;  // tokens along each axis

  FMAE_HD int64_t num_tokens() const { return Tp * Hp * Wp; }
  FMAE_HD int64_t tubelet_volume() const { return tt * th * tw; }
};

FMAE_HD TubeletGrid make_grid(int64_t T, int64_t H, int64_t W, int64_t tt, int64_t th, int64_t tw) {
  return TubeletGrid{T, H, W, tt, th, tw, T / tt, H / th, W / tw};
}

// Token that pixel (t, h, w) belongs to.
FMAE_HD int64_t token_of_pixel(const TubeletGrid& g, int64_t t, int64_t h, int64_t w) {
  return ((t / g.tt) * g.Hp + h / g.th) * g.Wp + w / g.tw;
}

// Offset in the [T, H, W] map of the i-th pixel (i in [0, tt*th*tw), row-major over
// (dt, dh, dw)) of token n.
FMAE_HD int64_t pixel_of_token(const TubeletGrid& g, int64_t n, int64_t i) {
  const int64_t wi = n % g.Wp, hi = (n / g.Wp) % g.Hp, ti = n / (g.Wp * g.Hp);
  const int64_t dw = i % g.tw, dh = (i / g.tw) % g.th, dt = i / (g.tw * g.th);
  return ((ti * g.tt + dt) * g.H + hi * g.th + dh) * g.W + wi * g.tw + dw;
}

}  // namespace fmae
