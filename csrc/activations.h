// The math of every activation, written once for the CPU (SIMD vectors) and
// CUDA (scalars). Each activation is a struct with two static templates:
//   forward<scalar_t>(x)      -> f(x)
//   backward<scalar_t>(dy, x) -> dy * f'(x)
// T, deduced, is the computation type: float or double, or an
// at::vec::Vectorized of them on the CPU. scalar_t is the storage dtype that
// x comes from and the result is rounded to; an activation may use cheaper
// math where that is a 16-bit type (kHalfStorage). Primitives (exp, erfc,
// ...) come from Math<T>, so the same formula compiles to Sleef vectors on
// the CPU and libdevice on the GPU.
#pragma once

#include <c10/macros/Macros.h>

#include <cmath>

namespace fused_acts {

template <typename T>
struct Math;

template <typename scalar_t>
constexpr bool kHalfStorage = sizeof(scalar_t) == 2;

template <>
struct Math<float> {
  static constexpr bool kDouble = false;
  static C10_HOST_DEVICE float exp(float x) { return ::expf(x); }
  static C10_HOST_DEVICE float erfc(float x) { return ::erfcf(x); }
  static C10_HOST_DEVICE float abs(float x) { return ::fabsf(x); }
  static C10_HOST_DEVICE float fma(float a, float b, float c) { return ::fmaf(a, b, c); }
  static C10_HOST_DEVICE float fms(float a, float b, float c) { return ::fmaf(a, b, -c); }
  static C10_HOST_DEVICE float min(float a, float b) { return ::fminf(a, b); }
  static C10_HOST_DEVICE float copysign(float magnitude, float sign) { return ::copysignf(magnitude, sign); }
  static C10_HOST_DEVICE float clamp(float x, float lo, float hi) { return ::fminf(::fmaxf(x, lo), hi); }
  static C10_HOST_DEVICE float where(bool c, float a, float b) { return c ? a : b; }
  // n/d for finite n and d in [1, 2^126), rounded as the CPU's division is
  // (GELU's derivative cancels down to R's last ulp). On the GPU: the
  // hardware estimate of 1/d, one Newton step and one correction of the
  // quotient, which is the fast path of CUDA's IEEE division without its
  // range check and branch.
  static C10_HOST_DEVICE float divide(float n, float d) {
#ifdef __CUDA_ARCH__
    float r;
    asm("rcp.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(d));
    r = ::fmaf(r, ::fmaf(-d, r, 1.0f), r);
    const float q = n * r;
    return ::fmaf(::fmaf(-d, q, n), r, q);
#else
    return n / d;
#endif
  }
  // 2^y for y in [-252, 0], to about 2^-21 relative, subnormal results
  // included: enough for a result rounded to 16 bits. On the GPU, one
  // ex2.approx; on the CPU, a degree-5 polynomial (cpu::exp2_for_half) in
  // place of Sleef's exp2.
  static C10_HOST_DEVICE float exp2_for_half(float y) {
#ifdef __CUDA_ARCH__
    float r;
    asm("ex2.approx.f32 %0, %1;" : "=f"(r) : "f"(y));
    return r;
#else
    return ::exp2f(y);
#endif
  }
  // r·2^(q + f) for integral q in [-190, 0], |f| ≤ 1/2 + 2^-16 and r·2^(q + 64)
  // normal or exact, to about 2 ulps. r takes 2^q first, exactly but for a
  // subnormal result, so that such a result rounds once or twice, not at every
  // later multiply. On the GPU 2^q goes in as 2^(q + 64) and 2^-64, in a fifth
  // of ldexpf's instructions.
  static C10_HOST_DEVICE float exp2_split(float q, float f, float r) {
#ifdef __CUDA_ARCH__
    const float pow2_q_plus_64 = __int_as_float((static_cast<int>(q) + 64 + 127) << 23);
    return ::exp2f(f) * (r * pow2_q_plus_64) * 0x1p-64f;
#else
    return ::exp2f(f) * ::ldexpf(r, static_cast<int>(q));
#endif
  }
  static C10_HOST_DEVICE float round(float x) { return ::rintf(x); }
  template <typename scalar_t>
  static C10_HOST_DEVICE float round_to(float x) {
    return static_cast<float>(static_cast<scalar_t>(x));
  }
};

template <>
struct Math<double> {
  static constexpr bool kDouble = true;
  static C10_HOST_DEVICE double exp(double x) { return ::exp(x); }
  static C10_HOST_DEVICE double erfc(double x) { return ::erfc(x); }
  static C10_HOST_DEVICE double abs(double x) { return ::fabs(x); }
  static C10_HOST_DEVICE double fma(double a, double b, double c) { return ::fma(a, b, c); }
  static C10_HOST_DEVICE double fms(double a, double b, double c) { return ::fma(a, b, -c); }
  static C10_HOST_DEVICE double min(double a, double b) { return ::fmin(a, b); }
  static C10_HOST_DEVICE double clamp(double x, double lo, double hi) { return ::fmin(::fmax(x, lo), hi); }
  static C10_HOST_DEVICE double where(bool c, double a, double b) { return c ? a : b; }
  static C10_HOST_DEVICE double divide(double n, double d) { return n / d; }
  template <typename scalar_t>
  static C10_HOST_DEVICE double round_to(double x) { return x; }
};

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
// and the constant's low parts, computed beside it. The caller's factor r
// goes in with 2^q (exp2_split), so that a tail result underflows in one
// place, and its multiply is off the chain from x to 2^f: GELU's CPU
// kernels are bound by that chain's latency as much as by their ~40
// operations. Double takes e^(−err/2) ≈ 1 − err/2. With kHalf, x comes from
// a 16-bit type: it has at most 11 significant bits, so x² is exact already.
template <bool kHalf, typename T>
C10_HOST_DEVICE T gaussian(T ax, T r) {
  using M = Math<T>;
  constexpr float kHalfLog2EHi = 0.72134751081f, kHalfLog2ELo = 9.6298151675e-09f;  // log2(e)/2
  const T x2 = ax * ax;
  if constexpr (kHalf) {
    return r * M::exp2_for_half(T(-kHalfLog2EHi) * x2);
  } else {
    const T err = M::fms(ax, ax, x2);
    if constexpr (M::kDouble) {
      const T e = M::exp(T(-0.5) * x2);
      return r * M::fma(T(-0.5) * err, e, e);
    } else {
      const T q = M::round(T(-kHalfLog2EHi) * x2);
      const T low = M::fma(T(-kHalfLog2EHi), err, T(-kHalfLog2ELo) * x2);
      const T f = M::fms(T(-kHalfLog2EHi), x2, q) + low;
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

// SiLU keeps eager's formulas exactly, so results match eager bit for bit.
struct SiluAct {
  template <typename scalar_t, typename T>
  static C10_HOST_DEVICE T forward(T x) {
    return x / (T(1) + Math<T>::exp(-x));
  }
  template <typename scalar_t, typename T>
  static C10_HOST_DEVICE T backward(T dy, T x) {
    const T s = T(1) / (T(1) + Math<T>::exp(-x));
    return dy * s * (T(1) + x * (T(1) - s));
  }
};

// gelu(x) = x·Φ(x) and gelu'(x) = Φ(x) + x·φ(x), with Φ and φ the standard
// normal CDF and density. Eager's 1 + erf(x/√2) cancels as x → −∞, losing
// all precision there; Φ(−|x|) = R(|x|)·exp(−x²/2) keeps it, and past
// |x| = 15 (gauss_abs's cap) is 0 anyway. In float the forward is
// relu(x) − |x|·Φ(−|x|), one fma, with no select between Φ's two sides.
// The derivative crosses zero near x = −0.75, where its two terms cancel.
// In float it is v = Φ(−|x|) − |x|·φ(x) for x < 0 and 1 − v above, with
// v = exp(−x²/2)·(R(|x|) − |x|/√(2π)): the cancelling terms meet in one fma,
// and the full-precision R serves 16-bit results too, or float16's error
// there would grow from 0.5 ulp to 16.
struct GeluErfAct {
  static constexpr double kInvSqrt2Pi = 0.39894228040143267794;

  template <typename scalar_t, typename T>
  static C10_HOST_DEVICE T forward(T x) {
    using M = Math<T>;
    if constexpr (M::kDouble) {
      return x * normcdf_double(x);
    } else {
      constexpr bool kHalf = kHalfStorage<scalar_t>;
      const T a = gauss_abs(x);
      // |x|·Φ(−|x|): |x| goes in before the exp, so that a subnormal tail
      // rounds once or twice, not again when |x| multiplies it.
      const T tail = gaussian<kHalf>(a, a * normal_tail_ratio<kHalf>(a));
      // x − min(x, 0) is relu(x) but nan at −inf, as eager's x·Φ(x) is; the
      // result takes x's sign, for eager's −0 at −0 and where x·Φ(x) underflows.
      return M::copysign((x - M::min(x, T(0.0f))) - tail, x);
    }
  }
  template <typename scalar_t, typename T>
  static C10_HOST_DEVICE T backward(T dy, T x) {
    using M = Math<T>;
    if constexpr (M::kDouble) {
      const T pdf = gaussian<false>(gauss_abs(x), T(kInvSqrt2Pi));
      return dy * (normcdf_double(x) + x * pdf);
    } else {
      // r takes |x| capped, as the exp does: r meets 2^q before anything can
      // underflow, so a huge |x| in r would lift the tail off 0. x·0 restores
      // eager's nan at ±inf (0·inf), off the chain from x to the exp.
      const T a = gauss_abs(x);
      const T r = M::fma(a, T(-kInvSqrt2Pi), normal_tail_ratio<false>(a));
      const T v = gaussian<false>(a, M::fma(x, T(0.0f), r));
      return dy * M::where(x < T(0.0f), v, T(1.0f) - v);
    }
  }
};

// 0.5·x·(1 + tanh(u)) = x·sigmoid(2u) with u = √(2/π)·(x + 0.044715·x³):
// one exp instead of a tanh, and no cancellation as tanh(u) → −1.
struct GeluTanhAct {
  static constexpr double kTwoBeta = 2 * 0.79788456080286535588;  // 2·√(2/π)
  static constexpr double kKappa = 0.044715;

  template <typename T>
  static C10_HOST_DEVICE T exp_minus_two_u(T x) {
    return Math<T>::exp(T(-kTwoBeta) * (x + T(kKappa) * x * x * x));
  }
  template <typename scalar_t, typename T>
  static C10_HOST_DEVICE T forward(T x) {
    return x / (T(1) + exp_minus_two_u(x));
  }
  template <typename scalar_t, typename T>
  static C10_HOST_DEVICE T backward(T dy, T x) {
    const T e = exp_minus_two_u(x);
    const T s = T(1) / (T(1) + e);
    // 1 − s = e·s, which stays exact where s → 1; e·s is nan once e = inf.
    const T one_minus_s = Math<T>::where(e < T(1), e * s, T(1) - s);
    // s·(1 − s) is already 0 past |x| = 20; the clamp keeps x² from overflowing into 0·inf.
    const T x_clamped = Math<T>::clamp(x, T(-20), T(20));
    const T du_dx = T(kTwoBeta) * (T(1) + T(3 * kKappa) * x_clamped * x_clamped);
    return dy * (s + x * s * one_minus_s * du_dx);
  }
};

// With n = e^x and w = n(n + 2): tanh(softplus(x)) = w / (w + 2), and
// mish'(x) = w/d + 4x·n(n + 1)/d² with d = w + 2. One exp, no log1p or tanh.
// Past x = 20, tanh(softplus(x)) rounds to 1 even in double, so n is capped
// there to keep d² finite.
struct MishAct {
  static constexpr double kCap = 20;

  template <typename scalar_t, typename T>
  static C10_HOST_DEVICE T forward(T x) {
    const T n = Math<T>::exp(Math<T>::min(x, T(kCap)));
    const T w = n * (n + T(2));
    return x * (w / (w + T(2)));
  }
  template <typename scalar_t, typename T>
  static C10_HOST_DEVICE T backward(T dy, T x) {
    const T n = Math<T>::exp(Math<T>::min(x, T(kCap)));
    const T w = n * (n + T(2));
    const T r = T(1) / (w + T(2));
    const T slope = r * (w + T(4) * x * n * (n + T(1)) * r);
    // Past the cap mish' is 1; x·0 keeps eager's nan at +inf.
    return dy * Math<T>::where(x <= T(kCap), slope, T(1) + x * T(0));
  }
};

}  // namespace fused_acts
