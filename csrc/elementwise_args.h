// Host-side view of an elementwise op's operands, shared by both engines.
// Every operand is seen as `rows` rows of `cols` unit-stride elements, each
// operand with its own row stride, so a row-strided view (one half of a
// packed gate‖up tensor, a slice of a batch) is read and written in place.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <optional>

namespace fused_acts {

template <int NIn, int NOut>
struct ElementwiseArgs {
  int64_t rows;
  int64_t cols;
  const void* in[NIn];
  int64_t in_row_stride[NIn];
  void* out[NOut];
  int64_t out_row_stride[NOut];
};

// The stride between rows of t seen as [numel / size(-1), size(-1)], if its
// last dim is unit-stride and its outer dims collapse into one.
inline std::optional<int64_t> row_stride_of(const at::Tensor& t) {
  if (t.dim() == 0) return 1;
  const int64_t last = t.dim() - 1;
  if (t.size(last) != 1 && t.stride(last) != 1) return std::nullopt;
  std::optional<int64_t> row_stride;
  int64_t next_stride = 0;
  for (int64_t d = last - 1; d >= 0; --d) {
    if (t.size(d) == 1) continue;
    if (row_stride.has_value() && t.stride(d) != next_stride) return std::nullopt;
    if (!row_stride.has_value()) row_stride = t.stride(d);
    next_stride = t.stride(d) * t.size(d);
  }
  return row_stride.value_or(t.size(last));
}

// inputs that have no row stride are replaced by contiguous copies, which
// the caller's array keeps alive for the launch. Operands share one shape
// and numel > 0. When every operand is dense the rows collapse into one.
template <int NIn, int NOut>
ElementwiseArgs<NIn, NOut> make_elementwise_args(at::Tensor (&inputs)[NIn], const at::Tensor (&outputs)[NOut]) {
  ElementwiseArgs<NIn, NOut> args;
  const at::Tensor& first = inputs[0];
  args.cols = first.dim() == 0 ? 1 : first.size(-1);
  args.rows = first.numel() / args.cols;
  bool dense = true;
  for (int k = 0; k < NIn; ++k) {
    std::optional<int64_t> stride = row_stride_of(inputs[k]);
    if (!stride.has_value()) {
      inputs[k] = inputs[k].contiguous();
      stride = args.cols;
    }
    args.in[k] = inputs[k].const_data_ptr();
    args.in_row_stride[k] = *stride;
    dense = dense && (args.rows == 1 || *stride == args.cols);
  }
  for (int k = 0; k < NOut; ++k) {
    const std::optional<int64_t> stride = row_stride_of(outputs[k]);
    TORCH_INTERNAL_ASSERT(stride.has_value(), "outputs are allocated with a row stride");
    args.out[k] = outputs[k].data_ptr();
    args.out_row_stride[k] = *stride;
    dense = dense && (args.rows == 1 || *stride == args.cols);
  }
  if (dense) {
    args.cols *= args.rows;
    args.rows = 1;
    for (int k = 0; k < NIn; ++k) args.in_row_stride[k] = args.cols;
    for (int k = 0; k < NOut; ++k) args.out_row_stride[k] = args.cols;
  }
  return args;
}

}  // namespace fused_acts
