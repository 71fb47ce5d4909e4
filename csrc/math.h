// Math<T>: the primitives (exp, fma, min, where, ...) that activations.h is
// written in, one specialization per computation type T, so that one formula
// compiles for both engines:
//   cpu/vec_math.h      at::vec::Vectorized<float> and <double> (Sleef, SIMD)
//   cuda/scalar_math.h  float and double (libdevice, PTX)
#pragma once

namespace fused_acts {

template <typename T>
struct Math;

// An activation may use cheaper math where its result is rounded to a 16-bit type.
template <typename scalar_t>
constexpr bool kHalfStorage = sizeof(scalar_t) == 2;

}  // namespace fused_acts
