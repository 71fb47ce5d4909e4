// The plain ops' host code, written once for both backends: check inputs,
// allocate outputs, describe operands, and hand one functor to the backend's
// engine. An Engine (cpu/engine.h, cuda/engine.cuh) names its device Guard
// and runs Engine::elementwise<scalar_t>(args, functor).
#pragma once

#include "../checks.h"
#include "../elementwise_args.h"
#include "../elementwise_functors.h"
#include "../op_list.h"
#include "dispatch.h"
#include "gated_operands.h"

#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <torch/library.h>

#include <tuple>

namespace fused_acts {

template <typename Engine>
struct PlainKernels {
  using Tensor = at::Tensor;

  // Kernel<Act, scalar_t> over args, for like's dtype, on like's device.
  template <template <typename, typename> class Kernel, typename Act, int NIn, int NOut>
  static void launch(Act act, const ElementwiseArgs<NIn, NOut>& args, const Tensor& like) {
    dispatch_floating<typename Engine::Guard>(like, [&](auto type) {
      using scalar_t = typename decltype(type)::type;
      Engine::template elementwise<scalar_t>(args, Kernel<Act, scalar_t>{act});
    });
  }

  template <typename Act>
  static Tensor unary_forward(const char* op, Act act, const Tensor& x) {
    check_floating(op, "x", x);
    Tensor out = at::empty_like(x, at::MemoryFormat::Contiguous);
    if (x.numel() == 0) return out;
    Tensor in[1] = {x};
    launch<UnaryForward>(act, make_elementwise_args<1, 1>(in, {out}), x);
    return out;
  }

  template <typename Act>
  static Tensor unary_backward(const char* op, Act act, const Tensor& grad, const Tensor& x) {
    check_same(op, "grad", grad, "x", x);
    Tensor grad_x = at::empty_like(x, at::MemoryFormat::Contiguous);
    if (x.numel() == 0) return grad_x;
    Tensor in[2] = {grad, x};
    launch<UnaryBackward>(act, make_elementwise_args<2, 1>(in, {grad_x}), x);
    return grad_x;
  }

  // out and the gradients may be views (the halves of a packed tensor),
  // laid out as gated_operands.h says.
  template <typename Act>
  static void gated_forward_into(Act act, const Tensor& gate, const Tensor& up, const Tensor& out,
                                 bool interleaved = false, bool up_first = false) {
    if (out.numel() == 0) return;
    with_gated_order(interleaved, up_first, [&](auto order) {
      using Order = decltype(order);
      const auto [first, second] = Order::order(gate, up);
      Tensor in[2] = {first, second};
      const Pairs pairs = pairs_of<typename Order::template Forward<Act, float>>(interleaved);
      launch<Order::template Forward>(act, make_elementwise_args<2, 1>(in, {out}, pairs), gate);
    });
  }

  template <typename Act>
  static void gated_backward_into(Act act, const Tensor& grad, const Tensor& gate, const Tensor& up,
                                  const Tensor& grad_gate, const Tensor& grad_up, bool interleaved = false,
                                  bool up_first = false) {
    if (grad.numel() == 0) return;
    with_gated_order(interleaved, up_first, [&](auto order) {
      using Order = decltype(order);
      const auto [first, second] = Order::order(gate, up);
      const auto [grad_first, grad_second] = Order::order(grad_gate, grad_up);
      Tensor in[3] = {grad, first, second};
      const Pairs pairs = pairs_of<typename Order::template Backward<Act, float>>(interleaved);
      launch<Order::template Backward>(act, make_elementwise_args<3, 2>(in, {grad_first, grad_second}, pairs), gate);
    });
  }

  template <typename Act>
  static Tensor gated_forward(const char* op, Act act, const Tensor& gate, const Tensor& up) {
    check_same(op, "gate", gate, "up", up);
    Tensor out = at::empty_like(gate, at::MemoryFormat::Contiguous);
    gated_forward_into(act, gate, up, out);
    return out;
  }

  template <typename Act>
  static std::tuple<Tensor, Tensor> gated_backward(const char* op, Act act, const Tensor& grad, const Tensor& gate,
                                                   const Tensor& up) {
    check_same(op, "gate", gate, "up", up);
    check_same(op, "grad", grad, "gate", gate);
    Tensor grad_gate = at::empty_like(gate, at::MemoryFormat::Contiguous);
    Tensor grad_up = at::empty_like(up, at::MemoryFormat::Contiguous);
    gated_backward_into(act, grad, gate, up, grad_gate, grad_up);
    return {grad_gate, grad_up};
  }

  template <typename Act>
  static Tensor gated_packed_forward(const char* op, Act act, const Tensor& x, bool interleaved, bool up_first) {
    check_packed(op, x, interleaved, up_first);
    auto [gate, up] = engine_halves(x, interleaved, up_first);
    Tensor out = at::empty(gate.sizes(), x.options());
    gated_forward_into(act, gate, up, out, interleaved, up_first);
    return out;
  }

  // The gradient is one packed tensor whose halves the kernel writes in place.
  template <typename Act>
  static Tensor gated_packed_backward(const char* op, Act act, const Tensor& grad, const Tensor& x, bool interleaved,
                                      bool up_first) {
    check_packed(op, x, interleaved, up_first);
    auto [gate, up] = engine_halves(x, interleaved, up_first);
    check_same(op, "grad", grad, "gate", gate);
    Tensor grad_x = at::empty_like(x, at::MemoryFormat::Contiguous);
    auto [grad_gate, grad_up] = engine_halves(grad_x, interleaved, up_first);
    gated_backward_into(act, grad, gate, up, grad_gate, grad_up, interleaved, up_first);
    return grad_x;
  }

  // The same, written over x: each element pair is read before it is written,
  // by the thread that writes it. x must have a row stride, so its own
  // halves serve (no copy, even on the way to that error).
  template <typename Act>
  static void gated_packed_backward_inplace(const char* op, Act act, const Tensor& grad, const Tensor& x,
                                            bool interleaved, bool up_first) {
    check_packed(op, x, interleaved, up_first);
    auto [gate, up] = packed_halves(x, interleaved, up_first);
    check_same(op, "grad", grad, "gate", gate);
    check_writable(op, grad, x, row_stride_of(x).has_value());
    gated_backward_into(act, grad, gate, up, gate, up, interleaved, up_first);
  }
};

// The plain kernels of one op of op_list.h, as functions of its schema's
// arguments: the tensors, then the params (P...) that Select reads.
template <typename Engine, typename Op, typename Kind = typename Op::Kind,
          typename Params = typename Op::Select::Params>
struct PlainOps;

template <typename Engine, typename Op, typename... P>
struct PlainOps<Engine, Op, Unary, std::tuple<P...>> {
  using K = PlainKernels<Engine>;
  using Tensor = at::Tensor;

  static Tensor forward(const Tensor& x, P... params) {
    return Op::Select::with_act(Op::kName, [&](auto act) { return K::unary_forward(Op::kName, act, x); }, params...);
  }
  static Tensor backward(const Tensor& grad, const Tensor& x, P... params) {
    return Op::Select::with_act(
        Op::kBackward, [&](auto act) { return K::unary_backward(Op::kBackward, act, grad, x); }, params...);
  }
};

template <typename Engine, typename Op, typename... P>
struct PlainOps<Engine, Op, Gated, std::tuple<P...>> {
  using K = PlainKernels<Engine>;
  using Tensor = at::Tensor;

  static Tensor forward(const Tensor& gate, const Tensor& up, P... params) {
    return Op::Select::with_act(
        Op::kName, [&](auto act) { return K::gated_forward(Op::kName, act, gate, up); }, params...);
  }
  static std::tuple<Tensor, Tensor> backward(const Tensor& grad, const Tensor& gate, const Tensor& up, P... params) {
    return Op::Select::with_act(
        Op::kBackward, [&](auto act) { return K::gated_backward(Op::kBackward, act, grad, gate, up); }, params...);
  }
  static Tensor packed_forward(const Tensor& x, P... params, bool interleaved, bool up_first) {
    return Op::Select::with_act(
        Op::kName, [&](auto act) { return K::gated_packed_forward(Op::kName, act, x, interleaved, up_first); },
        params...);
  }
  static Tensor packed_backward(const Tensor& grad, const Tensor& x, P... params, bool interleaved, bool up_first) {
    return Op::Select::with_act(
        Op::kBackward,
        [&](auto act) { return K::gated_packed_backward(Op::kBackward, act, grad, x, interleaved, up_first); },
        params...);
  }
  static void packed_backward_inplace(const Tensor& grad, const Tensor& x, P... params, bool interleaved,
                                      bool up_first) {
    Op::Select::with_act(
        Op::kBackward,
        [&](auto act) { K::gated_packed_backward_inplace(Op::kBackward, act, grad, x, interleaved, up_first); },
        params...);
  }
};

// Every op's plain kernels of kind Kind, for one backend.
template <typename Engine, typename Kind>
void register_plain(torch::Library& m) {
  for_each_op_of<Kind>([&](auto op) { register_plain_ops<decltype(op), PlainOps<Engine, decltype(op)>>(m); });
}

}  // namespace fused_acts
