// The quantized ops' autograd kernels. They have no derivative (a rounding's
// is zero almost everywhere): under grad mode, an input that requires grad is
// refused before any work; otherwise the call goes on to the backend.
#include "../op_list.h"
#include "common.h"

#include <torch/library.h>

#include <optional>
#include <tuple>

namespace fused_acts::autograd {
namespace {

// The quantized op *kOp, whose arguments are Forward... (its forward's) and
// then the format (schemas.cpp's kQuantizedSchema); messages name it *kName.
template <const char* const* kOp, const char* const* kName, typename... Forward>
struct WithoutGrad {
  using Result = std::tuple<Tensor, Tensor>;
  static Result call(Forward... args, at::ScalarType out_dtype, int64_t group_size, bool per_tensor,
                     std::optional<at::ScalarType> scale_dtype, const std::optional<Tensor>& scale) {
    TORCH_CHECK(!(requires_grad(args) || ...), *kName,
                ": a quantized output has no gradient, but an input requires grad; call it under torch.no_grad() or "
                "torch.inference_mode()");
    at::AutoDispatchBelowADInplaceOrView guard;
    return op_handle<Result(Forward..., at::ScalarType, int64_t, bool, std::optional<at::ScalarType>,
                            const std::optional<Tensor>&),
                     kOp>()
        .call(args..., out_dtype, group_size, per_tensor, scale_dtype, scale);
  }
};

template <typename Op, typename Kind = typename Op::Kind, typename Params = typename Op::Select::Params>
struct QuantizedAutograd;

template <typename Op, typename... P>
struct QuantizedAutograd<Op, Unary, std::tuple<P...>> {
  static void register_into(torch::Library& m) {
    m.impl(Op::kQuantized, TORCH_FN((WithoutGrad<&Op::kQuantized, &Op::kName, const Tensor&, P...>::call)));
  }
};

template <typename Op, typename... P>
struct QuantizedAutograd<Op, Gated, std::tuple<P...>> {
  static void register_into(torch::Library& m) {
    m.impl(Op::kQuantized,
           TORCH_FN((WithoutGrad<&Op::kQuantized, &Op::kName, const Tensor&, const Tensor&, P...>::call)));
    m.impl(Op::kPackedQuantized,
           TORCH_FN((WithoutGrad<&Op::kPackedQuantized, &Op::kName, const Tensor&, P..., bool, bool>::call)));
  }
};

constexpr const char* kQuantize = "quantize";

}  // namespace

TORCH_LIBRARY_IMPL(fused_acts, Autograd, m) {
  for_each_op([&](auto op) { QuantizedAutograd<decltype(op)>::register_into(m); });
  m.impl(kQuantize, TORCH_FN((WithoutGrad<&kQuantize, &kQuantize, const Tensor&>::call)));
}

}  // namespace fused_acts::autograd
