// Math<T> for SIMD vectors, so that activations.h compiles to at::vec code.
// This file is built once per CPU capability (DEFAULT, AVX2, AVX512).
#pragma once

#include "../activations.h"

#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>

#include <type_traits>

namespace fused_acts {

template <typename S>
struct Math<at::vec::Vectorized<S>> {
  using V = at::vec::Vectorized<S>;
  static constexpr bool kDouble = std::is_same_v<S, double>;
  static V exp(const V& x) { return x.exp(); }
  static V erfc(const V& x) { return x.erfc(); }
  static V abs(const V& x) { return x.abs(); }
  static V fma(const V& a, const V& b, const V& c) { return at::vec::fmadd(a, b, c); }
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
