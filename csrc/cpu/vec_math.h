// Math<T> for SIMD vectors, so that activations.h compiles to at::vec code.
// This file is built once per CPU capability (DEFAULT, AVX2, AVX512, AVX512 + BF16).
#pragma once

#include "../math.h"

#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>

#include <type_traits>

namespace fused_acts {

namespace cpu {

// 2^k for integers k in [-126, 127], built from its exponent bits.
inline at::vec::Vectorized<float> pow2_of_int(at::vec::Vectorized<int32_t> k) {
  using VI = at::vec::Vectorized<int32_t>;
  return at::vec::cast<float>((k + VI(0x7f)) << VI(23));
}

// u·2^q for integral q in [-252, 254], rounded once, subnormal results included.
inline at::vec::Vectorized<float> scale_by_pow2(at::vec::Vectorized<float> u, at::vec::Vectorized<float> q) {
#if defined(CPU_CAPABILITY_AVX512)
  return _mm512_scalef_ps(u, q);
#else
  // In two factors, so that results in the subnormal range are right.
  using VI = at::vec::Vectorized<int32_t>;
  const VI qi = at::vec::convert_to_int_of_same_size(q);
  const VI half = qi >> VI(1);
  return u * pow2_of_int(half) * pow2_of_int(qi - half);
#endif
}

// u·2^q for integral q in [-190, 0] where u·2^(q + 64) is normal or exact,
// rounded once, subnormal results included: on AVX2, half the instructions
// of the general form.
inline at::vec::Vectorized<float> scale_by_small_pow2(at::vec::Vectorized<float> u, at::vec::Vectorized<float> q) {
#if defined(CPU_CAPABILITY_AVX512)
  return scale_by_pow2(u, q);
#else
  using VI = at::vec::Vectorized<int32_t>;
  const VI q_plus_64 = at::vec::convert_to_int_of_same_size(q) + VI(64);
  return u * pow2_of_int(q_plus_64) * at::vec::Vectorized<float>(0x1p-64f);
#endif
}

// e^x in float with Sleef's expf_u10 algorithm (constants and operation
// order), which is what Vectorized<float>::exp calls on AVX2 and AVX-512, so
// the results are the same bits as eager's. Inlined, it costs a third of the
// out-of-line call, which spills every live vector register around it and
// keeps the compiler from sharing one exp between forward and derivative.
inline at::vec::Vectorized<float> sleef_expf(at::vec::Vectorized<float> x) {
  using V = at::vec::Vectorized<float>;
  // Sleef selects 0 below −104 and inf above 100. Clamping the input a little
  // further out gives the same results (they round to 0 and overflow to inf)
  // in two instructions instead of two blends.
  x = at::vec::clamp(x, V(-104.5f), V(100.5f));
  // Round half to even, as Sleef's float-to-int conversion does.
  const V q = (x * V(1.442695040888963407359924681001892137f)).round();
  // ln 2 in two parts, the first exact in a few bits, so that x − q·ln 2 is exact.
  V s = at::vec::fmadd(q, V(-0.693145751953125f), x);
  s = at::vec::fmadd(q, V(-1.428606765330187045e-06f), s);
  V u(0.000198527617612853646278381f);
  u = at::vec::fmadd(u, s, V(0.00139304355252534151077271f));
  u = at::vec::fmadd(u, s, V(0.00833336077630519866943359f));
  u = at::vec::fmadd(u, s, V(0.0416664853692054748535156f));
  u = at::vec::fmadd(u, s, V(0.166666671633720397949219f));
  u = at::vec::fmadd(u, s, V(0.5f));
  u = V(1.0f) + at::vec::fmadd(s * s, u, s);
  return scale_by_pow2(u, q);
}

// e^x − 1 in float, to about an ulp: e^x − 1 where |x| ≥ ln 2 / 2 (down to
// −ln 2 the difference is exact, by Sterbenz, and past it under half an ulp
// of a result near −1), else x·(1 + x·P(x)) with P Taylor's, whose first
// omitted term is under 1e-9 of the result. ATen's (Sleef's expm1f_u10,
// called out of line) costs ten exps here.
inline at::vec::Vectorized<float> expm1f(at::vec::Vectorized<float> x) {
  using V = at::vec::Vectorized<float>;
  V p(1.0f / 40320);
  p = at::vec::fmadd(p, x, V(1.0f / 5040));
  p = at::vec::fmadd(p, x, V(1.0f / 720));
  p = at::vec::fmadd(p, x, V(1.0f / 120));
  p = at::vec::fmadd(p, x, V(1.0f / 24));
  p = at::vec::fmadd(p, x, V(1.0f / 6));
  p = at::vec::fmadd(p, x, V(0.5f));
  const V small = x * at::vec::fmadd(x, p, V(1.0f));  // −0 stays −0
  return V::blendv(sleef_expf(x) - V(1.0f), small, x.abs() < V(0.34657359f));
}

// 2^f for f in [-1/2, 1/2], fitted for relative error: degree 5 to 2^-23.4
// (enough for a result rounded to 16 bits) or degree 6 to 2^-28.9; in float
// arithmetic 1.6e-7 and 7.9e-8. It lies on float GELU's longest chain. With
// 256-bit vectors, that chain's latency bounds the kernel, and degree 6 pairs
// its terms (Estrin): 4 dependent steps instead of 6 (4% on a Zen 3). With
// 512-bit vectors the kernel is bound by its operations, which two ports
// share on Intel's cores, and Horner's one multiply fewer pays (3-4% on a
// Zen 4, 1 of GELU's ~35).
template <bool kHalf>
inline at::vec::Vectorized<float> exp2_reduced(at::vec::Vectorized<float> f) {
  using V = at::vec::Vectorized<float>;
  V p;
  if constexpr (kHalf) {
    p = V(1.3264674926e-03f);
    p = at::vec::fmadd(p, f, V(9.6714952961e-03f));
    p = at::vec::fmadd(p, f, V(5.5507335812e-02f));
    p = at::vec::fmadd(p, f, V(2.4022242427e-01f));
    p = at::vec::fmadd(p, f, V(6.9314700365e-01f));
  } else {
#if defined(CPU_CAPABILITY_AVX512)
    p = V(1.5353324125e-04f);
    p = at::vec::fmadd(p, f, V(1.3398859883e-03f));
    p = at::vec::fmadd(p, f, V(9.6184369177e-03f));
    p = at::vec::fmadd(p, f, V(5.5503323674e-02f));
    p = at::vec::fmadd(p, f, V(2.4022647738e-01f));
    p = at::vec::fmadd(p, f, V(6.9314718246e-01f));
#else
    const V f2 = f * f;
    const V c56 = at::vec::fmadd(V(1.5353324125e-04f), f, V(1.3398859883e-03f));
    const V c34 = at::vec::fmadd(V(9.6184369177e-03f), f, V(5.5503323674e-02f));
    const V c12 = at::vec::fmadd(V(2.4022647738e-01f), f, V(6.9314718246e-01f));
    p = at::vec::fmadd(at::vec::fmadd(c56, f2, c34), f2, c12);
#endif
  }
  return at::vec::fmadd(p, f, V(1.0f));
}

// 2^y for y in [-252, 127], subnormal results included, in half the
// instructions of Sleef's exp2: for results rounded to 16 bits. The CPU's
// counterpart of the GPU's ex2.approx.
inline at::vec::Vectorized<float> exp2_for_half(at::vec::Vectorized<float> y) {
  const auto q = y.round();
  return scale_by_pow2(exp2_reduced<true>(y - q), q);  // y − q is exact
}

#if defined(__AVX512BF16__)
// The lanes of v that AVX512-BF16's one-instruction rounding
// (vcvtne(2)ps2bf16) gets wrong: it reads subnormal inputs as zero, so a
// vector holding one must take ATen's integer rounding instead.
inline __mmask16 subnormal_lanes(__m512 v) {
  constexpr int kSubnormal = 0x20;  // vfpclassps category
  return _mm512_fpclass_ps_mask(v, kSubnormal);
}
#endif

}  // namespace cpu

template <typename S>
struct Math<at::vec::Vectorized<S>> {
  using V = at::vec::Vectorized<S>;
  static constexpr bool kDouble = std::is_same_v<S, double>;
  // Float vectors on AVX2 and up take the exps above; the rest, ATen's.
#if defined(CPU_CAPABILITY_AVX2) || defined(CPU_CAPABILITY_AVX512)
  static constexpr bool kOwnExp = std::is_same_v<S, float>;
#else
  static constexpr bool kOwnExp = false;
#endif
  static V exp(const V& x) {
    if constexpr (kOwnExp) {
      return cpu::sleef_expf(x);
    } else {
      return x.exp();
    }
  }
  static V exp2_for_half(const V& y) {
    if constexpr (kOwnExp) {
      return cpu::exp2_for_half(y);
    } else {
      return y.exp2();
    }
  }
  // r·2^(q + f), as Math<float>::exp2_split, to about an ulp.
  static V exp2_split(const V& q, const V& f, const V& r) {
    if constexpr (kOwnExp) {
      return cpu::exp2_reduced<false>(f) * cpu::scale_by_small_pow2(r, q);
    } else {
      return f.exp2() * (r * q.exp2());  // 2^q is exact, subnormal included
    }
  }
  static V erfc(const V& x) { return x.erfc(); }
  static V expm1(const V& x) {
    if constexpr (kOwnExp) {
      return cpu::expm1f(x);
    } else {
      return x.expm1();
    }
  }
  static V abs(const V& x) { return x.abs(); }
  static V divide(const V& n, const V& d) { return n / d; }
  static V fma(const V& a, const V& b, const V& c) {
#if defined(CPU_CAPABILITY_DEFAULT) && defined(__x86_64__)
    // ATen's generic fmadd rounds twice, and the exact splits in gaussian()
    // need one rounding. (aarch64's DEFAULT vectors fuse it in hardware.)
    __at_align__ S out[V::size()], bv[V::size()], cv[V::size()];
    a.store(out);
    b.store(bv);
    c.store(cv);
    for (int i = 0; i < V::size(); ++i) out[i] = std::fma(out[i], bv[i], cv[i]);
    return V::loadu(out);
#else
    return at::vec::fmadd(a, b, c);
#endif
  }
  // a·b − c, rounded once; spares the sign flip that fma(a, b, −c) costs.
  static V fms(const V& a, const V& b, const V& c) {
#if defined(CPU_CAPABILITY_DEFAULT)
    return fma(a, b, -c);
#else
    return at::vec::fmsub(a, b, c);
#endif
  }
  // One instruction; nan in a stays nan (at::vec::minimum takes three).
  static V min(const V& a, const V& b) { return at::vec::clamp_max(a, b); }
  // Bitwise, one vpternlog on AVX-512; ATen's calls Sleef out of line.
  static V copysign(const V& magnitude, const V& sign) {
    const V sign_bit(S(-0.0));
    return magnitude.abs() | (sign & sign_bit);
  }
  // Two instructions, and nan stays nan.
  static V clamp(const V& x, const V& lo, const V& hi) { return at::vec::clamp(x, lo, hi); }
  // mask is the all-ones/all-zeros lanes that Vectorized comparisons return.
  static V where(const V& mask, const V& a, const V& b) { return V::blendv(b, a, mask); }
  template <typename scalar_t>
  static V round_to(const V& x) {
    if constexpr (std::is_same_v<scalar_t, S>) {
      return x;
    } else if constexpr (std::is_same_v<scalar_t, c10::BFloat16>) {
#if defined(__AVX512BF16__)
      if (cpu::subnormal_lanes(x) == 0) {
        const __m256i rounded = reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(x));
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(rounded), 16));
      }
#endif
      // Round to nearest even in the float's bits, as the bfloat16 conversion
      // does, without its pack and unpack (three times the instructions).
      using VI = at::vec::Vectorized<int32_t>;
      const VI bits = at::vec::cast<int32_t>(x);
      const VI lsb = (bits >> VI(16)) & VI(1);
      const VI rounded = (bits + VI(0x7fff) + lsb) & VI(static_cast<int32_t>(0xffff0000u));
      return V::blendv(at::vec::cast<S>(rounded), x, x.isnan());
    } else {
      const auto rounded = at::vec::convert_from_float<scalar_t>(x, x);
      return std::get<0>(at::vec::convert_to_float<scalar_t>(rounded));
    }
  }
};

}  // namespace fused_acts
