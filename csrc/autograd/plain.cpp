// The plain ops' autograd kernels (plain.h), registered from op_list.h.
#include "plain.h"

namespace fused_acts::autograd {

TORCH_LIBRARY_IMPL(fused_acts, Autograd, m) {
  for_each_op([&](auto op) { register_plain_ops<decltype(op), PlainAutograd<decltype(op)>>(m); });
}

}  // namespace fused_acts::autograd
