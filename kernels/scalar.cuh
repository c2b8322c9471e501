// The element types of FMAE's arithmetic kernels and their conversions to and from the
// accumulator type, written once for the CPU and the GPU, bit for bit as torch does
// them: bf16 and fp16 widen exactly to float and narrow with round-to-nearest-even, so
// a kernel that computes `store(load(a) + load(b))` gives torch's `a + b` exactly.
//
// bf16 and fp16 are carried as their bits (the C++ extension is torch-free and has no
// half types of its own); float and double are themselves.
#pragma once
#include <cstring>

#include "hd.cuh"

namespace fmae {

struct bf16 {
  uint16_t bits;
};
struct f16 {
  uint16_t bits;
};

FMAE_HD uint32_t float_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return u;
}

FMAE_HD float bits_float(uint32_t u) {
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

// c10::detail::round_to_nearest_even: NaN becomes the canonical quiet NaN 0x7fc0.
FMAE_HD bf16 float_to_bf16(float f) {
  if (f != f) return bf16{0x7fc0};
  const uint32_t u = float_bits(f);
  return bf16{static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16)};
}

FMAE_HD float bf16_to_float(bf16 h) { return bits_float(static_cast<uint32_t>(h.bits) << 16); }

// IEEE binary16 → float, exact; NaN payloads are kept (as c10's fp16_ieee_to_fp32_value).
FMAE_HD float f16_to_float(f16 h) {
  const uint32_t sign = static_cast<uint32_t>(h.bits & 0x8000u) << 16;
  const uint32_t exponent = (h.bits >> 10) & 0x1fu;
  const uint32_t mantissa = h.bits & 0x3ffu;
  if (exponent == 0x1f) return bits_float(sign | 0x7f800000u | (mantissa << 13));  // inf, NaN
  if (exponent != 0) return bits_float(sign | ((exponent + (127 - 15)) << 23) | (mantissa << 13));
  // Zero or subnormal: mantissa · 2^-24, exact in float.
  return bits_float(sign | float_bits(static_cast<float>(mantissa) * 5.9604644775390625e-8f));
}

// float → IEEE binary16 with round-to-nearest-even (F. Giesen's float_to_half_fast3_rtne);
// overflow gives inf, NaN the quiet NaN 0x7e00 with the sign kept (as c10's
// fp16_ieee_from_fp32_value).
FMAE_HD f16 float_to_f16(float f) {
  const uint32_t u = float_bits(f);
  const uint32_t sign = (u >> 16) & 0x8000u;
  uint32_t a = u & 0x7fffffffu;
  uint32_t h;
  if (a >= (127u + 16u) << 23) {  // |f| >= 2^16: inf or NaN (values that round to inf come below)
    h = a > 0x7f800000u ? 0x7e00u : 0x7c00u;
  } else if (a < (127u - 14u) << 23) {  // below the smallest normal half, 2^-14
    // Adding 0.5 lines the half's subnormal mantissa up with the float's last bits, and
    // the float add rounds it to nearest even.
    h = float_bits(bits_float(a) + 0.5f) - float_bits(0.5f);
  } else {
    const uint32_t odd = (a >> 13) & 1u;
    a += (static_cast<uint32_t>(15 - 127) << 23) + 0xfffu + odd;  // rebias, round half to even
    h = a >> 13;  // a carry into the exponent gives the next binade, or inf above 65504
  }
  return f16{static_cast<uint16_t>(sign | h)};
}

// Scalar<T>: T's accumulator type, and T to and from it.
template <typename T>
struct Scalar;

template <>
struct Scalar<float> {
  using acc = float;
  static FMAE_HD float load(float v) { return v; }
  static FMAE_HD float store(float v) { return v; }
};

template <>
struct Scalar<double> {
  using acc = double;
  static FMAE_HD double load(double v) { return v; }
  static FMAE_HD double store(double v) { return v; }
};

template <>
struct Scalar<bf16> {
  using acc = float;
  static FMAE_HD float load(bf16 v) { return bf16_to_float(v); }
  static FMAE_HD bf16 store(float v) { return float_to_bf16(v); }
};

template <>
struct Scalar<f16> {
  using acc = float;
  static FMAE_HD float load(f16 v) { return f16_to_float(v); }
  static FMAE_HD f16 store(float v) { return float_to_f16(v); }
};

// `v` (of type P) converted to T as torch's `.to(T)` does, in T's accumulator type.
template <typename T, typename P>
FMAE_HD typename Scalar<T>::acc as_acc_of(P v) {
  using Acc = typename Scalar<T>::acc;
  return Scalar<T>::load(Scalar<T>::store(static_cast<Acc>(Scalar<P>::load(v))));
}

}  // namespace fmae
