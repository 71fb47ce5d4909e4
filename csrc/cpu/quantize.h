// Quantized outputs on the CPU: each group's values, from the grouped engine,
// are reduced to their amax and stored quantized with the group's scale
// (../quantize.h). Division, clamp and rounding are SIMD, and each is
// correctly rounded, so they give the scalar definition's bits.
#pragma once

#include "../quantize.h"
#include "grouped.h"

#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>
#include <c10/core/ScalarType.h>

#include <algorithm>
#include <numeric>
#include <type_traits>
#include <vector>

namespace fused_acts::cpu {

// max |h[i]| over n values; a nan gives nan.
inline float group_amax(const float* h, int64_t n) {
  using FVec = Vectorized<float>;
  FVec amax(0.0f);
  for (int64_t i = 0; i < n; i += FVec::size()) {
    // A partial load pads with zeros, which leave the amax as it is.
    amax = at::vec::maximum(amax, FVec::loadu(h + i, std::min<int64_t>(FVec::size(), n - i)).abs());
  }
  // maximum keeps a nan, as nan_max does.
  return at::vec::vec_reduce_all([](const FVec& a, const FVec& b) { return at::vec::maximum(a, b); }, amax);
}

// y (h / s clamped; a nan stays nan) into count elements of q, as
// quantized_value converts it: int8 rounds half to even in SIMD (a nan gives
// 0) and converts exactly; fp8 takes ATen's SIMD conversion on AVX-512, the
// one torch's own .to() takes there, and c10's scalar one elsewhere.
template <typename out_t>
inline void store_converted(Vectorized<float> y, out_t* q, int64_t count) {
  using FVec = Vectorized<float>;
  float lanes[FVec::size()];
  if constexpr (std::is_same_v<out_t, int8_t>) {
    FVec::blendv(y.round(), FVec(0.0f), y != y).store(lanes);
    for (int64_t i = 0; i < count; ++i) q[i] = static_cast<int8_t>(lanes[i]);
  } else {
#if defined(CPU_CAPABILITY_AVX512)
    at::vec::convert<out_t>(y).store(q, count);
#else
    y.store(lanes);
    for (int64_t i = 0; i < count; ++i) q[i] = out_t(lanes[i]);
#endif
  }
}

template <typename out_t>
void store_quantized(const float* h, int64_t n, float scale, out_t* q) {
  using FVec = Vectorized<float>;
  constexpr float kQmax = QuantFormat<out_t>::kQmax;
  const FVec s(scale), hi(kQmax), lo(-kQmax);
  for (int64_t i = 0; i < n; i += FVec::size()) {
    const int64_t lanes = std::min<int64_t>(FVec::size(), n - i);
    FVec y = FVec::loadu(h + i, lanes) / s;
    // Comparisons are false for a nan, which so stays nan, as in scaled_clamped.
    y = FVec::blendv(y, lo, y < lo);
    y = FVec::blendv(y, hi, y > hi);
    store_converted(y, q + i, lanes);
  }
}

template <typename scalar_t, int NIn, typename Fn>
void quantize(const ElementwiseArgs<NIn, 1>& args, const Fn& fn, at::ScalarType out_dtype, const QuantizeArgs& qa) {
  const int64_t groups_per_row = (args.cols + qa.group - 1) / qa.group;
  // Each span's groups, one by one: f(group index, its values, their count).
  auto each_group = [&](int64_t row, int64_t col, const float* values, int64_t n, const auto& f) {
    for (int64_t offset = 0; offset < n; offset += qa.group) {
      f(row * groups_per_row + (col + offset) / qa.group, values + offset, std::min(qa.group, n - offset));
    }
  };
  if (qa.pass == QuantizeArgs::kAmax) {
    std::vector<float> amax(args.rows * groups_per_row);
    for_each_span<scalar_t>(args, qa.group, fn, [&](int64_t row, int64_t col, const float* values, int64_t n) {
      each_group(row, col, values, n,
                 [&](int64_t g, const float* h, int64_t count) { amax[g] = group_amax(h, count); });
    });
    *qa.amax = std::accumulate(amax.begin(), amax.end(), *qa.amax, nan_max<float>);
    return;
  }
  with_quantized_type(out_dtype, [&](auto out_type) {
    using out_t = decltype(out_type);
    constexpr float kQmax = QuantFormat<out_t>::kQmax;
    out_t* const q = static_cast<out_t*>(args.out[0]);
    const int64_t q_row_stride = args.out_row_stride[0];
    if (qa.pass == QuantizeArgs::kGroups) {
      for_each_span<scalar_t>(args, qa.group, fn, [&](int64_t row, int64_t col, const float* values, int64_t n) {
        out_t* const q_span = q + row * q_row_stride + col;
        each_group(row, col, values, n, [&](int64_t g, const float* h, int64_t count) {
          const float s = scale_of_amax(group_amax(h, count), kQmax, qa.power_of_two);
          store_scale(qa, g, s);
          store_quantized(h, count, s, q_span + (h - values));
        });
      });
      return;
    }
    const float s = qa.given_is_amax ? scale_of_amax(*qa.given, kQmax, qa.power_of_two) : *qa.given;
    store_scale(qa, 0, s);
    for_each_span<scalar_t>(args, qa.group, fn, [&](int64_t row, int64_t col, const float* values, int64_t n) {
      store_quantized(values, n, s, q + row * q_row_stride + col);
    });
  });
}

}  // namespace fused_acts::cpu
