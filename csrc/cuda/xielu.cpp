// xIELU on CUDA: until a GPU session writes and measures a fused kernel
// (docs/design.md, "xIELU"), ATen ops in float, rounded once to x's dtype,
// with the CPU's checks. No .item(): the coefficients stay on the device.
#include "../ops/xielu.h"

#include <ATen/TensorOperators.h>
#include <ATen/ops/clamp_max.h>
#include <ATen/ops/exp.h>
#include <ATen/ops/expm1.h>
#include <ATen/ops/sum.h>
#include <ATen/ops/where.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

namespace fused_acts {
namespace {

using at::Tensor;

// x and the coefficients in opmath, the coefficients as 0-dim tensors.
std::tuple<Tensor, Tensor, Tensor> in_opmath(const Tensor& x, const Tensor& alpha_p, const Tensor& alpha_n) {
  const auto opmath = at::isReducedFloatingType(x.scalar_type()) ? at::kFloat : x.scalar_type();
  return {x.to(opmath), alpha_p.reshape({}).to(opmath), alpha_n.reshape({}).to(opmath)};
}

Tensor forward(const Tensor& x_in, const Tensor& alpha_p_in, const Tensor& alpha_n_in, double beta, double eps) {
  check_xielu(kXielu, x_in, alpha_p_in, alpha_n_in, beta, eps);
  const c10::cuda::CUDAGuard guard(x_in.device());
  const auto [x, alpha_p, alpha_n] = in_opmath(x_in, alpha_p_in, alpha_n_in);
  const Tensor negative = alpha_n * (at::expm1(at::clamp_max(x, eps)) - x) + beta * x;
  return at::where(x > 0, x * (alpha_p * x + beta), negative).to(x_in.scalar_type()).contiguous();
}

std::tuple<Tensor, Tensor, Tensor> backward(const Tensor& grad_in, const Tensor& x_in, const Tensor& alpha_p_in,
                                            const Tensor& alpha_n_in, double beta, double eps) {
  check_same(kXieluBackward, "grad", grad_in, "x", x_in);
  check_xielu(kXieluBackward, x_in, alpha_p_in, alpha_n_in, beta, eps);
  const c10::cuda::CUDAGuard guard(x_in.device());
  const auto [x, alpha_p, alpha_n] = in_opmath(x_in, alpha_p_in, alpha_n_in);
  const Tensor grad = grad_in.to(x.scalar_type());
  const Tensor positive = x > 0;
  const Tensor min_x = at::clamp_max(x, eps);
  const Tensor e = at::exp(min_x);
  const Tensor slope_of_min = at::where(x > eps, 0, at::where(x == eps, 0.5 * e, e));
  // x·0: eager's nan at ±inf, as in activations.h's XieluAct.
  const Tensor masked = x * 0;
  const Tensor slope = at::where(positive, 2 * alpha_p * x + beta, alpha_n * (slope_of_min - 1) + beta + masked);
  const Tensor negative_part = at::expm1(min_x) - x;
  const auto total = [](const Tensor& terms, const Tensor& like) {
    return at::sum(terms, at::kDouble).reshape(like.sizes()).to(like.scalar_type());
  };
  return {(grad * slope).to(x_in.scalar_type()).contiguous(),
          total(grad * at::where(positive, x * x, masked), alpha_p_in),
          total(grad * at::where(positive, masked, negative_part), alpha_n_in)};
}

}  // namespace

TORCH_LIBRARY_IMPL(fused_acts, CUDA, m) {
  m.impl(kXielu, TORCH_FN(forward));
  m.impl(kXieluBackward, TORCH_FN(backward));
}

}  // namespace fused_acts
