// Every op's schema, from the list in op_list.h, under the names its op type
// gives each variant. Kernels register per dispatch key in cpu/ and cuda/,
// autograd in autograd/; fake kernels and vmap rules in fused_acts/.
#include "op_list.h"

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

void define(torch::Library& m, const std::string& schema) { m.def(schema.c_str()); }

template <typename Op>
void define_schemas(torch::Library& m, Op, Unary) {
  const std::string params = Op::Select::kSchema;
  define(m, std::string(Op::kName) + "(Tensor x" + params + ") -> Tensor");
  define(m, std::string(Op::kBackward) + "(Tensor grad, Tensor x" + params + ") -> Tensor");
  define(m, std::string(Op::kQuantized) + "(Tensor x" + params + kQuantizedSchema);
  define(m, std::string(Op::kMonitored) + "(Tensor x" + params + kMonitoredSchema);
}

template <typename Op>
void define_schemas(torch::Library& m, Op, Gated) {
  const std::string params = Op::Select::kSchema;
  define(m, std::string(Op::kName) + "(Tensor gate, Tensor up" + params + ") -> Tensor");
  define(m, std::string(Op::kBackward) + "(Tensor grad, Tensor gate, Tensor up" + params + ") -> (Tensor, Tensor)");
  const std::string packed_params = params + ", bool interleaved=False, bool up_first=False";
  define(m, std::string(Op::kPacked) + "(Tensor x" + packed_params + ") -> Tensor");
  define(m, std::string(Op::kPackedBackward) + "(Tensor grad, Tensor x" + packed_params + ") -> Tensor");
  define(m, std::string(Op::kPackedBackwardInPlace) + "(Tensor grad, Tensor(a!) x" + packed_params + ") -> ()");
  define(m, std::string(Op::kQuantized) + "(Tensor gate, Tensor up" + params + kQuantizedSchema);
  define(m, std::string(Op::kPackedQuantized) + "(Tensor x" + packed_params + kQuantizedSchema);
  define(m, std::string(Op::kMonitored) + "(Tensor gate, Tensor up" + params + kMonitoredSchema);
  define(m, std::string(Op::kPackedMonitored) + "(Tensor x" + packed_params + kMonitoredSchema);
}

}  // namespace

TORCH_LIBRARY(fused_acts, m) {
  for_each_op([&](auto op) { define_schemas(m, op, typename decltype(op)::Kind{}); });
  define(m, std::string("quantize(Tensor x") + kQuantizedSchema);
}

}  // namespace fused_acts
