// The activations, each written once for the CPU (SIMD vectors) and CUDA
// (scalars). Each is a struct with two static templates:
//   forward<scalar_t>(x)      -> f(x)
//   backward<scalar_t>(dy, x) -> dy * f'(x)
// T, deduced, is the computation type: float or double, or an
// at::vec::Vectorized of them on the CPU. scalar_t is the storage dtype that
// x comes from and the result is rounded to; an activation may use cheaper
// math where that is a 16-bit type (kHalfStorage). Primitives (exp, erfc,
// ...) come from Math<T> (math.h), so the same formula compiles to Sleef
// vectors on the CPU and libdevice on the GPU. op_list.h says which ops use
// which activation.
#pragma once

#include "math.h"
#include "normal_cdf.h"

#include <c10/macros/Macros.h>

namespace fused_acts {

// swish(x) = x·sigmoid(βx), QuickGELU's form with β = 1.702. It is SiLU's
// formula on βx; βx is x exactly at β = 1, so swish(x, 1) is silu(x) bit
// for bit, forward and backward.
struct SwishAct {
  double beta;

  // e^(−βx). βx rounds, and the exp turns that rounding into |βx| times as
  // much (17 ulps at QuickGELU's x = −10). For float results the rounding
  // error of βx, β's own included (β = hi + lo), goes back in as
  // e^(−z)·(1 − err): 1.7 ulps at most instead of 11. At β = 1 err is 0, so
  // silu's bits stay.
  template <typename scalar_t, typename T>
  C10_HOST_DEVICE T exp_minus_beta_x(T x) const {
    using M = Math<T>;
    const T z = T(beta) * x;
    const T e = M::exp(-z);
    if constexpr (kHalfStorage<scalar_t>) {
      return e;
    } else {
      const double hi = M::kDouble ? beta : static_cast<double>(static_cast<float>(beta));
      const T err = M::fma(T(beta - hi), x, M::fma(T(beta), x, -z));
      // Past |z| = 88 e^(−z) is 0 or inf, where err is moot (or nan, at x = ±inf).
      return M::where(M::abs(z) < T(88), M::fma(-e, err, e), e);
    }
  }
  template <typename scalar_t, typename T>
  C10_HOST_DEVICE T forward(T x) const {
    return x / (T(1) + exp_minus_beta_x<scalar_t>(x));
  }
  template <typename scalar_t, typename T>
  C10_HOST_DEVICE T backward(T dy, T x) const {
    const T s = T(1) / (T(1) + exp_minus_beta_x<scalar_t>(x));
    return dy * s * (T(1) + T(beta) * x * (T(1) - s));
  }
};

// GPT-OSS's gate: swish(min(x, limit)) with β = alpha. Its up enters as
// clamp(up, −limit, limit) + up_offset (gated_up below): GPT-OSS adds 1,
// DeepSeek-V4 (α = 1) nothing. Both clamps select, so nan stays nan. Their
// gradients are torch's clamp's: 0 past a limit, at nan and at a limit
// itself (the minimum-norm subgradient, as torch 2.14 gives it; older
// releases gave 1 there).
struct ClampedSwishAct {
  double alpha;
  double limit;
  double up_offset;

  template <typename scalar_t, typename T>
  C10_HOST_DEVICE T forward(T x) const {
    return SwishAct{alpha}.template forward<scalar_t>(Math<T>::where(x > T(limit), T(limit), x));
  }
  template <typename scalar_t, typename T>
  C10_HOST_DEVICE T backward(T dy, T x) const {
    return Math<T>::where(x < T(limit), SwishAct{alpha}.template backward<scalar_t>(dy, x), T(0));
  }
  template <typename T>
  C10_HOST_DEVICE T up(T u) const {
    const T clamped = Math<T>::where(u > T(limit), T(limit), Math<T>::where(u < T(-limit), T(-limit), u));
    // Adding 0 would turn −0 into +0, and the product's sign with it.
    return up_offset == 0 ? clamped : clamped + T(up_offset);
  }
  template <typename T>
  C10_HOST_DEVICE T up_backward(T dy, T u) const {
    return Math<T>::where(u > T(-limit), Math<T>::where(u < T(limit), dy, T(0)), T(0));
  }
};

// How a gated op's up enters its product, and the gradient through that:
// as it is, but for an activation that maps it too.
template <typename Act, typename T>
C10_HOST_DEVICE T gated_up(const Act&, T up) {
  return up;
}
template <typename Act, typename T>
C10_HOST_DEVICE T gated_up_backward(const Act&, T dy, T) {
  return dy;
}
template <typename T>
C10_HOST_DEVICE T gated_up(const ClampedSwishAct& act, T up) {
  return act.up(up);
}
template <typename T>
C10_HOST_DEVICE T gated_up_backward(const ClampedSwishAct& act, T dy, T up) {
  return act.up_backward(dy, up);
}

// relu(x)², as Primer, Nemotron and nanochat use it. x < 0 selects, so that
// nan stays nan, as eager's relu keeps it.
struct ReluSquaredAct {
  template <typename T>
  static C10_HOST_DEVICE T relu(T x) {
    return Math<T>::where(x < T(0), T(0), x);
  }
  template <typename scalar_t, typename T>
  static C10_HOST_DEVICE T forward(T x) {
    const T r = relu(x);
    return r * r;
  }
  template <typename scalar_t, typename T>
  static C10_HOST_DEVICE T backward(T dy, T x) {
    return dy * (T(2) * relu(x));
  }
};

// sigmoid(x) = 1/(1 + e^(−x)), GLU's gate. Its slope s·(1 − s) takes 1 − s
// as e^(−x)·s where e^(−x) < 1, which stays exact as s → 1.
struct SigmoidAct {
  template <typename scalar_t, typename T>
  static C10_HOST_DEVICE T forward(T x) {
    return T(1) / (T(1) + Math<T>::exp(-x));
  }
  template <typename scalar_t, typename T>
  static C10_HOST_DEVICE T backward(T dy, T x) {
    const T e = Math<T>::exp(-x);
    const T s = T(1) / (T(1) + e);
    return dy * s * Math<T>::where(e < T(1), e * s, T(1) - s);
  }
};

// relu(x), ReGLU's gate. x < 0 selects, so nan stays nan; the slope zeroes
// where x <= 0, which nan is not, as eager's relu backward does.
struct ReluAct {
  template <typename scalar_t, typename T>
  static C10_HOST_DEVICE T forward(T x) {
    return Math<T>::where(x < T(0), T(0), x);
  }
  template <typename scalar_t, typename T>
  static C10_HOST_DEVICE T backward(T dy, T x) {
    return Math<T>::where(x <= T(0), T(0), dy);
  }
};

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
// there to keep d² finite. The forward is a − a·b with a = x, b = 2/d above
// 0 and a = xn, b = n(n + 1)/d below, where x·n carries most of the value:
// one fma, for fewer roundings than x·(w/d) (in float 1.5 ulps at most,
// against eager's 1.9 and x·(w/d)'s 2.4). A 16-bit result takes x·(w/d),
// cheaper and as good once rounded.
struct MishAct {
  static constexpr double kCap = 20;

  template <typename scalar_t, typename T>
  static C10_HOST_DEVICE T forward(T x) {
    using M = Math<T>;
    const T n = M::exp(M::min(x, T(kCap)));
    if constexpr (kHalfStorage<scalar_t>) {
      const T w = n * (n + T(2));
      return x * (w / (w + T(2)));
    } else {
      const T d = M::fma(n, n + T(2), T(2));
      const auto below = x < T(0);
      const T a = M::where(below, x * n, x);
      const T b = M::where(below, M::fma(n, n, n), T(2)) / d;
      // Past the cap mish is x, inf included; the sign is x's, −0 included.
      return M::copysign(M::where(x <= T(kCap), M::fma(-a, b, a), x), x);
    }
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

// xIELU (Apertus): αp·x² + β·x above 0, else αn·(expm1(min(x, ε)) − x) + β·x,
// with αp and αn the coefficients after their softplus, as eager computes
// them. Its gradients to αp and αn are coefficient_slopes summed (ops/xielu.h).
// min(x, ε)'s gradient is halved where x = ε, as torch.minimum's is.
struct XieluAct {
  double alpha_p;
  double alpha_n;
  double beta;
  double eps;

  template <typename T>
  C10_HOST_DEVICE T negative_part(T x) const {
    return Math<T>::expm1(Math<T>::min(x, T(eps))) - x;
  }
  template <typename scalar_t, typename T>
  C10_HOST_DEVICE T forward(T x) const {
    using M = Math<T>;
    // x·(αp·x + β): one rounding fewer than αp·x² + β·x. nan takes the
    // negative side, where β·x keeps it nan.
    return M::where(x > T(0), x * M::fma(T(alpha_p), x, T(beta)), M::fma(T(alpha_n), negative_part(x), T(beta) * x));
  }
  template <typename scalar_t, typename T>
  C10_HOST_DEVICE T backward(T dy, T x) const {
    using M = Math<T>;
    // expm1(min(x, ε))': e^x below ε, e^ε/2 at it, 0 above; nan stays nan.
    const T e = M::exp(M::min(x, T(eps)));
    const T slope_of_min = M::where(x > T(eps), T(0), M::where(x == T(eps), T(0.5) * e, e));
    const T positive = M::fma(T(2 * alpha_p), x, T(beta));
    // x·0: eager's nan at −inf, where its masked positive side gives 0·inf.
    const T negative = M::fma(x, T(0), M::fma(T(alpha_n), slope_of_min - T(1), T(beta)));
    return dy * M::where(x > T(0), positive, negative);
  }
  // ∂f/∂αp and ∂f/∂αn at x: x² and 0 above 0, else 0 and the negative part;
  // the 0s are x·0, for eager's nan at ±inf (0·inf on the masked side).
  template <typename T>
  C10_HOST_DEVICE void coefficient_slopes(T x, T& d_alpha_p, T& d_alpha_n) const {
    using M = Math<T>;
    const auto positive = x > T(0);
    const T masked = x * T(0);
    d_alpha_p = M::where(positive, x * x, masked);
    d_alpha_n = M::where(positive, masked, negative_part(x));
  }
};

}  // namespace fused_acts
