// Every op, declared once. Each line of FUSED_ACTS_FOR_EACH_OP is
// X(name, Kind, Select), and makes a family of ops:
//   Unary  name(Tensor x, <params>) -> Tensor
//          name_backward(Tensor grad, Tensor x, <params>) -> Tensor
//   Gated  name(Tensor gate, Tensor up, <params>) -> Tensor
//          name_backward(Tensor grad, Tensor gate, Tensor up, <params>) -> (Tensor, Tensor)
//          name_packed(Tensor x, <params>, <layout>) -> Tensor,
//            x's last dim being gate‖up, or gate and up alternating
//          name_packed_backward(Tensor grad, Tensor x, <params>, <layout>) -> Tensor
//          name_packed_backward_(Tensor grad, Tensor(a!) x, <params>, <layout>) -> (),
//            the gradient written over x (for recompute, which owns x)
//          with <layout> = bool interleaved=False, bool up_first=False: up_first
//          swaps the halves (up‖gate), or the pair (up at the even elements)
//   and for both, the forward quantized (quantize.h):
//          name_quantized(<its forward's arguments>, <format>) -> (Tensor, Tensor)
//          name_packed_quantized (Gated), the same for the packed forward
//          with <format> schemas.cpp's kQuantizedSchema; quantize(Tensor x, <format>) is
//          the same for a tensor's own values
//   and the forward monitored (monitor.h):
//          name_monitored(<its forward's arguments>, *, Tensor(a!) stats, Tensor(b!) histogram) -> Tensor
//          name_packed_monitored (Gated), the same for the packed forward
// Select says what <params> are and picks the activation (activations.h)
// from their values. schemas.cpp defines the schemas from this list; ops/
// holds each variant's host code (plain, quantized, monitored), from which
// cpu/ and cuda/ register the backends' kernels and autograd/ the autograd;
// fused_acts/ registers fakes and vmap for whatever schemas it finds.
#pragma once

#include "activations.h"
#include "checks.h"

#include <c10/util/string_view.h>
#include <torch/library.h>

#include <tuple>
#include <type_traits>

namespace fused_acts {

struct Unary {};
struct Gated {};

// A packed x's gate and up, as views: its last dim's halves (gate‖up), or
// its even and odd elements (interleaved); up_first: the other way round.
inline std::tuple<at::Tensor, at::Tensor> packed_halves(const at::Tensor& x, bool interleaved, bool up_first) {
  const int64_t half = x.size(-1) / 2;
  at::Tensor first = interleaved ? x.slice(-1, 0, 2 * half, 2) : x.narrow(-1, 0, half);
  at::Tensor second = interleaved ? x.slice(-1, 1, 2 * half, 2) : x.narrow(-1, half, half);
  if (up_first) return {second, first};
  return {first, second};
}

#define FUSED_ACTS_FOR_EACH_OP(X)              \
  X(gelu, Unary, GeluApproximate)              \
  X(silu, Unary, Only<SiluAct>)                \
  X(swish, Unary, SwishBeta)                   \
  X(mish, Unary, Only<MishAct>)                \
  X(relu_squared, Unary, Only<ReluSquaredAct>) \
  X(swiglu, Gated, Only<SiluAct>)              \
  X(geglu, Gated, GeluApproximate)             \
  X(clamped_swiglu, Gated, ClampedSwishParams) \
  X(glu, Gated, Only<SigmoidAct>)              \
  X(reglu, Gated, Only<ReluAct>)

// An op without params, always computing Act.
template <typename Act>
struct Only {
  static constexpr const char* kSchema = "";
  using Params = std::tuple<>;
  template <typename Fn>
  static decltype(auto) with_act(const char* /*op*/, Fn&& fn) {
    return fn(Act{});
  }
};

// approximate="none" (erf) or "tanh", as torch.nn.functional.gelu takes it.
struct GeluApproximate {
  static constexpr const char* kSchema = ", str approximate=\"none\"";
  using Params = std::tuple<c10::string_view>;
  template <typename Fn>
  static decltype(auto) with_act(const char* op, Fn&& fn, c10::string_view approximate) {
    check_approximate(op, approximate);
    return approximate == "tanh" ? fn(GeluTanhAct{}) : fn(GeluErfAct{});
  }
};

// beta, any finite float: x·sigmoid(βx).
struct SwishBeta {
  static constexpr const char* kSchema = ", float beta=1.0";
  using Params = std::tuple<double>;
  template <typename Fn>
  static decltype(auto) with_act(const char* op, Fn&& fn, double beta) {
    check_finite(op, "beta", beta);
    return fn(SwishAct{beta});
  }
};

// GPT-OSS's alpha (any finite float), limit (positive) and up_offset (any
// finite float; DeepSeek-V4's form is alpha 1, up_offset 0).
struct ClampedSwishParams {
  static constexpr const char* kSchema = ", float alpha=1.702, float limit=7.0, float up_offset=1.0";
  using Params = std::tuple<double, double, double>;
  template <typename Fn>
  static decltype(auto) with_act(const char* op, Fn&& fn, double alpha, double limit, double up_offset) {
    check_finite(op, "alpha", alpha);
    check_positive(op, "limit", limit);
    check_finite(op, "up_offset", up_offset);
    return fn(ClampedSwishAct{alpha, limit, up_offset});
  }
  // The params at which second_derivatives.h's unit_up serves.
  static Params unit_params(double alpha, double limit, double) { return {alpha, limit, 1.0}; }
};

// One type per op, for the templates that define and register it. The names
// are also the op names that error messages start with (a packed op's are
// its unpacked twin's).
#define FUSED_ACTS_OP_TYPE(name, Kind_, Select_)                                     \
  struct name##_op {                                                                 \
    using Kind = Kind_;                                                              \
    using Select = Select_;                                                          \
    static constexpr const char* kName = #name;                                      \
    static constexpr const char* kBackward = #name "_backward";                      \
    static constexpr const char* kPacked = #name "_packed";                          \
    static constexpr const char* kPackedBackward = #name "_packed_backward";         \
    static constexpr const char* kPackedBackwardInPlace = #name "_packed_backward_"; \
    static constexpr const char* kQuantized = #name "_quantized";                    \
    static constexpr const char* kPackedQuantized = #name "_packed_quantized";       \
    static constexpr const char* kMonitored = #name "_monitored";                    \
    static constexpr const char* kPackedMonitored = #name "_packed_monitored";       \
  };
FUSED_ACTS_FOR_EACH_OP(FUSED_ACTS_OP_TYPE)
#undef FUSED_ACTS_OP_TYPE

// fn(name_op{}) for every op, in list order.
template <typename Fn>
void for_each_op(Fn&& fn) {
#define FUSED_ACTS_VISIT(name, Kind, Select) fn(name##_op{});
  FUSED_ACTS_FOR_EACH_OP(FUSED_ACTS_VISIT)
#undef FUSED_ACTS_VISIT
}

// Impl's functions registered as Op's plain ops: forward and backward, and a
// gated op's packed ones (the CPU and CUDA kernels, and the autograd).
template <typename Op, typename Impl>
void register_plain_ops(torch::Library& m) {
  m.impl(Op::kName, TORCH_FN(Impl::forward));
  m.impl(Op::kBackward, TORCH_FN(Impl::backward));
  if constexpr (std::is_same_v<typename Op::Kind, Gated>) {
    m.impl(Op::kPacked, TORCH_FN(Impl::packed_forward));
    m.impl(Op::kPackedBackward, TORCH_FN(Impl::packed_backward));
    m.impl(Op::kPackedBackwardInPlace, TORCH_FN(Impl::packed_backward_inplace));
  }
}

// fn(name_op{}) for every op of one Kind (Unary, Gated), in list order.
template <typename Kind, typename Fn>
void for_each_op_of(Fn&& fn) {
  for_each_op([&](auto op) {
    if constexpr (std::is_same_v<typename decltype(op)::Kind, Kind>) fn(op);
  });
}

}  // namespace fused_acts
