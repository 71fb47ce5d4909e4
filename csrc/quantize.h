// The quantized outputs' math, written once for both engines (docs/design.md
// defines it): a group's scale from its amax, and each value from the
// scale. h is the op's output as the op returns it, in float32.
//   s = max(amax, 1e-12) / qmax        (a nan amax gives a nan s)
//   s = the smallest power of two >= s (power-of-two, e8m0 scales)
//   q = cast(clamp(h / s, -qmax, qmax)), rounding to nearest even
// The divisions are IEEE divisions: a multiply by 1/s differs in the last
// bit, but for power-of-two scales.
#pragma once

#include "math.h"

#include <c10/core/ScalarType.h>
#include <c10/macros/Macros.h>
#include <c10/util/Exception.h>
#include <c10/util/Float8_e4m3fn.h>
#include <c10/util/Float8_e5m2.h>
#include <c10/util/bit_cast.h>

#include <cmath>
#include <cstdint>

namespace fused_acts {

// The quantized dtypes, as the kernels take them; kQmax is the largest finite magnitude.
template <typename out_t>
struct QuantFormat;

template <>
struct QuantFormat<c10::Float8_e4m3fn> {
  static constexpr float kQmax = 448.0f;
};
template <>
struct QuantFormat<c10::Float8_e5m2> {
  static constexpr float kQmax = 57344.0f;
};
template <>
struct QuantFormat<int8_t> {
  static constexpr float kQmax = 127.0f;
};

// vLLM's and torchao's floor: an all-zero group still has a finite scale.
constexpr float kMinAmax = 1e-12f;

// The smallest power of two >= s, for a positive normal s; inf and nan pass.
C10_HOST_DEVICE inline float power_of_two_ceil(float s) {
  const uint32_t bits = c10::bit_cast<uint32_t>(s);
  constexpr uint32_t kMantissa = (1u << 23) - 1;
  if ((bits & kMantissa) == 0 || !(s < INFINITY)) return s;
  return c10::bit_cast<float>((bits & ~kMantissa) + (1u << 23));
}

C10_HOST_DEVICE inline float ieee_divide(float n, float d) {
#ifdef __CUDA_ARCH__
  return __fdiv_rn(n, d);
#else
  return n / d;
#endif
}

C10_HOST_DEVICE inline float scale_of_amax(float amax, float qmax, bool power_of_two) {
  const float s = ieee_divide(nan_max(amax, kMinAmax), qmax);
  return power_of_two ? power_of_two_ceil(s) : s;
}

// A power-of-two scale as float8_e8m0fnu stores it: its biased exponent;
// nan and inf are 0xFF, e8m0's nan, as torch converts them.
C10_HOST_DEVICE inline uint8_t e8m0_bits(float power_of_two) {
  return power_of_two < INFINITY ? static_cast<uint8_t>(c10::bit_cast<uint32_t>(power_of_two) >> 23) : 0xFF;
}

// h / s clamped to [-qmax, qmax]; a nan stays nan, as torch.clamp keeps it.
C10_HOST_DEVICE inline float scaled_clamped(float h, float s, float qmax) {
  const float y = ieee_divide(h, s);
  return y < -qmax ? -qmax : (y > qmax ? qmax : y);
}

// y, already clamped, to the quantized dtype, rounding to nearest even; for
// int8 a nan (a group with a non-finite scale, whose q is unspecified) gives 0.
template <typename out_t>
C10_HOST_DEVICE inline out_t quantized_value(float y) {
  if constexpr (std::is_same_v<out_t, int8_t>) {
#ifdef __CUDA_ARCH__
    return static_cast<int8_t>(y == y ? __float2int_rn(y) : 0);
#else
    return static_cast<int8_t>(y == y ? std::nearbyint(y) : 0.0f);
#endif
  } else {
    return out_t(y);
  }
}

// One launch of a quantized op (ops/quantized.h fills it, the engines read it).
// Row and group scales take one pass; a dynamic per-tensor scale takes two
// that both compute the op (kAmax, then kGivenScale from that amax), which
// reads the inputs twice instead of writing and reading h (docs/design.md).
struct QuantizeArgs {
  enum Pass { kGroups, kAmax, kGivenScale };
  Pass pass;
  int64_t group;  // elements per group of a row; a row's last may be shorter (kAmax, kGivenScale)
  bool power_of_two;
  void* scale;         // kGroups: one per group; kGivenScale: one. float, or e8m0 with power_of_two
  const float* given;  // kGivenScale: the scale, or with given_is_amax the amax to take it from
  bool given_is_amax;
  float* amax;  // kAmax: the max |h| over every group, starting from 0
};

// Group index's scale s, as the scale tensor's dtype holds it.
C10_HOST_DEVICE inline void store_scale(const QuantizeArgs& qa, int64_t index, float s) {
  if (qa.power_of_two) {
    static_cast<uint8_t*>(qa.scale)[index] = e8m0_bits(s);
  } else {
    static_cast<float*>(qa.scale)[index] = s;
  }
}

// fn(out_t{}) for a quantized dtype, on the host.
template <typename Fn>
decltype(auto) with_quantized_type(at::ScalarType out_dtype, const Fn& fn) {
  switch (out_dtype) {
    case at::kFloat8_e4m3fn:
      return fn(c10::Float8_e4m3fn{});
    case at::kFloat8_e5m2:
      return fn(c10::Float8_e5m2{});
    case at::kChar:
      return fn(int8_t{});
    default:
      TORCH_INTERNAL_ASSERT(false, "out_dtype is checked before the launch");
  }
}

}  // namespace fused_acts
