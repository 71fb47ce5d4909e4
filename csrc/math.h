// Math<T>: the primitives (exp, fma, min, where, ...) that activations.h is
// written in, one specialization per computation type T, so that one formula
// compiles for both engines:
//   cpu/vec_math.h      at::vec::Vectorized<float> and <double> (Sleef, SIMD)
//   cuda/scalar_math.h  float and double (libdevice, PTX)
#pragma once

#include <c10/macros/Macros.h>

namespace fused_acts {

template <typename T>
struct Math;

// An activation may use cheaper math where its result is rounded to a 16-bit type.
template <typename scalar_t>
constexpr bool kHalfStorage = sizeof(scalar_t) == 2;

// The max that keeps a nan, as torch.amax does: the quantized outputs' and
// the monitor's amax.
template <typename T>
C10_HOST_DEVICE inline T nan_max(T a, T b) {
  return (a > b || a != a) ? a : b;
}

}  // namespace fused_acts
