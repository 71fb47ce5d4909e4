// f'' of each activation, as ATen ops on opmath (float or double) tensors,
// for double backward (create_graph=True: gradient penalties, Hessian-vector
// products). The path is rare, so these are plain ATen formulas, which
// autograd can differentiate again, to any order. One overload per
// activation of activations.h; op_list.h's Select picks it.
#pragma once

#include "../activations.h"

#include <ATen/ATen.h>

#include <cmath>
#include <limits>

namespace fused_acts {

// Each f'' below is 0 in float64 well before |x| = 1000: capping x there
// keeps x² and x³ finite. ±inf gives nan, as eager's double backward does.
inline at::Tensor capped(const at::Tensor& x) {
  return at::where(x.isinf(), std::numeric_limits<double>::quiet_NaN(), x.clamp(-1000, 1000));
}

inline at::Tensor second_derivative(GeluErfAct, const at::Tensor& x_in) {
  const at::Tensor x = capped(x_in);
  return at::exp(-0.5 * x * x) * GeluErfAct::kInvSqrt2Pi * (2 - x * x);
}

// gelu = x·s with s = sigmoid(v), v = 2u: gelu'' = 2s' + x·s'', and
// s' = v'·s(1 − s), s'' = v''·s(1 − s) + v'·s'·(1 − 2s).
inline at::Tensor second_derivative(GeluTanhAct, const at::Tensor& x_in) {
  constexpr double kTwoBeta = GeluTanhAct::kTwoBeta, kKappa = GeluTanhAct::kKappa;
  const at::Tensor x = capped(x_in);
  const at::Tensor v = kTwoBeta * (x + kKappa * x.pow(3));
  const at::Tensor s = at::sigmoid(v), one_minus_s = at::sigmoid(-v);
  const at::Tensor dv = kTwoBeta * (1 + 3 * kKappa * x * x);
  const at::Tensor d2v = kTwoBeta * 6 * kKappa * x;
  const at::Tensor ds = dv * s * one_minus_s;
  const at::Tensor d2s = d2v * s * one_minus_s + dv * ds * (one_minus_s - s);
  return 2 * ds + x * d2s;
}

inline at::Tensor second_derivative(SiluAct, const at::Tensor& x_in) {
  const at::Tensor x = capped(x_in);
  const at::Tensor s = at::sigmoid(x), one_minus_s = at::sigmoid(-x);
  return s * one_minus_s * (2 + x * (one_minus_s - s));
}

// sigmoid'' = s(1 − s)(1 − 2s), with 1 − s as sigmoid(−x).
inline at::Tensor second_derivative(SigmoidAct, const at::Tensor& x) {
  const at::Tensor s = at::sigmoid(x), one_minus_s = at::sigmoid(-x);
  return s * one_minus_s * (one_minus_s - s);
}

// 0: relu is linear on each side (and its slope is not differentiated at 0).
inline at::Tensor second_derivative(ReluAct, const at::Tensor& x) { return at::zeros_like(x); }

// f = x·s with s = sigmoid(u), u = βx: f'' = β·s(1 − s)·(2 + u(1 − 2s)).
inline at::Tensor second_derivative(SwishAct act, const at::Tensor& x_in) {
  const at::Tensor u = act.beta * capped(x_in);
  const at::Tensor s = at::sigmoid(u), one_minus_s = at::sigmoid(-u);
  return act.beta * s * one_minus_s * (2 + u * (one_minus_s - s));
}

// swish''(x) below the limit, else 0 (the clamp's gradient, nan included).
inline at::Tensor second_derivative(ClampedSwishAct act, const at::Tensor& x) {
  return at::where(x < act.limit, second_derivative(SwishAct{act.alpha}, x), 0);
}

// How a gated op's up enters its product (activations.h's gated_up), as
// ATen ops, and its slope; and the up at which both are 1, where the fused
// backward gives act and act' themselves (for the clamped form, with its
// offset taken as 1: up = 0 is then inside any limit).
template <typename Act>
at::Tensor up_value(Act, const at::Tensor& up) {
  return up;
}
template <typename Act>
at::Tensor up_slope(Act, const at::Tensor& up) {
  return at::ones_like(up);
}
template <typename Act>
double unit_up(Act) {
  return 1;
}
inline at::Tensor up_value(ClampedSwishAct act, const at::Tensor& up) {
  const at::Tensor clamped = at::where(up > act.limit, act.limit, at::where(up < -act.limit, -act.limit, up));
  return act.up_offset == 0 ? clamped : clamped + act.up_offset;
}
inline at::Tensor up_slope(ClampedSwishAct act, const at::Tensor& up) {
  return at::logical_and(up > -act.limit, up < act.limit).to(up.scalar_type());
}
inline double unit_up(ClampedSwishAct) { return 0; }

// Whether the activation clamps its gate first, which masks a nan gate's
// f' to 0 where eager's chain of ops gives nan.
template <typename Act>
bool clamps_gate(Act) {
  return false;
}
inline bool clamps_gate(ClampedSwishAct) { return true; }

// 2 where x > 0, else 0; and 2 at nan, as eager's relu backward gives
// (it zeroes where x <= 0, which nan is not).
inline at::Tensor second_derivative(ReluSquaredAct, const at::Tensor& x) {
  return 2 * at::logical_not(x <= 0).to(x.scalar_type());
}

// With t = tanh(softplus(x)) and s = sigmoid(x): t' = (1 − t²)·s, and
// mish'' = (1 − t²)·s·(2 + x·(1 − s − 2ts)); 1 − t² as sech², which keeps
// its precision where t → 1.
inline at::Tensor second_derivative(MishAct, const at::Tensor& x_in) {
  const at::Tensor x = capped(x_in);
  const at::Tensor sp = at::softplus(x);
  const at::Tensor t = at::tanh(sp), sech2 = at::cosh(sp).pow(-2), s = at::sigmoid(x);
  return sech2 * s * (2 + x * (1 - s - 2 * t * s));
}

}  // namespace fused_acts
