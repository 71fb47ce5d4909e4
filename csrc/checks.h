// Input checks shared by the CPU and CUDA kernels. Each message starts with
// the op's name and names the argument at fault. fused_acts/ops.py repeats
// them for fake tensors, so torch.compile reports the same errors.
#pragma once

#include "monitor.h"

#include <ATen/MemoryOverlap.h>
#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <cmath>
#include <optional>
#include <string>
#include <string_view>

namespace fused_acts {

// "[3, 4]", as Python prints a shape. Built by hand: streaming an IntArrayRef
// from a TU compiled by nvcc segfaulted (seen with torch 2.11, CUDA 13).
inline std::string shape_str(at::IntArrayRef sizes) {
  std::string text = "[";
  for (size_t i = 0; i < sizes.size(); ++i) {
    text += (i ? ", " : "") + std::to_string(sizes[i]);
  }
  return text + "]";
}

// torch's own spelling ("bfloat16", "int64"), as Python users see it.
inline std::string dtype_name(at::ScalarType dtype) { return std::string(c10::getDtypeNames(dtype).first); }
inline std::string dtype_name(const at::Tensor& t) { return dtype_name(t.scalar_type()); }

inline void check_floating(const char* op, const char* arg, const at::Tensor& t) {
  const auto dtype = t.scalar_type();
  TORCH_CHECK_TYPE(dtype == at::kFloat || dtype == at::kDouble || dtype == at::kBFloat16 || dtype == at::kHalf, op,
                   ": ", arg, " must be float32, float64, bfloat16 or float16, got ", dtype_name(t));
}

inline void check_same_device(const char* op, const char* a_name, const at::Tensor& a, const char* b_name,
                              const at::Tensor& b) {
  TORCH_CHECK(a.device() == b.device(), op, ": ", a_name, " and ", b_name, " must be on the same device, got ",
              a.device(), " and ", b.device());
}

// a and b must match in shape, dtype and device.
inline void check_same(const char* op, const char* a_name, const at::Tensor& a, const char* b_name,
                       const at::Tensor& b) {
  check_floating(op, a_name, a);
  check_floating(op, b_name, b);
  TORCH_CHECK_VALUE(a.sizes() == b.sizes(), op, ": ", a_name, " and ", b_name, " must have the same shape, got ",
                    shape_str(a.sizes()), " and ", shape_str(b.sizes()));
  TORCH_CHECK_TYPE(a.scalar_type() == b.scalar_type(), op, ": ", a_name, " and ", b_name,
                   " must have the same dtype, got ", dtype_name(a), " and ", dtype_name(b));
  check_same_device(op, a_name, a, b_name, b);
}

// A coefficient of x's activation (xIELU's alpha_p, alpha_n): one
// floating element, on x's device.
inline void check_coefficient(const char* op, const char* arg, const at::Tensor& t, const char* x_name,
                              const at::Tensor& x) {
  check_floating(op, arg, t);
  TORCH_CHECK_VALUE(t.numel() == 1, op, ": ", arg, " must have one element, got shape ", shape_str(t.sizes()));
  check_same_device(op, arg, t, x_name, x);
}

// How a packed x holds gate and up, as the messages name it.
inline const char* packed_layout_name(bool interleaved, bool up_first) {
  if (interleaved) return up_first ? "up and gate interleaved" : "gate and up interleaved";
  return up_first ? "up‖gate" : "gate‖up";
}

inline void check_packed(const char* op, const at::Tensor& x, bool interleaved, bool up_first) {
  check_floating(op, "x", x);
  TORCH_CHECK_VALUE(x.dim() >= 1 && x.size(-1) % 2 == 0, op, ": packed x must have an even last dim (",
                    packed_layout_name(interleaved, up_first), "), got shape ", shape_str(x.sizes()));
}

// The in-place packed backward writes x's gradient over x: x must be one
// row-strided tensor that neither overlaps itself (as ATen's in-place ops
// require) nor grad.
inline void check_writable(const char* op, const at::Tensor& grad, const at::Tensor& x, bool row_strided) {
  TORCH_CHECK_VALUE(row_strided, op, ": x must have a row stride to take its gradient in place, got strides ",
                    shape_str(x.strides()));
  TORCH_CHECK_VALUE(at::has_internal_overlap(x) != at::MemOverlap::Yes, op,
                    ": x overlaps itself (an expanded tensor's elements share memory), so its gradient cannot be "
                    "written in place, got strides ",
                    shape_str(x.strides()));
  TORCH_CHECK_VALUE(at::get_overlap_status(grad, x) == at::MemOverlapStatus::No, op,
                    ": grad and x must not overlap to write x's gradient in place");
}

inline void check_approximate(const char* op, std::string_view approximate) {
  TORCH_CHECK_VALUE(approximate == "none" || approximate == "tanh", op, ": approximate must be 'none' or 'tanh', got '",
                    approximate, "'");
}

inline void check_finite(const char* op, const char* arg, double value) {
  TORCH_CHECK_VALUE(std::isfinite(value), op, ": ", arg, " must be finite, got ", value);
}

inline void check_positive(const char* op, const char* arg, double value) {
  TORCH_CHECK_VALUE(value > 0, op, ": ", arg, " must be positive, got ", value);
}

// A quantized op's format, as its schema's last arguments give it (op_list.h).
struct QuantSpec {
  at::ScalarType out_dtype;
  int64_t group_size;  // 0: one group per row
  bool per_tensor;
  std::optional<at::ScalarType> scale_dtype;
  std::optional<at::Tensor> scale;

  bool power_of_two() const { return scale_dtype == at::kFloat8_e8m0fnu; }
  std::string granularity() const {
    if (per_tensor) return "'tensor'";
    return group_size == 0 ? "'row'" : std::to_string(group_size);
  }
};

// sizes: the op's output, which is quantized; x: the input it comes from.
inline void check_quantized(const char* op, const QuantSpec& spec, at::IntArrayRef sizes, const char* x_name,
                            const at::Tensor& x) {
  const auto out = spec.out_dtype;
  TORCH_CHECK_TYPE(out == at::kFloat8_e4m3fn || out == at::kFloat8_e5m2 || out == at::kChar, op,
                   ": out_dtype must be float8_e4m3fn, float8_e5m2 or int8, got ", dtype_name(out));
  TORCH_CHECK_TYPE(!spec.scale_dtype || *spec.scale_dtype == at::kFloat || spec.power_of_two(), op,
                   ": scale_dtype must be float32 or float8_e8m0fnu, got ", dtype_name(*spec.scale_dtype));
  if (spec.per_tensor) {
    TORCH_CHECK_VALUE(spec.group_size == 0, op, ": a per-tensor scale takes no group_size, got ", spec.group_size);
  } else {
    const int64_t cols = sizes.empty() ? 1 : sizes.back();
    TORCH_CHECK_VALUE(spec.group_size >= 0, op, ": granularity must be a positive group size, got ", spec.group_size);
    TORCH_CHECK_VALUE(spec.group_size == 0 || cols % spec.group_size == 0, op, ": granularity ", spec.group_size,
                      " does not divide the last dim ", cols);
  }
  if (spec.scale) {
    const at::Tensor& scale = *spec.scale;
    TORCH_CHECK_VALUE(spec.per_tensor, op, ": a static scale is one scale for the tensor, so granularity must be ",
                      "'tensor', got ", spec.granularity());
    TORCH_CHECK_TYPE(scale.scalar_type() == at::kFloat && scale.numel() == 1, op,
                     ": scale must be a float32 tensor with one element, got ", dtype_name(scale), " of shape ",
                     shape_str(scale.sizes()));
    TORCH_CHECK_VALUE(!spec.power_of_two(), op,
                      ": a static scale is used as given, so scale_dtype must be float32, got float8_e8m0fnu");
    check_same_device(op, "scale", scale, x_name, x);
  }
}

// The shared memory a CUDA block's histogram takes stays small.
constexpr int64_t kMaxHistogramBins = 4096;

// A monitored op's accumulators (monitor.h), on x's device: stats float64
// [kNumStats, channels], histogram float64 [bins] (0 bins: none), both
// contiguous, the kernels adding to them in place.
inline void check_monitor(const char* op, const at::Tensor& stats, const at::Tensor& histogram, int64_t channels,
                          const char* x_name, const at::Tensor& x) {
  TORCH_CHECK_TYPE(stats.scalar_type() == at::kDouble, op, ": stats must be float64, got ", dtype_name(stats));
  TORCH_CHECK_VALUE(stats.dim() == 2 && stats.size(0) == kNumStats && stats.size(1) == channels, op,
                    ": stats must have shape [", kNumStats, ", ", channels, "] (", kNumStats,
                    " statistics per channel of the output), got ", shape_str(stats.sizes()));
  TORCH_CHECK_VALUE(stats.is_contiguous(), op, ": stats must be contiguous");
  TORCH_CHECK_TYPE(histogram.scalar_type() == at::kDouble, op, ": histogram must be float64, got ",
                   dtype_name(histogram));
  TORCH_CHECK_VALUE(histogram.dim() == 1 && histogram.size(0) <= kMaxHistogramBins && histogram.is_contiguous(), op,
                    ": histogram must be a contiguous 1-D tensor of at most ", kMaxHistogramBins, " bins, got shape ",
                    shape_str(histogram.sizes()));
  check_same_device(op, "stats", stats, x_name, x);
  check_same_device(op, "histogram", histogram, x_name, x);
}

}  // namespace fused_acts
