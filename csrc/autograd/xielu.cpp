// xIELU's autograd kernels. A forward that needs a gradient records
// forward_node.h's node, whose backward gives x's gradient and both
// coefficients' in one call of xielu_backward. That backward is not
// differentiable again: a second derivative asks for it, and is refused.
#include "../ops/xielu.h"
#include "forward_node.h"

#include <torch/library.h>

#include <array>
#include <tuple>

namespace fused_acts::autograd {
namespace {

using Grads = std::tuple<Tensor, Tensor, Tensor>;

const auto& forward_op() {
  return op_handle<Tensor(const Tensor&, const Tensor&, const Tensor&, double, double), &kXielu>();
}
const auto& backward_op() {
  return op_handle<Grads(const Tensor&, const Tensor&, const Tensor&, const Tensor&, double, double),
                   &kXieluBackward>();
}

struct XieluForward {
  static variable_list backward(const Tensor& grad, const std::array<Tensor, 3>& saved, double beta, double eps) {
    auto [grad_x, grad_alpha_p, grad_alpha_n] = backward_op().call(grad, saved[0], saved[1], saved[2], beta, eps);
    return {grad_x, grad_alpha_p, grad_alpha_n};
  }
};

Tensor forward(const Tensor& x, const Tensor& alpha_p, const Tensor& alpha_n, double beta, double eps) {
  const bool record = any_requires_grad({x, alpha_p, alpha_n});
  Tensor out;
  {
    at::AutoDispatchBelowADInplaceOrView guard;
    out = forward_op().call(x, alpha_p, alpha_n, beta, eps);
  }
  if (!record) return out;
  return ForwardNode<XieluForward, 3, double, double>::record(std::move(out), kXieluBackward, {beta, eps}, x, alpha_p,
                                                              alpha_n);
}

Grads backward(const Tensor& grad, const Tensor& x, const Tensor& alpha_p, const Tensor& alpha_n, double beta,
               double eps) {
  TORCH_CHECK_NOT_IMPLEMENTED(!any_requires_grad({grad, x, alpha_p, alpha_n}), kXieluBackward,
                              ": double backward is not supported (the first derivative is fused; for higher "
                              "orders, differentiate eager's formula)");
  at::AutoDispatchBelowADInplaceOrView guard;
  return backward_op().call(grad, x, alpha_p, alpha_n, beta, eps);
}

}  // namespace

TORCH_LIBRARY_IMPL(fused_acts, Autograd, m) {
  m.impl(kXielu, TORCH_FN(forward));
  m.impl(kXieluBackward, TORCH_FN(backward));
}

}  // namespace fused_acts::autograd
