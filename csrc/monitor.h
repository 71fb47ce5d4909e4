// The monitored forwards' statistics, defined once for both engines
// (docs/design.md, "Monitored forwards"). Over the rows of the output h, per
// channel c (h's last dim), the kernels add to a float64 stats tensor of
// shape [kNumStats, channels]:
//   rows       the rows seen
//   active     the rows where the activation's input g (the gate) is > 0
//   saturated  the rows where g <= lo or g > hi: where the activation's
//              derivative is below 1e-3 in magnitude, so that next to no
//              gradient passes (saturation() gives lo and hi)
//   amax       max |h| (a nan is kept)
//   sum, sumsq of h, and of h²
// and, where the histogram tensor has bins, one count per bin of g
// (histogram_bin). h is the output as stored, in opmath; g as read.
#pragma once

#include "activations.h"

#include <c10/macros/Macros.h>

#include <cmath>
#include <cstdint>

namespace fused_acts {

// The stats tensor's rows, in order.
enum MonitorStat { kRows, kActive, kSaturated, kAmax, kSum, kSumsq, kNumStats };

// g is saturated where g <= lo or g > hi.
struct Saturation {
  float lo = -INFINITY;
  float hi = INFINITY;
};

// |f'(x)| < 1e-3 for x <= -9 with SiLU, Mish and swish at β = 1; swish's
// βx is SiLU's x.
constexpr double kSiluTail = -9.0;

inline Saturation swish_saturation(double beta) {
  if (beta > 0) return {static_cast<float>(kSiluTail / beta), INFINITY};
  if (beta < 0) return {-INFINITY, static_cast<float>(kSiluTail / beta)};
  return {};
}

inline Saturation saturation(SiluAct) { return {static_cast<float>(kSiluTail), INFINITY}; }
inline Saturation saturation(MishAct) { return {static_cast<float>(kSiluTail), INFINITY}; }
inline Saturation saturation(const SwishAct& act) { return swish_saturation(act.beta); }
// Above the limit the gate is clamped: its derivative is 0.
inline Saturation saturation(const ClampedSwishAct& act) {
  Saturation s = swish_saturation(act.alpha);
  s.hi = std::fmin(s.hi, static_cast<float>(act.limit));
  return s;
}
// |f'(x)| < 1e-3 for x <= -3.81 (erf) and x <= -3.74 (tanh).
inline Saturation saturation(GeluErfAct) { return {-4.0f, INFINITY}; }
inline Saturation saturation(GeluTanhAct) { return {-4.0f, INFINITY}; }
inline Saturation saturation(ReluSquaredAct) { return {0.0f, INFINITY}; }
inline Saturation saturation(ReluAct) { return {0.0f, INFINITY}; }
// sigmoid'(x) < 1e-3 for |x| >= 6.91, on both sides.
inline Saturation saturation(SigmoidAct) { return {-7.0f, 7.0f}; }

// The histogram spans g in [-kHistogramRange, kHistogramRange): bins of
// equal width, the outer ones also taking what lies beyond.
constexpr float kHistogramRange = 8.0f;

// One launch of a monitored op (ops/monitored.h fills it, the engines read it).
struct MonitorArgs {
  double* stats;  // [kNumStats, channels]: stat s of channel c at s·channels + c
  int64_t channels;
  Saturation saturation;
  double* histogram;  // [bins], or nullptr
  int64_t bins;
};

// g's bin, computed in g's opmath type as the definition reads; a nan has
// none (-1).
template <typename T>
C10_HOST_DEVICE inline int64_t histogram_bin(T g, int64_t bins) {
  if (g != g) return -1;
  const T position = (g + T(kHistogramRange)) * (static_cast<T>(bins) / T(2 * kHistogramRange));
  if (!(position >= T(0))) return 0;
  return position >= static_cast<T>(bins) ? bins - 1 : static_cast<int64_t>(position);
}

template <typename T>
C10_HOST_DEVICE inline bool is_saturated(T g, const Saturation& s) {
  return g <= T(s.lo) || g > T(s.hi);
}

}  // namespace fused_acts
