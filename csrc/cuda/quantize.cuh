// Quantized outputs on CUDA: one warp per group, with 16-byte loads where
// the operands allow. The warp computes its group's values twice: once for
// the amax (reduced across the warp), once to store them quantized with the
// group's scale. The second pass reads what the first brought into cache,
// and holds no values in registers across the reduction, whatever the
// group's size. The math is ../quantize.h, as on the CPU.
#pragma once

#include "../quantize.h"
#include "elementwise.cuh"

#include <c10/core/ScalarType.h>

namespace fused_acts::cuda {

constexpr int kWarp = 32;

// Stores one chunk of h quantized to out_t.
template <typename out_t, int VEC>
__device__ void store_quantized(const float (&h)[VEC], float s, void* q, int64_t row_stride, int64_t row, int64_t col,
                                int count) {
  constexpr float kQmax = QuantFormat<out_t>::kQmax;
  Pack<out_t, VEC> pack;
#pragma unroll
  for (int j = 0; j < VEC; ++j) pack.v[j] = quantized_value<out_t>(scaled_clamped(h[j], s, kQmax));
  store_chunk(pack, q, row_stride, 1, row, col, count);
}

// The quantized dtype's qmax and chunk store, picked at run time: the branch
// is uniform across the grid, and the kernels are not compiled three times.
template <int VEC>
struct QuantizedStore {
  at::ScalarType out_dtype;
  __device__ float qmax() const {
    switch (out_dtype) {
      case at::kFloat8_e4m3fn:
        return QuantFormat<c10::Float8_e4m3fn>::kQmax;
      case at::kFloat8_e5m2:
        return QuantFormat<c10::Float8_e5m2>::kQmax;
      default:
        return QuantFormat<int8_t>::kQmax;
    }
  }
  __device__ void operator()(const float (&h)[VEC], float s, void* q, int64_t row_stride, int64_t row, int64_t col,
                             int count) const {
    switch (out_dtype) {
      case at::kFloat8_e4m3fn:
        return store_quantized<c10::Float8_e4m3fn>(h, s, q, row_stride, row, col, count);
      case at::kFloat8_e5m2:
        return store_quantized<c10::Float8_e5m2>(h, s, q, row_stride, row, col, count);
      default:
        return store_quantized<int8_t>(h, s, q, row_stride, row, col, count);
    }
  }
};

template <typename scalar_t, int VEC, int NIn, typename Fn>
__global__ void __launch_bounds__(kThreads)
    quantize_kernel(ElementwiseArgs<NIn, 1> args, int64_t groups_per_row, int64_t num_groups, QuantizeArgs qa,
                    QuantizedStore<VEC> store, Fn fn) {
  using opmath_t = at::opmath_type<scalar_t>;
  const int64_t group_index = (static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x) / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (group_index >= num_groups) return;  // the whole warp: its lanes share a group
  const int64_t row = group_index / groups_per_row;
  const int64_t first_col = (group_index - row * groups_per_row) * qa.group;
  const int64_t n = min(qa.group, args.cols - first_col);

  // h (the op's values, rounded to scalar_t as the op stores them) at one chunk.
  auto values = [&](int64_t col, int count, float (&h)[VEC]) {
    Pack<scalar_t, VEC> in[NIn];
#pragma unroll
    for (int k = 0; k < NIn; ++k)
      load_chunk(in[k], args.in[k], args.in_row_stride[k], args.in_col_stride(k), row, col, count);
#pragma unroll
    for (int j = 0; j < VEC; ++j) {
      opmath_t x[NIn], y[1];
#pragma unroll
      for (int k = 0; k < NIn; ++k) x[k] = static_cast<opmath_t>(in[k].v[j]);
      fn(x, y);
      h[j] = j < count ? static_cast<float>(static_cast<scalar_t>(y[0])) : 0.0f;
    }
  };

  float s;
  if (qa.pass == QuantizeArgs::kGivenScale) {
    s = qa.given_is_amax ? scale_of_amax(*qa.given, store.qmax(), qa.power_of_two) : *qa.given;
    if (group_index == 0 && lane == 0) store_scale(qa, 0, s);
  } else {
    float amax = 0.0f;
    for (int64_t c = lane * VEC; c < n; c += kWarp * VEC) {
      float h[VEC];
      values(first_col + c, static_cast<int>(min(static_cast<int64_t>(VEC), n - c)), h);
#pragma unroll
      for (int j = 0; j < VEC; ++j) amax = nan_max(amax, fabsf(h[j]));
    }
#pragma unroll
    for (int offset = kWarp / 2; offset > 0; offset /= 2) {
      amax = nan_max(amax, __shfl_xor_sync(0xffffffffu, amax, offset));
    }
    if (qa.pass == QuantizeArgs::kAmax) {
      // Non-negative floats, and nan above them all, order as their bits do.
      if (lane == 0) atomicMax(reinterpret_cast<int*>(qa.amax), __float_as_int(amax));
      return;
    }
    s = scale_of_amax(amax, store.qmax(), qa.power_of_two);
    if (lane == 0) store_scale(qa, group_index, s);
  }
  for (int64_t c = lane * VEC; c < n; c += kWarp * VEC) {
    const int count = static_cast<int>(min(static_cast<int64_t>(VEC), n - c));
    float h[VEC];
    values(first_col + c, count, h);
    store(h, s, args.out[0], args.out_row_stride[0], row, first_col + c, count);
  }
}

template <typename scalar_t, int VEC, int NIn, typename Fn>
void launch_quantize(const ElementwiseArgs<NIn, 1>& args, const Fn& fn, at::ScalarType out_dtype,
                     const QuantizeArgs& qa) {
  const int64_t groups_per_row = (args.cols + qa.group - 1) / qa.group;
  const int64_t num_groups = groups_per_row * args.rows;
  constexpr int64_t kGroupsPerBlock = kThreads / kWarp;
  const int64_t blocks = (num_groups + kGroupsPerBlock - 1) / kGroupsPerBlock;
  TORCH_CHECK(blocks <= std::numeric_limits<int32_t>::max(), "fused_acts: tensor too large for one launch");
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  quantize_kernel<scalar_t, VEC>
      <<<blocks, kThreads, 0, stream>>>(args, groups_per_row, num_groups, qa, QuantizedStore<VEC>{out_dtype}, fn);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <typename scalar_t, int NIn, typename Fn>
void quantize(const ElementwiseArgs<NIn, 1>& args, const Fn& fn, at::ScalarType out_dtype, const QuantizeArgs& qa) {
  constexpr int kVec = 16 / sizeof(scalar_t);
  if constexpr (!Fn::kPairedOnly) {
    if (qa.group % kVec == 0 && rows_aligned<kVec, scalar_t>(args)) {
      return launch_quantize<scalar_t, kVec>(args, fn, out_dtype, qa);
    }
  }
  launch_quantize<scalar_t, 1>(args, fn, out_dtype, qa);
}

}  // namespace fused_acts::cuda
