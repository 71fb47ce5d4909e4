// Autograd for every op of op_list.h, in C++ so that a call costs what an
// ATen op's does. A call that needs no gradient goes straight to the
// backend kernel; one that does records a torch::autograd::Function whose
// backward is the op's fused backward op. The backward ops are
// differentiable in turn (double backward, to any order): their
// first-derivative terms run the fused ops, f'' is second_derivatives.h.
// 16-bit inputs compute those terms in float and round once.
#include "../op_list.h"
#include "second_derivatives.h"

#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/autograd.h>
#include <torch/csrc/autograd/VariableTypeUtils.h>
#include <torch/library.h>

#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

namespace fused_acts {
namespace {

using at::Tensor;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

template <typename Signature>
c10::TypedOperatorHandle<Signature> op_handle(const char* name) {
  return c10::Dispatcher::singleton()
      .findSchemaOrThrow((std::string("fused_acts::") + name).c_str(), "")
      .typed<Signature>();
}

bool any_requires_grad(std::initializer_list<Tensor> tensors) {
  if (!at::GradMode::is_enabled()) return false;
  for (const Tensor& t : tensors) {
    if (t.requires_grad()) return true;
  }
  return false;
}

Tensor opmath(const Tensor& t) { return at::isReducedFloatingType(t.scalar_type()) ? t.to(at::kFloat) : t; }

// The params as autograd keeps them: strings by value, in one IValue tuple.
template <typename P>
using Owned = std::conditional_t<std::is_same_v<P, c10::string_view>, std::string, P>;

// What every family shares: its ops, its params kept across backward, f''.
template <typename Op, typename... P>
struct Family {
  using Params = std::tuple<Owned<P>...>;
  static constexpr size_t kNumParams = sizeof...(P);

  // What backward needs: the tensors, and the params in one IValue tuple.
  static void save(AutogradContext* ctx, variable_list tensors, const P&... params) {
    ctx->save_for_backward(std::move(tensors));
    ctx->saved_data["params"] = c10::ivalue::Tuple::create({c10::IValue(Owned<P>(params))...});
  }
  static Params saved_params(AutogradContext* ctx) {
    return saved_params(ctx->saved_data.at("params"), std::index_sequence_for<P...>{});
  }
  template <size_t... I>
  static Params saved_params(const c10::IValue& tuple, std::index_sequence<I...>) {
    const auto& values = tuple.toTupleRef().elements();
    return Params{values[I].template to<Owned<P>>()...};
  }

  // The gradients of the params (none), after the tensors'.
  static variable_list with_param_grads(variable_list grads) {
    grads.resize(grads.size() + kNumParams);
    return grads;
  }

  static Tensor second(const Tensor& x, const P&... params) {
    return Op::Select::with_act(Op::kName, [&](auto act) { return second_derivative(act, x); }, params...);
  }
  static Tensor up_value(const Tensor& up, const P&... params) {
    return Op::Select::with_act(Op::kName, [&](auto act) { return fused_acts::up_value(act, up); }, params...);
  }
  static Tensor up_slope(const Tensor& up, const P&... params) {
    return Op::Select::with_act(Op::kName, [&](auto act) { return fused_acts::up_slope(act, up); }, params...);
  }
  static double unit_up(const P&... params) {
    return Op::Select::with_act(Op::kName, [&](auto act) { return fused_acts::unit_up(act); }, params...);
  }
  static bool clamps_gate(const P&... params) {
    return Op::Select::with_act(Op::kName, [&](auto act) { return fused_acts::clamps_gate(act); }, params...);
  }
};

// The quantized ops have no derivative (a rounding's is zero almost
// everywhere): under grad mode, an input that requires grad is refused
// before any work; otherwise the call goes on to the backend.
inline void refuse_grad(const char* op, const Tensor& t) {
  TORCH_CHECK(!any_requires_grad({t}), op,
              ": a quantized output has no gradient, but an input requires grad; call it under torch.no_grad() or "
              "torch.inference_mode()");
}
template <typename T>
void refuse_grad(const char*, const T&) {}

// Name::kName's quantized op Name::kOp, whose signature is Args.
template <typename Name, typename... Args>
struct WithoutGrad {
  static std::tuple<Tensor, Tensor> call(Args... args) {
    static const auto op = op_handle<std::tuple<Tensor, Tensor>(Args...)>(Name::kOp);
    (refuse_grad(Name::kName, args), ...);
    at::AutoDispatchBelowADInplaceOrView guard;
    return op.call(args...);
  }
};

// An op's quantized op (or its packed twin's), named for messages as the op.
template <typename Op, bool kPacked = false>
struct QuantizedName {
  static constexpr const char* kOp = kPacked ? Op::kPackedQuantized : Op::kQuantized;
  static constexpr const char* kName = Op::kName;
};

// The arguments of a quantized op after its forward's (op_list.h's kQuantizedSchema).
template <typename Name, typename... Forward>
using QuantizedWithoutGrad = WithoutGrad<Name, Forward..., at::ScalarType, int64_t, bool, std::optional<at::ScalarType>,
                                         const std::optional<Tensor>&>;

// A monitored forward (op_list.h) records Plain's autograd: the same saved
// inputs (Plain::save_inputs) and the same backward. stats and histogram,
// which its kernel adds to, are not differentiable; their versions are
// bumped, as an ATen in-place op bumps its output's.
inline bool any_tensor_requires_grad(const Tensor& t) { return any_requires_grad({t}); }
template <typename T>
bool any_tensor_requires_grad(const T&) {
  return false;
}

template <typename Plain, typename... Args>
struct Monitored : torch::autograd::Function<Monitored<Plain, Args...>> {
  static Tensor forward(AutogradContext* ctx, Args... args, const Tensor& stats, const Tensor& histogram) {
    at::AutoDispatchBelowADInplaceOrView guard;
    Plain::save_inputs(ctx, args...);
    return Plain::monitored_op().call(args..., stats, histogram);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    variable_list input_grads = Plain::backward(ctx, std::move(grads));
    input_grads.resize(input_grads.size() + 2);
    return input_grads;
  }
  static Tensor call(Args... args, const Tensor& stats, const Tensor& histogram) {
    Tensor out;
    if (at::GradMode::is_enabled() && (any_tensor_requires_grad(args) || ...)) {
      out = Monitored::apply(args..., stats, histogram);
    } else {
      at::AutoDispatchBelowADInplaceOrView guard;
      out = Plain::monitored_op().call(args..., stats, histogram);
    }
    torch::autograd::increment_version(stats);
    torch::autograd::increment_version(histogram);
    return out;
  }
};

template <typename Op, typename Kind = typename Op::Kind, typename Params = typename Op::Select::Params>
struct Autograd;

template <typename Op, typename... P>
struct Autograd<Op, Unary, std::tuple<P...>> : Family<Op, P...> {
  using F = Family<Op, P...>;

  static const auto& forward_op() {
    static const auto op = op_handle<Tensor(const Tensor&, P...)>(Op::kName);
    return op;
  }
  static const auto& backward_op() {
    static const auto op = op_handle<Tensor(const Tensor&, const Tensor&, P...)>(Op::kBackward);
    return op;
  }

  struct Forward : torch::autograd::Function<Forward> {
    static void save_inputs(AutogradContext* ctx, const Tensor& x, P... params) { F::save(ctx, {x}, params...); }
    static const auto& monitored_op() {
      static const auto op = op_handle<Tensor(const Tensor&, P..., const Tensor&, const Tensor&)>(Op::kMonitored);
      return op;
    }
    static Tensor forward(AutogradContext* ctx, const Tensor& x, P... params) {
      at::AutoDispatchBelowADInplaceOrView guard;
      save_inputs(ctx, x, params...);
      return forward_op().call(x, params...);
    }
    static variable_list backward(AutogradContext* ctx, variable_list grads) {
      const Tensor x = ctx->get_saved_variables()[0];
      return std::apply([&](const auto&... p) { return F::with_param_grads({backward_op().call(grads[0], x, p...)}); },
                        F::saved_params(ctx));
    }
  };

  // grad·f'(x); its derivatives: by grad, f'(x); by x, grad·f''(x).
  struct Backward : torch::autograd::Function<Backward> {
    static Tensor forward(AutogradContext* ctx, const Tensor& grad, const Tensor& x, P... params) {
      at::AutoDispatchBelowADInplaceOrView guard;
      F::save(ctx, {grad, x}, params...);
      return backward_op().call(grad, x, params...);
    }
    static variable_list backward(AutogradContext* ctx, variable_list grads) {
      const variable_list saved = ctx->get_saved_variables();
      const auto dtype = saved[1].scalar_type();
      const Tensor grad_of_dx = opmath(grads[0]), grad = opmath(saved[0]), x = opmath(saved[1]);
      return std::apply(
          [&](const auto&... p) {
            const Tensor d_grad = backward_op().call(grad_of_dx, x, p...);
            const Tensor d_x = grad_of_dx * grad * F::second(x, p...);
            return F::with_param_grads({d_grad.to(dtype), d_x.to(dtype)});
          },
          F::saved_params(ctx));
    }
  };

  static Tensor forward(const Tensor& x, P... params) {
    if (any_requires_grad({x})) return Forward::apply(x, params...);
    at::AutoDispatchBelowADInplaceOrView guard;
    return forward_op().call(x, params...);
  }
  static Tensor backward(const Tensor& grad, const Tensor& x, P... params) {
    if (any_requires_grad({grad, x})) return Backward::apply(grad, x, params...);
    at::AutoDispatchBelowADInplaceOrView guard;
    return backward_op().call(grad, x, params...);
  }
  static void register_into(torch::Library& m) {
    m.impl(Op::kName, TORCH_FN(forward));
    m.impl(Op::kBackward, TORCH_FN(backward));
    m.impl(Op::kQuantized, TORCH_FN((QuantizedWithoutGrad<QuantizedName<Op>, const Tensor&, P...>::call)));
    m.impl(Op::kMonitored, TORCH_FN((Monitored<Forward, const Tensor&, P...>::call)));
  }
};

template <typename Op, typename... P>
struct Autograd<Op, Gated, std::tuple<P...>> : Family<Op, P...> {
  using F = Family<Op, P...>;
  using Pair = std::tuple<Tensor, Tensor>;

  static const auto& forward_op() {
    static const auto op = op_handle<Tensor(const Tensor&, const Tensor&, P...)>(Op::kName);
    return op;
  }
  static const auto& backward_op() {
    static const auto op = op_handle<Pair(const Tensor&, const Tensor&, const Tensor&, P...)>(Op::kBackward);
    return op;
  }
  static const auto& packed_forward_op() {
    static const auto op = op_handle<Tensor(const Tensor&, P..., bool, bool)>(Op::kPacked);
    return op;
  }
  static const auto& packed_backward_op() {
    static const auto op = op_handle<Tensor(const Tensor&, const Tensor&, P..., bool, bool)>(Op::kPackedBackward);
    return op;
  }
  static const auto& packed_backward_inplace_op() {
    static const auto op = op_handle<void(const Tensor&, const Tensor&, P..., bool, bool)>(Op::kPackedBackwardInPlace);
    return op;
  }

  // The derivatives of the backward, (grad·h(up)·f'(gate), grad·f(gate)·h'(up))
  // with h how up enters (up itself but for GPT-OSS's clamp), by grad, gate
  // and up, given its outputs' gradients. At up = unit_up, where h and h' are
  // 1, the fused backward gives v·f'(gate) and v·f(gate) for any v: every
  // first-derivative term.
  static std::tuple<Tensor, Tensor, Tensor> derivatives(const Tensor& grad, const Tensor& gate, const Tensor& up,
                                                        const Tensor& grad_of_dgate, const Tensor& grad_of_dup,
                                                        const P&... params) {
    const Tensor unit = at::full_like(gate, F::unit_up(params...));
    auto times_df = [&](const Tensor& v) { return std::get<0>(backward_op().call(v, gate, unit, params...)); };
    auto times_f = [&](const Tensor& v) { return std::get<1>(backward_op().call(v, gate, unit, params...)); };
    const Tensor h = F::up_value(up, params...), slope = F::up_slope(up, params...);
    Tensor d_grad = times_df(grad_of_dgate * h) + times_f(grad_of_dup * slope);
    Tensor d_gate = times_df(grad_of_dup * grad * slope) + grad_of_dgate * grad * h * F::second(gate, params...);
    // As eager's: 0 where up's slope is (its clamp masks last), else, for a
    // gate that is clamped (GPT-OSS's), nan at a nan gate, where eager's
    // f'(gate) multiplies after the clamp masked it.
    Tensor d_up = times_df(grad_of_dgate * grad) * slope;
    if (F::clamps_gate(params...)) d_up = at::where(gate.isnan(), gate, d_up);
    d_up = at::where(slope == 0, 0, d_up);
    return {d_grad, d_gate, d_up};
  }

  // op_list.h's packed_halves, inverted.
  static Tensor packed(const Tensor& gate, const Tensor& up, bool interleaved, bool up_first) {
    const Tensor& first = up_first ? up : gate;
    const Tensor& second = up_first ? gate : up;
    return interleaved ? at::stack({first, second}, -1).flatten(-2) : at::cat({first, second}, -1);
  }

  // The packed ops' layout flags, kept across backward.
  static void save_layout(AutogradContext* ctx, bool interleaved, bool up_first) {
    ctx->saved_data["interleaved"] = interleaved;
    ctx->saved_data["up_first"] = up_first;
  }
  static std::pair<bool, bool> saved_layout(AutogradContext* ctx) {
    return {ctx->saved_data.at("interleaved").toBool(), ctx->saved_data.at("up_first").toBool()};
  }

  // The packed ops' gradients: the tensors', the params' and the layout flags' (none).
  static variable_list with_packed_param_grads(variable_list grads) {
    grads = F::with_param_grads(std::move(grads));
    grads.resize(grads.size() + 2);
    return grads;
  }

  struct Forward : torch::autograd::Function<Forward> {
    static void save_inputs(AutogradContext* ctx, const Tensor& gate, const Tensor& up, P... params) {
      F::save(ctx, {gate, up}, params...);
    }
    static const auto& monitored_op() {
      static const auto op =
          op_handle<Tensor(const Tensor&, const Tensor&, P..., const Tensor&, const Tensor&)>(Op::kMonitored);
      return op;
    }
    static Tensor forward(AutogradContext* ctx, const Tensor& gate, const Tensor& up, P... params) {
      at::AutoDispatchBelowADInplaceOrView guard;
      save_inputs(ctx, gate, up, params...);
      return forward_op().call(gate, up, params...);
    }
    static variable_list backward(AutogradContext* ctx, variable_list grads) {
      const variable_list saved = ctx->get_saved_variables();
      return std::apply(
          [&](const auto&... p) {
            auto [grad_gate, grad_up] = backward_op().call(grads[0], saved[0], saved[1], p...);
            return F::with_param_grads({grad_gate, grad_up});
          },
          F::saved_params(ctx));
    }
  };

  struct PackedForward : torch::autograd::Function<PackedForward> {
    static void save_inputs(AutogradContext* ctx, const Tensor& x, P... params, bool interleaved, bool up_first) {
      F::save(ctx, {x}, params...);
      save_layout(ctx, interleaved, up_first);
    }
    static const auto& monitored_op() {
      static const auto op =
          op_handle<Tensor(const Tensor&, P..., bool, bool, const Tensor&, const Tensor&)>(Op::kPackedMonitored);
      return op;
    }
    static Tensor forward(AutogradContext* ctx, const Tensor& x, P... params, bool interleaved, bool up_first) {
      at::AutoDispatchBelowADInplaceOrView guard;
      save_inputs(ctx, x, params..., interleaved, up_first);
      return packed_forward_op().call(x, params..., interleaved, up_first);
    }
    static variable_list backward(AutogradContext* ctx, variable_list grads) {
      const Tensor x = ctx->get_saved_variables()[0];
      const auto [interleaved, up_first] = saved_layout(ctx);
      return std::apply(
          [&](const auto&... p) {
            return with_packed_param_grads({packed_backward_op().call(grads[0], x, p..., interleaved, up_first)});
          },
          F::saved_params(ctx));
    }
  };

  struct Backward : torch::autograd::Function<Backward> {
    static variable_list forward(AutogradContext* ctx, const Tensor& grad, const Tensor& gate, const Tensor& up,
                                 P... params) {
      at::AutoDispatchBelowADInplaceOrView guard;
      F::save(ctx, {grad, gate, up}, params...);
      auto [grad_gate, grad_up] = backward_op().call(grad, gate, up, params...);
      return {grad_gate, grad_up};
    }
    static variable_list backward(AutogradContext* ctx, variable_list grads) {
      const variable_list saved = ctx->get_saved_variables();
      const auto dtype = saved[1].scalar_type();
      return std::apply(
          [&](const auto&... p) {
            auto [d_grad, d_gate, d_up] = derivatives(opmath(saved[0]), opmath(saved[1]), opmath(saved[2]),
                                                      opmath(grads[0]), opmath(grads[1]), p...);
            return F::with_param_grads({d_grad.to(dtype), d_gate.to(dtype), d_up.to(dtype)});
          },
          F::saved_params(ctx));
    }
  };

  // The packed backward's output is one tensor, packed as x is.
  struct PackedBackward : torch::autograd::Function<PackedBackward> {
    static Tensor forward(AutogradContext* ctx, const Tensor& grad, const Tensor& x, P... params, bool interleaved,
                          bool up_first) {
      at::AutoDispatchBelowADInplaceOrView guard;
      F::save(ctx, {grad, x}, params...);
      save_layout(ctx, interleaved, up_first);
      return packed_backward_op().call(grad, x, params..., interleaved, up_first);
    }
    static variable_list backward(AutogradContext* ctx, variable_list grads) {
      const variable_list saved = ctx->get_saved_variables();
      const auto dtype = saved[1].scalar_type();
      const auto [interleaved, up_first] = saved_layout(ctx);
      const Pair x = packed_halves(opmath(saved[1]), interleaved, up_first);
      const Pair grad_of_dx = packed_halves(opmath(grads[0]), interleaved, up_first);
      return std::apply(
          [&](const auto&... p) {
            auto [d_grad, d_gate, d_up] = derivatives(opmath(saved[0]), std::get<0>(x), std::get<1>(x),
                                                      std::get<0>(grad_of_dx), std::get<1>(grad_of_dx), p...);
            return with_packed_param_grads({d_grad.to(dtype), packed(d_gate, d_up, interleaved, up_first).to(dtype)});
          },
          F::saved_params(ctx));
    }
  };

  static Tensor forward(const Tensor& gate, const Tensor& up, P... params) {
    if (any_requires_grad({gate, up})) return Forward::apply(gate, up, params...);
    at::AutoDispatchBelowADInplaceOrView guard;
    return forward_op().call(gate, up, params...);
  }
  static Pair backward(const Tensor& grad, const Tensor& gate, const Tensor& up, P... params) {
    if (any_requires_grad({grad, gate, up})) {
      variable_list grads = Backward::apply(grad, gate, up, params...);
      return {grads[0], grads[1]};
    }
    at::AutoDispatchBelowADInplaceOrView guard;
    return backward_op().call(grad, gate, up, params...);
  }
  static Tensor packed_forward(const Tensor& x, P... params, bool interleaved, bool up_first) {
    if (any_requires_grad({x})) return PackedForward::apply(x, params..., interleaved, up_first);
    at::AutoDispatchBelowADInplaceOrView guard;
    return packed_forward_op().call(x, params..., interleaved, up_first);
  }
  static Tensor packed_backward(const Tensor& grad, const Tensor& x, P... params, bool interleaved, bool up_first) {
    if (any_requires_grad({grad, x})) return PackedBackward::apply(grad, x, params..., interleaved, up_first);
    at::AutoDispatchBelowADInplaceOrView guard;
    return packed_backward_op().call(grad, x, params..., interleaved, up_first);
  }
  // Not differentiable: it overwrites what a derivative would read. It bumps
  // x's version, as ATen's in-place ops do, so that a saved x it overwrote
  // fails loudly if unpacked again.
  static void packed_backward_inplace(const Tensor& grad, const Tensor& x, P... params, bool interleaved,
                                      bool up_first) {
    TORCH_CHECK(!any_requires_grad({grad, x}), Op::kPackedBackwardInPlace,
                ": writes the gradient over x, and cannot itself be differentiated; call it without grad");
    {
      at::AutoDispatchBelowADInplaceOrView guard;
      packed_backward_inplace_op().call(grad, x, params..., interleaved, up_first);
    }
    torch::autograd::increment_version(x);
  }
  static void register_into(torch::Library& m) {
    m.impl(Op::kName, TORCH_FN(forward));
    m.impl(Op::kBackward, TORCH_FN(backward));
    m.impl(Op::kPacked, TORCH_FN(packed_forward));
    m.impl(Op::kPackedBackward, TORCH_FN(packed_backward));
    m.impl(Op::kPackedBackwardInPlace, TORCH_FN(packed_backward_inplace));
    m.impl(Op::kQuantized,
           TORCH_FN((QuantizedWithoutGrad<QuantizedName<Op>, const Tensor&, const Tensor&, P...>::call)));
    m.impl(Op::kPackedQuantized,
           TORCH_FN((QuantizedWithoutGrad<QuantizedName<Op, true>, const Tensor&, P..., bool, bool>::call)));
    m.impl(Op::kMonitored, TORCH_FN((Monitored<Forward, const Tensor&, const Tensor&, P...>::call)));
    m.impl(Op::kPackedMonitored, TORCH_FN((Monitored<PackedForward, const Tensor&, P..., bool, bool>::call)));
  }
};

struct QuantizeName {
  static constexpr const char* kOp = "quantize";
  static constexpr const char* kName = "quantize";
};

}  // namespace

TORCH_LIBRARY_IMPL(fused_acts, Autograd, m) {
  for_each_op([&](auto op) { Autograd<decltype(op)>::register_into(m); });
  m.impl("quantize", TORCH_FN((QuantizedWithoutGrad<QuantizeName, const Tensor&>::call)));
}

}  // namespace fused_acts
