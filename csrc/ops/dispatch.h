// The one dtype dispatch of every kernel launch, shared by both backends:
// a backend names its device guard and its engine; this picks scalar_t.
#pragma once

#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>

namespace fused_acts {

template <typename T>
struct Type {
  using type = T;
};

// The CPU runs on the calling thread: nothing to guard.
struct NoDeviceGuard {
  explicit NoDeviceGuard(c10::Device) {}
};

// fn(Type<scalar_t>{}) for like's dtype, under Guard on like's device.
template <typename Guard, typename Fn>
void dispatch_floating(const at::Tensor& like, const Fn& fn) {
  const Guard guard(like.device());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, like.scalar_type(), "fused_acts",
                                  [&] { fn(Type<scalar_t>{}); });
}

}  // namespace fused_acts
