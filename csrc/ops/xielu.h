// xIELU's host code (Apertus), for an engine with elementwise_sums (the
// CPU's): its coefficients are tensors, read once per call, and its
// backward sums their gradients in the pass that writes x's.
#pragma once

#include "../activations.h"
#include "../checks.h"
#include "../elementwise_args.h"
#include "../elementwise_functors.h"
#include "dispatch.h"
#include "plain.h"

#include <ATen/ops/empty_like.h>
#include <ATen/ops/full_like.h>

#include <tuple>

namespace fused_acts {

inline constexpr const char* kXielu = "xielu";
inline constexpr const char* kXieluBackward = "xielu_backward";

// The checks of both ops, x's (or grad's and x's) first.
inline void check_xielu(const char* op, const at::Tensor& x, const at::Tensor& alpha_p, const at::Tensor& alpha_n,
                        double beta, double eps) {
  check_floating(op, "x", x);
  check_coefficient(op, "alpha_p", alpha_p, "x", x);
  check_coefficient(op, "alpha_n", alpha_n, "x", x);
  check_finite(op, "beta", beta);
  check_finite(op, "eps", eps);
}

inline XieluAct xielu_act(const at::Tensor& alpha_p, const at::Tensor& alpha_n, double beta, double eps) {
  return XieluAct{alpha_p.item<double>(), alpha_n.item<double>(), beta, eps};
}

template <typename Engine>
struct XieluOps {
  using Tensor = at::Tensor;

  static Tensor forward(const Tensor& x, const Tensor& alpha_p, const Tensor& alpha_n, double beta, double eps) {
    check_xielu(kXielu, x, alpha_p, alpha_n, beta, eps);
    return PlainKernels<Engine>::unary_forward(kXielu, xielu_act(alpha_p, alpha_n, beta, eps), x);
  }

  // (grad_x, grad_alpha_p, grad_alpha_n); the coefficients' gradients take
  // their shape and dtype, rounded once from the float64 sums.
  static std::tuple<Tensor, Tensor, Tensor> backward(const Tensor& grad, const Tensor& x, const Tensor& alpha_p,
                                                     const Tensor& alpha_n, double beta, double eps) {
    check_same(kXieluBackward, "grad", grad, "x", x);
    check_xielu(kXieluBackward, x, alpha_p, alpha_n, beta, eps);
    Tensor grad_x = at::empty_like(x, at::MemoryFormat::Contiguous);
    double sums[2] = {0, 0};
    if (x.numel() > 0) {
      const XieluAct act = xielu_act(alpha_p, alpha_n, beta, eps);
      Tensor in[2] = {grad, x};
      const auto args = make_elementwise_args<2, 1>(in, {grad_x});
      dispatch_floating<typename Engine::Guard>(x, [&](auto type) {
        using scalar_t = typename decltype(type)::type;
        Engine::template elementwise_sums<scalar_t>(args, CoefficientBackward<XieluAct, scalar_t>{act}, sums);
      });
    }
    return {grad_x, at::full_like(alpha_p, sums[0], at::MemoryFormat::Contiguous),
            at::full_like(alpha_n, sums[1], at::MemoryFormat::Contiguous)};
  }
};

}  // namespace fused_acts
