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
  static C10_HOST_DEVICE float min(float a, float b) { return ::fminf(a, b); }
  static C10_HOST_DEVICE float clamp(float x, float lo, float hi) { return ::fminf(::fmaxf(x, lo), hi); }
  static C10_HOST_DEVICE float where(bool c, float a, float b) { return c ? a : b; }
  // 1/x for finite x in [1, 2^126). On the GPU: the hardware estimate and
  // one Newton step, which is the fast path of CUDA's IEEE division without
  // its range check and branch.
  static C10_HOST_DEVICE float reciprocal(float x) {
#ifdef __CUDA_ARCH__
    float r;
    asm("rcp.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(x));
    return ::fmaf(r, ::fmaf(-x, r, 1.0f), r);
#else
    return 1.0f / x;
#endif
  }
  // e^x to about 2^-21 relative for |x| < 10 and 1e-5 near float's
  // underflow, subnormal results included: enough for a result rounded to 16
  // bits. On the GPU, one ex2.approx in place of expf's eight instructions;
  // on the CPU, a degree-5 2^f (cpu::exp_for_half) in place of Sleef's exp.
  static C10_HOST_DEVICE float exp_for_half(float x) {
#ifdef __CUDA_ARCH__
    float r;
    asm("ex2.approx.f32 %0, %1;" : "=f"(r) : "f"(x * 1.44269504088896341f));
    return r;
#else
    return ::expf(x);
#endif
  }
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
  static C10_HOST_DEVICE double min(double a, double b) { return ::fmin(a, b); }
  static C10_HOST_DEVICE double clamp(double x, double lo, double hi) { return ::fmin(::fmax(x, lo), hi); }
  static C10_HOST_DEVICE double where(bool c, double a, double b) { return c ? a : b; }
  static C10_HOST_DEVICE double reciprocal(double x) { return 1.0 / x; }
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

// exp(−x²/2) from ax = gauss_abs(x), without the x²/2 ulps that rounding x²
// would cost in the tail: x² is split exactly into x2 + err (fma) and
// e^(−err/2) ≈ 1 − err/2. With kHalf, x comes from a 16-bit type: it has at
// most 11 significant bits, so x² is exact already.
template <bool kHalf, typename T>
C10_HOST_DEVICE T gaussian(T ax) {
  using M = Math<T>;
  const T x2 = ax * ax;
  if constexpr (kHalf) {
    return M::exp_for_half(T(-0.5f) * x2);
  } else {
    const T err = M::fma(ax, ax, -x2);
    const T e = M::exp(T(-0.5f) * x2);
    return M::fma(T(-0.5f) * err, e, e);
  }
}

// Φ(x), the standard normal CDF, to a few ulps everywhere, tails included.
// Float: with a = |x|/√2 and t = 1/(1 + 0.4a), erfc(a) = t·Q(t)·exp(−a²),
// where the degree-10 Q fits erfcx(a)/t to 6e-9 relative over all a ≥ 0
// (fitted with scipy.special.erfcx). Far cheaper than erfcf or normcdff, if
// dearer than the 1 + erff that loses the tail. Q's coefficients are halved,
// so that the product is erfc(a)/2 = Φ(−|x|) directly, bit for bit as with a
// multiply by 0.5. Past |x| = 15 a is capped (gauss_abs), where exp(−a²) is
// 0 anyway. With kHalf (x from a 16-bit type, the result rounded to one), a
// degree-6 Q fits to 5e-6 relative, 1/400 of a bfloat16 ulp and 1/200 of a
// float16 one. Double has no such fit here and uses the library's erfc.
template <bool kHalf, typename T>
C10_HOST_DEVICE T normcdf(T x) {
  using M = Math<T>;
  if constexpr (M::kDouble) {
    return T(0.5) * M::erfc(x * T(-0.70710678118654752440));
  } else {
    const T ax = gauss_abs(x);
    const T a = ax * T(0.70710678f);
    const T t = M::reciprocal(M::fma(T(0.4f), a, T(1.0f)));
    T q;
    if constexpr (kHalf) {
      q = M::fma(T(-4.758101702e-02f), t, T(9.320939332e-02f));
      q = M::fma(q, t, T(3.424086049e-02f));
      q = M::fma(q, t, T(9.097052366e-02f));
      q = M::fma(q, t, T(1.034923792e-01f));
      q = M::fma(q, t, T(1.128271297e-01f));
      q = M::fma(q, t, T(1.128384918e-01f));
    } else {
      q = M::fma(T(-1.460870295e-02f), t, T(7.022877555e-02f));
      q = M::fma(q, t, T(-1.177745036e-01f));
      q = M::fma(q, t, T(6.879276875e-02f));
      q = M::fma(q, t, T(-2.345565815e-02f));
      q = M::fma(q, t, T(4.196154114e-02f));
      q = M::fma(q, t, T(5.950330830e-02f));
      q = M::fma(q, t, T(8.586976470e-02f));
      q = M::fma(q, t, T(1.038068554e-01f));
      q = M::fma(q, t, T(1.128379304e-01f));
      q = M::fma(q, t, T(1.128379174e-01f));
    }
    const T half_tail = t * q * gaussian<kHalf>(ax);  // Φ(−|x|)
    return M::where(x < T(0.0f), half_tail, T(1.0f) - half_tail);
  }
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
// all precision there; normcdf keeps it. The derivative crosses zero near
// x = −0.75, where its two terms cancel: it takes the full-precision Φ even
// for 16-bit results, or float16's error there would grow from 2 ulps to 16.
struct GeluErfAct {
  static constexpr double kInvSqrt2Pi = 0.39894228040143267794;

  template <typename T>
  static C10_HOST_DEVICE T normpdf(T x) {
    return gaussian<false>(gauss_abs(x)) * T(kInvSqrt2Pi);
  }
  template <typename scalar_t, typename T>
  static C10_HOST_DEVICE T forward(T x) {
    return x * normcdf<kHalfStorage<scalar_t>>(x);
  }
  template <typename scalar_t, typename T>
  static C10_HOST_DEVICE T backward(T dy, T x) {
    return dy * (normcdf<false>(x) + x * normpdf(x));
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
