// The host side of every op, written once for both backends: check inputs,
// allocate outputs, describe operands, and hand one functor to the backend's
// engine. Backend::launch<Kernel>(act, args, like) runs Kernel<Act, scalar_t>
// over args on like's device, for like's dtype.
#pragma once

#include "checks.h"
#include "elementwise_args.h"
#include "elementwise_functors.h"
#include "op_list.h"

#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <torch/library.h>

#include <tuple>

namespace fused_acts {

template <typename Backend>
struct OpKernels {
  using Tensor = at::Tensor;

  template <typename Act>
  static Tensor unary_forward(const char* op, Act act, const Tensor& x) {
    check_floating(op, "x", x);
    Tensor out = at::empty_like(x, at::MemoryFormat::Contiguous);
    if (x.numel() == 0) return out;
    Tensor in[1] = {x};
    const auto args = make_elementwise_args<1, 1>(in, {out});
    Backend::template launch<UnaryForward>(act, args, x);
    return out;
  }

  template <typename Act>
  static Tensor unary_backward(const char* op, Act act, const Tensor& grad, const Tensor& x) {
    check_same(op, "grad", grad, "x", x);
    Tensor grad_x = at::empty_like(x, at::MemoryFormat::Contiguous);
    if (x.numel() == 0) return grad_x;
    Tensor in[2] = {grad, x};
    const auto args = make_elementwise_args<2, 1>(in, {grad_x});
    Backend::template launch<UnaryBackward>(act, args, x);
    return grad_x;
  }

  // out and the gradients may be views (the halves of a packed tensor);
  // interleaved: gate and up, and the gradients, pair up (elementwise_args.h),
  // the even elements first: up's where up_first.
  template <typename Act>
  static void gated_forward_into(Act act, const Tensor& gate, const Tensor& up, const Tensor& out,
                                 bool interleaved = false, bool up_first = false) {
    if (out.numel() == 0) return;
    if (interleaved && up_first) {
      Tensor in[2] = {up, gate};
      const auto args = make_elementwise_args<2, 1>(in, {out}, GatedForwardUpFirst<Act, float>::kInterleaved);
      return Backend::template launch<GatedForwardUpFirst>(act, args, gate);
    }
    Tensor in[2] = {gate, up};
    const auto args = make_elementwise_args<2, 1>(in, {out}, pairs<GatedForward<Act, float>>(interleaved));
    Backend::template launch<GatedForward>(act, args, gate);
  }

  template <typename Act>
  static void gated_backward_into(Act act, const Tensor& grad, const Tensor& gate, const Tensor& up,
                                  const Tensor& grad_gate, const Tensor& grad_up, bool interleaved = false,
                                  bool up_first = false) {
    if (grad.numel() == 0) return;
    if (interleaved && up_first) {
      Tensor in[3] = {grad, up, gate};
      const auto args =
          make_elementwise_args<3, 2>(in, {grad_up, grad_gate}, GatedBackwardUpFirst<Act, float>::kInterleaved);
      return Backend::template launch<GatedBackwardUpFirst>(act, args, gate);
    }
    Tensor in[3] = {grad, gate, up};
    const auto args =
        make_elementwise_args<3, 2>(in, {grad_gate, grad_up}, pairs<GatedBackward<Act, float>>(interleaved));
    Backend::template launch<GatedBackward>(act, args, gate);
  }

  template <typename Functor>
  static Pairs pairs(bool interleaved) {
    return interleaved ? Functor::kInterleaved : Pairs{};
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

  // op_list.h's packed_halves, as the engines read them: interleaved halves
  // (element stride 2) are read as pairs, given a row stride.
  static std::tuple<Tensor, Tensor> engine_halves(const Tensor& x, bool interleaved, bool up_first) {
    const bool copy = interleaved && !row_stride_of(x).has_value();
    return packed_halves(copy ? x.contiguous() : x, interleaved, up_first);
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

// The kernels of one op of op_list.h, as functions of its schema's
// arguments: the tensors, then the params (P...) that Select reads.
template <typename Backend, typename Op, typename Kind = typename Op::Kind,
          typename Params = typename Op::Select::Params>
struct OpFamily;

template <typename Backend, typename Op, typename... P>
struct OpFamily<Backend, Op, Unary, std::tuple<P...>> {
  using K = OpKernels<Backend>;
  using Tensor = at::Tensor;

  static Tensor forward(const Tensor& x, P... params) {
    return Op::Select::with_act(Op::kName, [&](auto act) { return K::unary_forward(Op::kName, act, x); }, params...);
  }
  static Tensor backward(const Tensor& grad, const Tensor& x, P... params) {
    return Op::Select::with_act(
        Op::kBackward, [&](auto act) { return K::unary_backward(Op::kBackward, act, grad, x); }, params...);
  }
  static void register_into(torch::Library& m) {
    m.impl(Op::kName, TORCH_FN(forward));
    m.impl(Op::kBackward, TORCH_FN(backward));
  }
};

template <typename Backend, typename Op, typename... P>
struct OpFamily<Backend, Op, Gated, std::tuple<P...>> {
  using K = OpKernels<Backend>;
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
  static void register_into(torch::Library& m) {
    m.impl(Op::kName, TORCH_FN(forward));
    m.impl(Op::kBackward, TORCH_FN(backward));
    m.impl(Op::kPacked, TORCH_FN(packed_forward));
    m.impl(Op::kPackedBackward, TORCH_FN(packed_backward));
    m.impl(Op::kPackedBackwardInPlace, TORCH_FN(packed_backward_inplace));
  }
};

// Every op's kernels for one backend.
template <typename Backend>
void register_kernels(torch::Library& m) {
  for_each_op([&](auto op) { OpFamily<Backend, decltype(op)>::register_into(m); });
}

}  // namespace fused_acts
