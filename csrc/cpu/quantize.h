// Quantized outputs on the CPU: each group's values, from the grouped engine,
// are reduced to their amax and stored quantized with the group's scale
// (../quantize.h). Division and clamp are SIMD; both are exact, so they
// round as the scalar definition does.
#pragma once

#include "../quantize.h"
#include "grouped.h"

#include <ATen/cpu/vec/vec.h>
#include <c10/core/ScalarType.h>

#include <algorithm>
#include <numeric>
#include <vector>

namespace fused_acts::cpu {

// Values are taken in blocks of this many, converted to float32.
constexpr int64_t kBlock = 256;

template <typename scalar_t>
float group_amax(const scalar_t* values, int64_t n) {
  using FVec = Vectorized<float>;
  float block[kBlock];
  FVec amax(0.0f);
  for (int64_t start = 0; start < n; start += kBlock) {
    const int64_t count = std::min(kBlock, n - start);
    at::vec::convert(values + start, block, count);
    for (int64_t i = 0; i < count; i += FVec::size()) {
      // A partial load pads with zeros, which leave the amax as it is.
      amax = at::vec::maximum(amax, FVec::loadu(block + i, std::min<int64_t>(FVec::size(), count - i)).abs());
    }
  }
  float lanes[FVec::size()];
  amax.store(lanes);
  return std::accumulate(lanes, lanes + FVec::size(), 0.0f, nan_max);
}

template <typename scalar_t, typename out_t>
void store_quantized(const scalar_t* values, int64_t n, float scale, out_t* q) {
  using FVec = Vectorized<float>;
  constexpr float kQmax = QuantFormat<out_t>::kQmax;
  const FVec s(scale), hi(kQmax), lo(-kQmax);
  float block[kBlock];
  for (int64_t start = 0; start < n; start += kBlock) {
    const int64_t count = std::min(kBlock, n - start);
    at::vec::convert(values + start, block, count);
    for (int64_t i = 0; i < count; i += FVec::size()) {
      FVec y = FVec::loadu(block + i) / s;
      // Comparisons are false for a nan, which so stays nan, as in scaled_clamped.
      y = FVec::blendv(y, lo, y < lo);
      y = FVec::blendv(y, hi, y > hi);
      y.store(block + i);
    }
    for (int64_t i = 0; i < count; ++i) q[start + i] = quantized_value<out_t>(block[i]);
  }
}

template <typename scalar_t, int NIn, typename Fn>
void quantize(const ElementwiseArgs<NIn, 1>& args, const Fn& fn, at::ScalarType out_dtype, const QuantizeArgs& qa) {
  const int64_t groups_per_row = (args.cols + qa.group - 1) / qa.group;
  if (qa.pass == QuantizeArgs::kAmax) {
    std::vector<float> amax(args.rows * groups_per_row);
    for_each_group<scalar_t>(args, qa.group, fn, [&](int64_t row, int64_t col, const scalar_t* values, int64_t n) {
      amax[row * groups_per_row + col / qa.group] = group_amax(values, n);
    });
    *qa.amax = std::accumulate(amax.begin(), amax.end(), *qa.amax, nan_max);
    return;
  }
  with_quantized_type(out_dtype, [&](auto out_type) {
    using out_t = decltype(out_type);
    constexpr float kQmax = QuantFormat<out_t>::kQmax;
    out_t* const q = static_cast<out_t*>(args.out[0]);
    const int64_t q_row_stride = args.out_row_stride[0];
    if (qa.pass == QuantizeArgs::kGroups) {
      for_each_group<scalar_t>(args, qa.group, fn, [&](int64_t row, int64_t col, const scalar_t* values, int64_t n) {
        const float s = scale_of_amax(group_amax(values, n), kQmax, qa.power_of_two);
        store_scale(qa, row * groups_per_row + col / qa.group, s);
        store_quantized(values, n, s, q + row * q_row_stride + col);
      });
      return;
    }
    const float s = qa.given_is_amax ? scale_of_amax(*qa.given, kQmax, qa.power_of_two) : *qa.given;
    store_scale(qa, 0, s);
    for_each_group<scalar_t>(args, qa.group, fn, [&](int64_t row, int64_t col, const scalar_t* values, int64_t n) {
      store_quantized(values, n, s, q + row * q_row_stride + col);
    });
  });
}

}  // namespace fused_acts::cpu
