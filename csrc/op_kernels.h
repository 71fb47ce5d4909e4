// The host side of every op, written once for both backends: check inputs,
// allocate outputs, describe operands, and hand one functor to the backend's
// engine. Backend::launch<Kernel, Act>(args, like) runs
// Kernel<Act, scalar_t> over args on like's device, for like's dtype.
#pragma once

#include "activations.h"
#include "checks.h"
#include "elementwise_args.h"
#include "elementwise_functors.h"

#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <torch/library.h>

#include <string_view>
#include <tuple>

namespace fused_acts {

template <typename Fn>
decltype(auto) with_gelu_act(const char* op, std::string_view approximate, Fn&& fn) {
  check_approximate(op, approximate);
  return approximate == "tanh" ? fn(GeluTanhAct{}) : fn(GeluErfAct{});
}

template <typename Backend>
struct OpKernels {
  using Tensor = at::Tensor;

  template <typename Act>
  static Tensor unary_forward(const char* op, const Tensor& x) {
    check_floating(op, "x", x);
    Tensor out = at::empty_like(x, at::MemoryFormat::Contiguous);
    if (x.numel() == 0) return out;
    Tensor in[1] = {x};
    const auto args = make_elementwise_args<1, 1>(in, {out});
    Backend::template launch<UnaryForward, Act>(args, x);
    return out;
  }

  template <typename Act>
  static Tensor unary_backward(const char* op, const Tensor& grad, const Tensor& x) {
    check_same(op, "grad", grad, "x", x);
    Tensor grad_x = at::empty_like(x, at::MemoryFormat::Contiguous);
    if (x.numel() == 0) return grad_x;
    Tensor in[2] = {grad, x};
    const auto args = make_elementwise_args<2, 1>(in, {grad_x});
    Backend::template launch<UnaryBackward, Act>(args, x);
    return grad_x;
  }

  // out and the gradients may be views (the halves of a packed tensor).
  template <typename Act>
  static void gated_forward_into(const Tensor& gate, const Tensor& up, const Tensor& out) {
    if (out.numel() == 0) return;
    Tensor in[2] = {gate, up};
    const auto args = make_elementwise_args<2, 1>(in, {out});
    Backend::template launch<GatedForward, Act>(args, gate);
  }

  template <typename Act>
  static void gated_backward_into(
      const Tensor& grad, const Tensor& gate, const Tensor& up, const Tensor& grad_gate, const Tensor& grad_up) {
    if (grad.numel() == 0) return;
    Tensor in[3] = {grad, gate, up};
    const auto args = make_elementwise_args<3, 2>(in, {grad_gate, grad_up});
    Backend::template launch<GatedBackward, Act>(args, gate);
  }

  template <typename Act>
  static Tensor gated_forward(const char* op, const Tensor& gate, const Tensor& up) {
    check_same(op, "gate", gate, "up", up);
    Tensor out = at::empty_like(gate, at::MemoryFormat::Contiguous);
    gated_forward_into<Act>(gate, up, out);
    return out;
  }

  template <typename Act>
  static std::tuple<Tensor, Tensor> gated_backward(
      const char* op, const Tensor& grad, const Tensor& gate, const Tensor& up) {
    check_same(op, "gate", gate, "up", up);
    check_same(op, "grad", grad, "gate", gate);
    Tensor grad_gate = at::empty_like(gate, at::MemoryFormat::Contiguous);
    Tensor grad_up = at::empty_like(up, at::MemoryFormat::Contiguous);
    gated_backward_into<Act>(grad, gate, up, grad_gate, grad_up);
    return {grad_gate, grad_up};
  }

  static std::tuple<Tensor, Tensor> packed_halves(const Tensor& x) {
    const int64_t half = x.size(-1) / 2;
    return {x.narrow(-1, 0, half), x.narrow(-1, half, half)};
  }

  template <typename Act>
  static Tensor gated_packed_forward(const char* op, const Tensor& x) {
    check_packed(op, x);
    auto [gate, up] = packed_halves(x);
    Tensor out = at::empty(gate.sizes(), x.options());
    gated_forward_into<Act>(gate, up, out);
    return out;
  }

  // The gradient is one packed tensor whose halves the kernel writes in place.
  template <typename Act>
  static Tensor gated_packed_backward(const char* op, const Tensor& grad, const Tensor& x) {
    check_packed(op, x);
    auto [gate, up] = packed_halves(x);
    check_same(op, "grad", grad, "gate", gate);
    Tensor grad_x = at::empty_like(x, at::MemoryFormat::Contiguous);
    auto [grad_gate, grad_up] = packed_halves(grad_x);
    gated_backward_into<Act>(grad, gate, up, grad_gate, grad_up);
    return grad_x;
  }

  static Tensor gelu(const Tensor& x, c10::string_view approximate) {
    return with_gelu_act("gelu", approximate, [&](auto act) {
      return unary_forward<decltype(act)>("gelu", x);
    });
  }
  static Tensor gelu_backward(const Tensor& grad, const Tensor& x, c10::string_view approximate) {
    return with_gelu_act("gelu_backward", approximate, [&](auto act) {
      return unary_backward<decltype(act)>("gelu_backward", grad, x);
    });
  }
  static Tensor silu(const Tensor& x) { return unary_forward<SiluAct>("silu", x); }
  static Tensor silu_backward(const Tensor& grad, const Tensor& x) {
    return unary_backward<SiluAct>("silu_backward", grad, x);
  }
  static Tensor mish(const Tensor& x) { return unary_forward<MishAct>("mish", x); }
  static Tensor mish_backward(const Tensor& grad, const Tensor& x) {
    return unary_backward<MishAct>("mish_backward", grad, x);
  }

  static Tensor swiglu(const Tensor& gate, const Tensor& up) {
    return gated_forward<SiluAct>("swiglu", gate, up);
  }
  static std::tuple<Tensor, Tensor> swiglu_backward(const Tensor& grad, const Tensor& gate, const Tensor& up) {
    return gated_backward<SiluAct>("swiglu_backward", grad, gate, up);
  }
  static Tensor swiglu_packed(const Tensor& x) { return gated_packed_forward<SiluAct>("swiglu", x); }
  static Tensor swiglu_packed_backward(const Tensor& grad, const Tensor& x) {
    return gated_packed_backward<SiluAct>("swiglu_backward", grad, x);
  }

  static Tensor geglu(const Tensor& gate, const Tensor& up, c10::string_view approximate) {
    return with_gelu_act("geglu", approximate, [&](auto act) {
      return gated_forward<decltype(act)>("geglu", gate, up);
    });
  }
  static std::tuple<Tensor, Tensor> geglu_backward(
      const Tensor& grad, const Tensor& gate, const Tensor& up, c10::string_view approximate) {
    return with_gelu_act("geglu_backward", approximate, [&](auto act) {
      return gated_backward<decltype(act)>("geglu_backward", grad, gate, up);
    });
  }
  static Tensor geglu_packed(const Tensor& x, c10::string_view approximate) {
    return with_gelu_act("geglu", approximate, [&](auto act) {
      return gated_packed_forward<decltype(act)>("geglu", x);
    });
  }
  static Tensor geglu_packed_backward(const Tensor& grad, const Tensor& x, c10::string_view approximate) {
    return with_gelu_act("geglu_backward", approximate, [&](auto act) {
      return gated_packed_backward<decltype(act)>("geglu_backward", grad, x);
    });
  }
};

// One list of kernels per backend; the schemas live in csrc/schemas.cpp.
template <typename Backend>
void register_kernels(torch::Library& m) {
  using K = OpKernels<Backend>;
  m.impl("gelu", TORCH_FN(K::gelu));
  m.impl("gelu_backward", TORCH_FN(K::gelu_backward));
  m.impl("silu", TORCH_FN(K::silu));
  m.impl("silu_backward", TORCH_FN(K::silu_backward));
  m.impl("mish", TORCH_FN(K::mish));
  m.impl("mish_backward", TORCH_FN(K::mish_backward));
  m.impl("swiglu", TORCH_FN(K::swiglu));
  m.impl("swiglu_backward", TORCH_FN(K::swiglu_backward));
  m.impl("swiglu_packed", TORCH_FN(K::swiglu_packed));
  m.impl("swiglu_packed_backward", TORCH_FN(K::swiglu_packed_backward));
  m.impl("geglu", TORCH_FN(K::geglu));
  m.impl("geglu_backward", TORCH_FN(K::geglu_backward));
  m.impl("geglu_packed", TORCH_FN(K::geglu_packed));
  m.impl("geglu_packed_backward", TORCH_FN(K::geglu_packed_backward));
}

}  // namespace fused_acts
