// Math<float> and Math<double>: the primitives of activations.h for scalars,
// which the CUDA engine computes in (one element per thread). Host builds
// take the C library's functions; device builds take libdevice and, where
// noted, PTX. The CPU's vectors have their own Math in cpu/vec_math.h.
#pragma once

#include "../math.h"

#include <c10/macros/Macros.h>

#include <cmath>

namespace fused_acts {

template <>
struct Math<float> {
  static constexpr bool kDouble = false;
  static C10_HOST_DEVICE float exp(float x) { return ::expf(x); }
  static C10_HOST_DEVICE float erfc(float x) { return ::erfcf(x); }
  static C10_HOST_DEVICE float expm1(float x) { return ::expm1f(x); }
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
  static C10_HOST_DEVICE double expm1(double x) { return ::expm1(x); }
  static C10_HOST_DEVICE double abs(double x) { return ::fabs(x); }
  static C10_HOST_DEVICE double fma(double a, double b, double c) { return ::fma(a, b, c); }
  static C10_HOST_DEVICE double fms(double a, double b, double c) { return ::fma(a, b, -c); }
  static C10_HOST_DEVICE double copysign(double magnitude, double sign) { return ::copysign(magnitude, sign); }
  static C10_HOST_DEVICE double min(double a, double b) { return ::fmin(a, b); }
  static C10_HOST_DEVICE double clamp(double x, double lo, double hi) { return ::fmin(::fmax(x, lo), hi); }
  static C10_HOST_DEVICE double where(bool c, double a, double b) { return c ? a : b; }
  static C10_HOST_DEVICE double divide(double n, double d) { return n / d; }
  template <typename scalar_t>
  static C10_HOST_DEVICE double round_to(double x) {
    return x;
  }
};

}  // namespace fused_acts
