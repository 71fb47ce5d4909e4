// Math<T> for SIMD vectors, so that activations.h compiles to at::vec code.
// This file is built once per CPU capability (DEFAULT, AVX2, AVX512).
#pragma once

#include "../activations.h"

#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>

#include <type_traits>

namespace fused_acts {

// Φ(x) for float vectors, as fast as ATen's erf but accurate in the tail.
// With a = |x|/√2 and t = 1/(1 + 0.4a), erfc(a) = t·Q(t)·exp(−a²), where the
// degree-10 Q fits erfcx(a)/t to 6e-9 relative over all a ≥ 0. a² = x²/2 is
// split exactly so exp's argument carries no rounding.
inline at::vec::Vectorized<float> normcdf_float(const at::vec::Vectorized<float>& x_in) {
  using V = at::vec::Vectorized<float>;
  using at::vec::fmadd;
  // Φ(±15) is already 0 and 1 in float; the clamp keeps x² finite.
  const V x = at::vec::clamp(x_in, V(-15.0f), V(15.0f));
  const V a = x.abs() * V(0.70710678f);
  const V t = V(1.0f) / fmadd(V(0.4f), a, V(1.0f));
  V q = fmadd(V(-2.921740590e-02f), t, V(1.404575511e-01f));
  q = fmadd(q, t, V(-2.355490072e-01f));
  q = fmadd(q, t, V(1.375855375e-01f));
  q = fmadd(q, t, V(-4.691131630e-02f));
  q = fmadd(q, t, V(8.392308228e-02f));
  q = fmadd(q, t, V(1.190066166e-01f));
  q = fmadd(q, t, V(1.717395294e-01f));
  q = fmadd(q, t, V(2.076137108e-01f));
  q = fmadd(q, t, V(2.256758607e-01f));
  q = fmadd(q, t, V(2.256758348e-01f));
  const V x2 = x * x;
  const V err = fmadd(x, x, x2.neg());
  const V e = (V(-0.5f) * x2).exp();
  // half_tail = erfc(a)/2 = Φ(−|x|).
  const V half_tail = V(0.5f) * t * q * fmadd(V(-0.5f) * err, e, e);
  return V::blendv(V(1.0f) - half_tail, half_tail, x < V(0.0f));
}

template <typename S>
struct Math<at::vec::Vectorized<S>> {
  using V = at::vec::Vectorized<S>;
  static V exp(const V& x) { return x.exp(); }
  static V fma(const V& a, const V& b, const V& c) { return at::vec::fmadd(a, b, c); }
  static V normcdf(const V& x) {
    if constexpr (std::is_same_v<S, float>) {
      return normcdf_float(x);
    } else {
      return V(0.5) * (x * V(-0.70710678118654752440)).erfc();
    }
  }
  static V min(const V& a, const V& b) { return at::vec::minimum(a, b); }
  // Two instructions, and nan stays nan.
  static V clamp(const V& x, const V& lo, const V& hi) { return at::vec::clamp(x, lo, hi); }
  // mask is the all-ones/all-zeros lanes that Vectorized comparisons return.
  static V where(const V& mask, const V& a, const V& b) { return V::blendv(b, a, mask); }
  template <typename scalar_t>
  static V round_to(const V& x) {
    if constexpr (std::is_same_v<scalar_t, S>) {
      return x;
    } else {
      const auto rounded = at::vec::convert_from_float<scalar_t>(x, x);
      return std::get<0>(at::vec::convert_to_float<scalar_t>(rounded));
    }
  }
};

}  // namespace fused_acts
