// Host-side view of an elementwise op's operands, shared by both engines.
// Every operand is seen as `rows` rows of `cols` elements, each operand with
// its own row stride, so a row-strided view (one half of a packed gate‖up
// tensor, a slice of a batch) is read and written in place. Elements are
// unit-stride, but for a pair: two operands that are the interleaved halves
// of one tensor (x[..., 0::2] and x[..., 1::2], GPT-OSS's gate and up),
// which the engines read and write pair by pair.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/macros/Macros.h>

#include <cstdint>
#include <optional>

namespace fused_acts {

// The operands k and k + 1 of each side that form a pair; -1: none.
struct Pairs {
  int in = -1;
  int out = -1;
};

template <int NIn, int NOut>
struct ElementwiseArgs {
  int64_t rows;
  int64_t cols;
  const void* in[NIn];
  int64_t in_row_stride[NIn];
  void* out[NOut];
  int64_t out_row_stride[NOut];
  Pairs pairs;

  static C10_HOST_DEVICE int64_t col_stride(int pair, int k) {
    return pair >= 0 && (k == pair || k == pair + 1) ? 2 : 1;
  }
  C10_HOST_DEVICE int64_t in_col_stride(int k) const { return col_stride(pairs.in, k); }
  C10_HOST_DEVICE int64_t out_col_stride(int k) const { return col_stride(pairs.out, k); }
};

// The stride between rows of t seen as [numel / size(-1), size(-1)], if its
// last dim has stride col_stride and its outer dims collapse into one.
inline std::optional<int64_t> row_stride_of(const at::Tensor& t, int64_t col_stride = 1) {
  if (t.dim() == 0) return 1;
  const int64_t last = t.dim() - 1;
  if (t.size(last) != 1 && t.stride(last) != col_stride) return std::nullopt;
  std::optional<int64_t> row_stride;
  int64_t next_stride = 0;
  for (int64_t d = last - 1; d >= 0; --d) {
    if (t.size(d) == 1) continue;
    if (row_stride.has_value() && t.stride(d) != next_stride) return std::nullopt;
    if (!row_stride.has_value()) row_stride = t.stride(d);
    next_stride = t.stride(d) * t.size(d);
  }
  return row_stride.value_or(t.size(last) * col_stride);
}

// inputs that have no row stride are replaced by contiguous copies, which
// the caller's array keeps alive for the launch; a pair's tensor must have
// one already. Operands share one shape and numel > 0. When every operand is
// dense the rows collapse into one.
template <int NIn, int NOut>
ElementwiseArgs<NIn, NOut> make_elementwise_args(at::Tensor (&inputs)[NIn], const at::Tensor (&outputs)[NOut],
                                                 Pairs pairs = {}) {
  ElementwiseArgs<NIn, NOut> args;
  args.pairs = pairs;
  const at::Tensor& first = inputs[0];
  args.cols = first.dim() == 0 ? 1 : first.size(-1);
  args.rows = first.numel() / args.cols;
  bool dense = true;
  for (int k = 0; k < NIn; ++k) {
    const int64_t col_stride = args.in_col_stride(k);
    std::optional<int64_t> stride = row_stride_of(inputs[k], col_stride);
    if (!stride.has_value()) {
      TORCH_INTERNAL_ASSERT(col_stride == 1, "a pair's tensor has a row stride");
      inputs[k] = inputs[k].contiguous();
      stride = args.cols;
    }
    args.in[k] = inputs[k].const_data_ptr();
    args.in_row_stride[k] = *stride;
    dense = dense && (args.rows == 1 || *stride == args.cols * col_stride);
  }
  for (int k = 0; k < NOut; ++k) {
    const int64_t col_stride = args.out_col_stride(k);
    const std::optional<int64_t> stride = row_stride_of(outputs[k], col_stride);
    TORCH_INTERNAL_ASSERT(stride.has_value(), "outputs are allocated with a row stride");
    args.out[k] = outputs[k].data_ptr();
    args.out_row_stride[k] = *stride;
    dense = dense && (args.rows == 1 || *stride == args.cols * col_stride);
  }
  if (dense) {
    args.cols *= args.rows;
    args.rows = 1;
    for (int k = 0; k < NIn; ++k) args.in_row_stride[k] = args.cols * args.in_col_stride(k);
    for (int k = 0; k < NOut; ++k) args.out_row_stride[k] = args.cols * args.out_col_stride(k);
  }
  return args;
}

// args seen as rows of `channels` columns, for the engines that reduce per
// column: make_elementwise_args collapses dense operands into one row.
template <int NIn, int NOut>
ElementwiseArgs<NIn, NOut> per_channel(ElementwiseArgs<NIn, NOut> args, int64_t channels) {
  if (args.rows != 1 || args.cols == channels) return args;
  args.rows = args.cols / channels;
  args.cols = channels;
  for (int k = 0; k < NIn; ++k) args.in_row_stride[k] = channels * args.in_col_stride(k);
  for (int k = 0; k < NOut; ++k) args.out_row_stride[k] = channels * args.out_col_stride(k);
  return args;
}

}  // namespace fused_acts
