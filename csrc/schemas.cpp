// Every op's schema, from the list in op_list.h, under the names its op type
// gives each variant. Kernels register per dispatch key in cpu/ and cuda/,
// autograd in autograd/; fake kernels and vmap rules in fused_acts/.
#include "op_list.h"

#include <c10/macros/Export.h>
#include <torch/library.h>

#include <string>

namespace fused_acts {
namespace {

// A quantized output's format, keyword-only: out_dtype, then one scale per row
// (group_size 0), per group_size elements of a row, or per tensor, given
// (scale) or computed; scale_dtype float32 (None) or float8_e8m0fnu.
constexpr const char* kQuantizedSchema =
    ", *, ScalarType out_dtype, int group_size=0, bool per_tensor=False, ScalarType? scale_dtype=None, "
    "Tensor? scale=None) -> (Tensor, Tensor)";

// A monitored forward's accumulators, which its kernel adds to (monitor.h).
constexpr const char* kMonitoredSchema = ", *, Tensor(a!) stats, Tensor(b!) histogram) -> Tensor";

// Each op's name, its family (the op_list.h entry, or quantize) and what it
// is, one "name family variant layout" line per op, in definition order:
// what Python's op table (fused_acts/_op_list.py) reads, so that no one
// parses a name back into its parts.
std::string& op_table() {
  static std::string table;
  return table;
}

// variant: forward, backward, backward_in_place, quantized or monitored;
// layout: separate, or packed (one gate‖up x).
void define(torch::Library& m, const char* name, const char* family, const char* variant, const char* layout,
            const std::string& signature) {
  m.def((std::string(name) + signature).c_str());
  op_table() += std::string(name) + " " + family + " " + variant + " " + layout + "\n";
}

template <typename Op>
void define_schemas(torch::Library& m, Op, Unary) {
  const std::string params = Op::Select::kSchema;
  const auto def = [&](const char* name, const char* variant, const std::string& signature) {
    define(m, name, Op::kName, variant, "separate", signature);
  };
  def(Op::kName, "forward", "(Tensor x" + params + ") -> Tensor");
  def(Op::kBackward, "backward", "(Tensor grad, Tensor x" + params + ") -> Tensor");
  def(Op::kQuantized, "quantized", "(Tensor x" + params + kQuantizedSchema);
  def(Op::kMonitored, "monitored", "(Tensor x" + params + kMonitoredSchema);
}

template <typename Op>
void define_schemas(torch::Library& m, Op, Gated) {
  const std::string params = Op::Select::kSchema;
  const std::string packed_params = params + ", bool interleaved=False, bool up_first=False";
  const auto def = [&](const char* name, const char* variant, const char* layout, const std::string& signature) {
    define(m, name, Op::kName, variant, layout, signature);
  };
  def(Op::kName, "forward", "separate", "(Tensor gate, Tensor up" + params + ") -> Tensor");
  def(Op::kBackward, "backward", "separate", "(Tensor grad, Tensor gate, Tensor up" + params + ") -> (Tensor, Tensor)");
  def(Op::kPacked, "forward", "packed", "(Tensor x" + packed_params + ") -> Tensor");
  def(Op::kPackedBackward, "backward", "packed", "(Tensor grad, Tensor x" + packed_params + ") -> Tensor");
  def(Op::kPackedBackwardInPlace, "backward_in_place", "packed",
      "(Tensor grad, Tensor(a!) x" + packed_params + ") -> ()");
  def(Op::kQuantized, "quantized", "separate", "(Tensor gate, Tensor up" + params + kQuantizedSchema);
  def(Op::kPackedQuantized, "quantized", "packed", "(Tensor x" + packed_params + kQuantizedSchema);
  def(Op::kMonitored, "monitored", "separate", "(Tensor gate, Tensor up" + params + kMonitoredSchema);
  def(Op::kPackedMonitored, "monitored", "packed", "(Tensor x" + packed_params + kMonitoredSchema);
}

}  // namespace

TORCH_LIBRARY(fused_acts, m) {
  for_each_op([&](auto op) { define_schemas(m, op, typename decltype(op)::Kind{}); });
  define(m, "quantize", "quantize", "quantized", "separate", std::string("(Tensor x") + kQuantizedSchema);
  // xIELU (ops/xielu.h): coefficients that are tensors, and a backward that
  // gives their gradients too, so it is not an op_list.h family.
  const std::string xielu_params = "Tensor alpha_p, Tensor alpha_n, float beta=0.5, float eps=-1e-6";
  define(m, "xielu", "xielu", "forward", "separate", "(Tensor x, " + xielu_params + ") -> Tensor");
  define(m, "xielu_backward", "xielu", "backward", "separate",
         "(Tensor grad, Tensor x, " + xielu_params + ") -> (Tensor, Tensor, Tensor)");
}

}  // namespace fused_acts

// The op table above, for Python to read through ctypes once the library is loaded.
extern "C" C10_EXPORT const char* fused_acts_op_table() { return fused_acts::op_table().c_str(); }
