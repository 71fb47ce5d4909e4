// Φ, the standard normal CDF, and exp(−x²/2), for GELU (erf) and its
// derivative in activations.h: tail-safe, and written in Math<T> primitives
// so that both engines share them.
#pragma once

#include "math.h"

#include <c10/macros/Macros.h>

namespace fused_acts {

// |x|, capped where exp(−x²/2) is 0 in the type, so that x², its rounding
// error and Φ's t stay finite. Φ and φ both start from it, so that gelu's
// derivative, which needs both, computes one exp.
template <typename T>
C10_HOST_DEVICE T gauss_abs(T x) {
  using M = Math<T>;
  return M::min(M::abs(x), T(M::kDouble ? 40.0f : 15.0f));
}

// r·exp(−x²/2) from ax = gauss_abs(x), without the x²/2 ulps that rounding
// x² would cost in the tail: x² is split exactly into x2 + err (fma). Float
// takes 2^(q + f) with y = −x²·log2(e)/2, q = round(y) and f = y − q: f
// is one fms of x2 against q, exact to 2^-26 since |f| ≤ 1/2, plus err's
// and the constant's low parts, summed beside it and added in one fma. q
// comes from adding 1.5·2^23 in an fma, which leaves no fraction bits, and
// subtracting it again: one operation fewer than a multiply and a round,
// which takes two on Intel's cores. The caller's factor r goes in with 2^q
// (exp2_split), so that a tail result underflows in one place, and its
// multiply is off the chain from x to 2^f: GELU's CPU kernels are bound by
// that chain's latency as much as by their ~35 operations. Double takes
// e^(−err/2) ≈ 1 − err/2. With kHalf, x comes from a 16-bit type: it has at
// most 11 significant bits, so x² is exact already.
template <bool kHalf, typename T>
C10_HOST_DEVICE T gaussian(T ax, T r) {
  using M = Math<T>;
  constexpr float kHalfLog2EHi = 0.72134751081f, kHalfLog2ELo = 9.6298151675e-09f;  // log2(e)/2
  // Adding it rounds a float of magnitude below 2^22 to an integer.
  constexpr float kShifter = 0x1.8p23f;
  const T x2 = ax * ax;
  if constexpr (kHalf) {
    return r * M::exp2_for_half(T(-kHalfLog2EHi) * x2);
  } else {
    const T err = M::fms(ax, ax, x2);
    if constexpr (M::kDouble) {
      const T e = M::exp(T(-0.5) * x2);
      return r * M::fma(T(-0.5) * err, e, e);
    } else {
      const T q = M::fma(T(-kHalfLog2EHi), x2, T(kShifter)) - T(kShifter);
      const T low = M::fma(T(kHalfLog2ELo / kHalfLog2EHi), x2, err);
      const T f = M::fma(T(-kHalfLog2EHi), low, M::fms(T(-kHalfLog2EHi), x2, q));
      return M::exp2_split(q, f, r);
    }
  }
}

// R(a) = Φ(−a)/exp(−a²/2) = erfcx(a/√2)/2 for a = gauss_abs(x), float only:
// a rational N/D fitted for relative error over [0, 15] (with
// scipy.special.erfcx). Its coefficients are all positive, so Horner loses
// nothing to cancellation: degrees 4 and 5 give 2e-8 with float coefficients,
// 3e-7 in float arithmetic, as the substitution t = 1/(1 + 0.4a/√2) and a
// degree-10 polynomial in t did, in three fewer multiplies. With kHalf (the
// result rounded to 16 bits), degrees 3 and 4 give 7e-7, 1/5000 of a
// bfloat16 ulp and 1/600 of a float16 one.
template <bool kHalf, typename T>
C10_HOST_DEVICE T normal_tail_ratio(T a) {
  using M = Math<T>;
  T n, d;
  if constexpr (kHalf) {
    n = M::fma(T(1.728745922e-02f), a, T(1.205399781e-01f));
    n = M::fma(n, a, T(3.637216985e-01f));
    n = M::fma(n, a, T(4.999997914e-01f));
    d = M::fma(T(4.333770275e-02f), a, T(3.019614220e-01f));
    d = M::fma(d, a, T(9.582605362e-01f));
    d = M::fma(d, a, T(1.525307417e+00f));
    d = M::fma(d, a, T(1.0f));
  } else {
    n = M::fma(T(4.153055139e-03f), a, T(4.088027030e-02f));
    n = M::fma(n, a, T(1.839670986e-01f));
    n = M::fma(n, a, T(4.392814636e-01f));
    n = M::fma(n, a, T(0.5f));
    d = M::fma(T(1.041005366e-02f), a, T(1.024777591e-01f));
    d = M::fma(d, a, T(4.714031816e-01f));
    d = M::fma(d, a, T(1.205541015e+00f));
    d = M::fma(d, a, T(1.676447988e+00f));
    d = M::fma(d, a, T(1.0f));
  }
  return M::divide(n, d);
}

// Φ(x), the standard normal CDF, in double: the library's erfc. (Float has
// the fit of R above and computes Φ(−|x|) = R(|x|)·exp(−x²/2) in place.)
template <typename T>
C10_HOST_DEVICE T normcdf_double(T x) {
  return T(0.5) * Math<T>::erfc(x * T(-0.70710678118654752440));
}

}  // namespace fused_acts
