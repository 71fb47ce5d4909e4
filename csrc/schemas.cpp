// Every op's schema, from the list in op_list.h. Kernels register per
// dispatch key in cpu/kernels.cpp and cuda/kernels.cu; fake kernels,
// autograd and vmap rules in fused_acts/.
#include "op_list.h"

#include <torch/library.h>

#include <string>

namespace fused_acts {
namespace {

void define(torch::Library& m, const std::string& schema) { m.def(schema.c_str()); }

template <typename Op>
void define_schemas(torch::Library& m, Op, Unary) {
  const std::string name = Op::kName, params = Op::Select::kSchema;
  define(m, name + "(Tensor x" + params + ") -> Tensor");
  define(m, name + "_backward(Tensor grad, Tensor x" + params + ") -> Tensor");
}

template <typename Op>
void define_schemas(torch::Library& m, Op, Gated) {
  const std::string name = Op::kName, params = Op::Select::kSchema;
  define(m, name + "(Tensor gate, Tensor up" + params + ") -> Tensor");
  define(m, name + "_backward(Tensor grad, Tensor gate, Tensor up" + params + ") -> (Tensor, Tensor)");
  const std::string packed_params = params + ", bool interleaved=False, bool up_first=False";
  define(m, name + "_packed(Tensor x" + packed_params + ") -> Tensor");
  define(m, name + "_packed_backward(Tensor grad, Tensor x" + packed_params + ") -> Tensor");
  define(m, name + "_packed_backward_(Tensor grad, Tensor(a!) x" + packed_params + ") -> ()");
}

}  // namespace

TORCH_LIBRARY(fused_acts, m) {
  for_each_op([&](auto op) { define_schemas(m, op, typename decltype(op)::Kind{}); });
}

}  // namespace fused_acts
