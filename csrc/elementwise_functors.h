// How each kind of op combines an activation's math: one functor per kernel,
// shared by the CPU and CUDA engines. Each holds the activation it applies
// and maps kIn opmath values (scalars or SIMD vectors) to kOut values;
// scalar_t is the storage dtype, needed where eager rounds an intermediate
// to it. kInterleaved names the operands that pair up (elementwise_args.h)
// when a packed gate and up are interleaved; kPairedOnly, that the functor
// only ever runs on such pairs, so the engines compile nothing else for it.
// A forward's kGate is the operand its activation reads (monitor.h's g).
#pragma once

#include "activations.h"
#include "elementwise_args.h"
#include "math.h"

#include <c10/macros/Macros.h>

namespace fused_acts {

template <typename Act, typename scalar_t>
struct UnaryForward {
  static constexpr int kIn = 1, kOut = 1, kGate = 0;
  static constexpr Pairs kInterleaved{};
  static constexpr bool kPairedOnly = false;
  Act act;
  template <typename T>
  C10_HOST_DEVICE void operator()(const T* in, T* out) const {
    out[0] = act.template forward<scalar_t>(in[0]);
  }
};

// in: grad_out, x.
template <typename Act, typename scalar_t>
struct UnaryBackward {
  static constexpr int kIn = 2, kOut = 1;
  static constexpr Pairs kInterleaved{};
  static constexpr bool kPairedOnly = false;
  Act act;
  template <typename T>
  C10_HOST_DEVICE void operator()(const T* in, T* out) const {
    out[0] = act.template backward<scalar_t>(in[0], in[1]);
  }
};

// A tensor's own values: quantize's functor, which applies no activation.
struct NoAct {};
template <typename Act, typename scalar_t>
struct Identity {
  static constexpr int kIn = 1, kOut = 1;
  static constexpr Pairs kInterleaved{};
  static constexpr bool kPairedOnly = false;
  Act act;
  template <typename T>
  C10_HOST_DEVICE void operator()(const T* in, T* out) const {
    out[0] = in[0];
  }
};

// in: gate, up. Eager rounds act(gate) to the storage dtype before the
// multiply; so do we, to give the same result. up enters as gated_up maps it
// (activations.h): as it is but for GPT-OSS's clamp.
template <typename Act, typename scalar_t>
struct GatedForward {
  static constexpr int kIn = 2, kOut = 1, kGate = 0;
  static constexpr Pairs kInterleaved{0, -1};
  static constexpr bool kPairedOnly = false;
  Act act;
  template <typename T>
  C10_HOST_DEVICE void operator()(const T* in, T* out) const {
    out[0] = Math<T>::template round_to<scalar_t>(act.template forward<scalar_t>(in[0])) * gated_up(act, in[1]);
  }
};

// in: grad_out, gate, up. out: grad_gate, grad_up, both from one read of
// each input. grad_gate is act's backward with upstream grad_out·up, kept in
// opmath rather than rounded as eager's separate mul does.
template <typename Act, typename scalar_t>
struct GatedBackward {
  static constexpr int kIn = 3, kOut = 2;
  static constexpr Pairs kInterleaved{1, 0};
  static constexpr bool kPairedOnly = false;
  Act act;
  template <typename T>
  C10_HOST_DEVICE void operator()(const T* in, T* out) const {
    const T dy = in[0], gate = in[1], up = in[2];
    out[0] = act.template backward<scalar_t>(dy * gated_up(act, up), gate);
    const T act_gate = Math<T>::template round_to<scalar_t>(act.template forward<scalar_t>(gate));
    out[1] = gated_up_backward(act, dy * act_gate, up);
  }
};

// The gated functors on operands whose gate and up come the other way round:
// up and gate interleaved, up at the even elements, where the engines pair
// operands k and k + 1 as a tensor's even and odd elements.
template <typename Act, typename scalar_t>
struct GatedForwardUpFirst : GatedForward<Act, scalar_t> {
  static constexpr bool kPairedOnly = true;
  static constexpr int kGate = 1;
  // in: up, gate.
  template <typename T>
  C10_HOST_DEVICE void operator()(const T* in, T* out) const {
    const T gate_up[2] = {in[1], in[0]};
    GatedForward<Act, scalar_t>::operator()(gate_up, out);
  }
};

template <typename Act, typename scalar_t>
struct GatedBackwardUpFirst : GatedBackward<Act, scalar_t> {
  static constexpr bool kPairedOnly = true;
  // in: grad_out, up, gate. out: grad_up, grad_gate.
  template <typename T>
  C10_HOST_DEVICE void operator()(const T* in, T* out) const {
    const T grad_gate_up[3] = {in[0], in[2], in[1]};
    T grads[2];
    GatedBackward<Act, scalar_t>::operator()(grad_gate_up, grads);
    out[0] = grads[1];
    out[1] = grads[0];
  }
};

// in: grad_out, x. out: grad_x; and, for the engine to sum over every element
// (elementwise_sums), the terms of the gradients of act's kSums
// coefficients: grad_out·∂f/∂c (activations.h's coefficient_slopes).
template <typename Act, typename scalar_t>
struct CoefficientBackward : UnaryBackward<Act, scalar_t> {
  static constexpr int kSums = 2;
  template <typename T>
  C10_HOST_DEVICE void operator()(const T* in, T* out, T* terms) const {
    UnaryBackward<Act, scalar_t>::operator()(in, out);
    T d_first, d_second;
    this->act.coefficient_slopes(in[1], d_first, d_second);
    terms[0] = in[0] * d_first;
    terms[1] = in[0] * d_second;
  }
};

}  // namespace fused_acts
