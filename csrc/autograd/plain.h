// The plain ops' autograd, in C++ so that a call costs what an ATen op's
// does. A call that needs no gradient goes straight to the backend kernel;
// a forward that does records a node of its own (forward_node.h) whose
// backward is the op's fused backward op. The backward ops are
// differentiable in turn (double backward, to any order), through
// torch::autograd::Functions: their first-derivative terms run the fused
// ops, f'' is second_derivatives.h. 16-bit inputs compute those terms in
// float and round once. The monitored forwards record the same nodes
// (monitored.cpp).
#pragma once

#include "../op_list.h"
#include "common.h"
#include "forward_node.h"
#include "second_derivatives.h"

#include <torch/csrc/autograd/VariableTypeUtils.h>
#include <torch/library.h>

#include <array>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

namespace fused_acts::autograd {

inline Tensor opmath(const Tensor& t) { return at::isReducedFloatingType(t.scalar_type()) ? t.to(at::kFloat) : t; }

// The params as autograd keeps them: strings by value, in one IValue tuple.
template <typename P>
using Owned = std::conditional_t<std::is_same_v<P, c10::string_view>, std::string, P>;

// What every op's autograd shares: its ops, its params kept across backward, f''.
template <typename Op, typename... P>
struct AutogradBase {
  using Params = std::tuple<Owned<P>...>;
  static constexpr size_t kNumParams = sizeof...(P);

  // What backward needs: the tensors, and the params in one IValue tuple
  // (none without params: a call's cost at decode sizes counts).
  static void save(AutogradContext* ctx, variable_list tensors, const P&... params) {
    ctx->save_for_backward(std::move(tensors));
    if constexpr (kNumParams > 0) {
      ctx->saved_data["params"] = c10::ivalue::Tuple::create({c10::IValue(Owned<P>(params))...});
    }
  }
  static Params saved_params(AutogradContext* ctx) {
    if constexpr (kNumParams == 0) {
      return {};
    } else {
      return saved_params(ctx->saved_data.at("params"), std::index_sequence_for<P...>{});
    }
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

template <typename Select, typename = void>
struct HasUnitParams : std::false_type {};
template <typename Select>
struct HasUnitParams<Select, std::void_t<decltype(&Select::unit_params)>> : std::true_type {};

// Select's params for unit_up's calls: its unit_params where it has them, else the params themselves.
template <typename Select, typename... P>
std::tuple<P...> unit_params(const P&... params) {
  if constexpr (HasUnitParams<Select>::value) {
    return Select::unit_params(params...);
  } else {
    return {params...};
  }
}

template <typename Op, typename Kind = typename Op::Kind, typename Params = typename Op::Select::Params>
struct PlainAutograd;

template <typename Op, typename... P>
struct PlainAutograd<Op, Unary, std::tuple<P...>> : AutogradBase<Op, P...> {
  using F = AutogradBase<Op, P...>;

  static const auto& forward_op() { return op_handle<Tensor(const Tensor&, P...), &Op::kName>(); }
  static const auto& backward_op() { return op_handle<Tensor(const Tensor&, const Tensor&, P...), &Op::kBackward>(); }

  // The forward's backward node (forward_node.h): grad·f'(x), by the backward op.
  struct Forward {
    static variable_list backward(const Tensor& grad, const std::array<Tensor, 1>& saved, const Owned<P>&... params) {
      return {backward_op().call(grad, saved[0], params...)};
    }
    static Tensor record(Tensor out, const Tensor& x, P... params) {
      return ForwardNode<Forward, 1, Owned<P>...>::record(std::move(out), Op::kBackward, {Owned<P>(params)...}, x);
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
    return call_and_record<Forward>([&] { return forward_op().call(x, params...); }, x, params...);
  }
  static Tensor backward(const Tensor& grad, const Tensor& x, P... params) {
    return apply_or_call<Backward>(backward_op(), {grad, x}, grad, x, params...);
  }
};

template <typename Op, typename... P>
struct PlainAutograd<Op, Gated, std::tuple<P...>> : AutogradBase<Op, P...> {
  using F = AutogradBase<Op, P...>;
  using Pair = std::tuple<Tensor, Tensor>;

  static const auto& forward_op() { return op_handle<Tensor(const Tensor&, const Tensor&, P...), &Op::kName>(); }
  static const auto& backward_op() {
    return op_handle<Pair(const Tensor&, const Tensor&, const Tensor&, P...), &Op::kBackward>();
  }
  static const auto& packed_forward_op() { return op_handle<Tensor(const Tensor&, P..., bool, bool), &Op::kPacked>(); }
  static const auto& packed_backward_op() {
    return op_handle<Tensor(const Tensor&, const Tensor&, P..., bool, bool), &Op::kPackedBackward>();
  }
  static const auto& packed_backward_inplace_op() {
    return op_handle<void(const Tensor&, const Tensor&, P..., bool, bool), &Op::kPackedBackwardInPlace>();
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
    const auto unit_backward = [&](const Tensor& v) {
      return std::apply([&](const auto&... q) { return backward_op().call(v, gate, unit, q...); },
                        unit_params<typename Op::Select>(params...));
    };
    auto times_df = [&](const Tensor& v) { return std::get<0>(unit_backward(v)); };
    auto times_f = [&](const Tensor& v) { return std::get<1>(unit_backward(v)); };
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

  // The forwards' backward nodes (forward_node.h), by the backward ops.
  struct Forward {
    static variable_list backward(const Tensor& grad, const std::array<Tensor, 2>& saved, const Owned<P>&... params) {
      auto [grad_gate, grad_up] = backward_op().call(grad, saved[0], saved[1], params...);
      return {grad_gate, grad_up};
    }
    static Tensor record(Tensor out, const Tensor& gate, const Tensor& up, P... params) {
      return ForwardNode<Forward, 2, Owned<P>...>::record(std::move(out), Op::kBackward, {Owned<P>(params)...}, gate,
                                                          up);
    }
  };

  struct PackedForward {
    static variable_list backward(const Tensor& grad, const std::array<Tensor, 1>& saved, const Owned<P>&... params,
                                  bool interleaved, bool up_first) {
      return {packed_backward_op().call(grad, saved[0], params..., interleaved, up_first)};
    }
    static Tensor record(Tensor out, const Tensor& x, P... params, bool interleaved, bool up_first) {
      return ForwardNode<PackedForward, 1, Owned<P>..., bool, bool>::record(
          std::move(out), Op::kPackedBackward, {Owned<P>(params)..., interleaved, up_first}, x);
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
    return call_and_record<Forward>([&] { return forward_op().call(gate, up, params...); }, gate, up, params...);
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
    return call_and_record<PackedForward>([&] { return packed_forward_op().call(x, params..., interleaved, up_first); },
                                          x, params..., interleaved, up_first);
  }
  static Tensor packed_backward(const Tensor& grad, const Tensor& x, P... params, bool interleaved, bool up_first) {
    return apply_or_call<PackedBackward>(packed_backward_op(), {grad, x}, grad, x, params..., interleaved, up_first);
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
};

}  // namespace fused_acts::autograd
