// What the autograd of every variant shares: finding an op below autograd,
// and the choice between recording a Function and calling that op.
#pragma once

#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/autograd.h>

#include <initializer_list>
#include <string>

namespace fused_acts::autograd {

using at::Tensor;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// The op *kName, typed Signature, looked up once.
template <typename Signature, const char* const* kName>
const c10::TypedOperatorHandle<Signature>& op_handle() {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow((std::string("fused_acts::") + *kName).c_str(), "")
                             .typed<Signature>();
  return op;
}

inline bool any_requires_grad(std::initializer_list<Tensor> tensors) {
  if (!at::GradMode::is_enabled()) return false;
  for (const Tensor& t : tensors) {
    if (t.requires_grad()) return true;
  }
  return false;
}

// Whether an op's argument requires grad under grad mode: a tensor may, a
// param never.
inline bool requires_grad(const Tensor& t) { return any_requires_grad({t}); }
template <typename T>
bool requires_grad(const T&) {
  return false;
}

// Function::apply(args...) where one of inputs requires grad, else op's
// kernel below autograd.
template <typename Function, typename Op, typename... Args>
auto apply_or_call(const Op& op, std::initializer_list<Tensor> inputs, const Args&... args) {
  if (any_requires_grad(inputs)) return Function::apply(args...);
  at::AutoDispatchBelowADInplaceOrView guard;
  return op.call(args...);
}

// call() below autograd and, where one of the forward's args requires grad,
// its backward node recorded on the output (Forward::record(out, args...)):
// the plain forwards call their op, the monitored ones theirs.
template <typename Forward, typename Call, typename... Args>
Tensor call_and_record(Call&& call, const Args&... args) {
  const bool record = (requires_grad(args) || ...);
  Tensor out;
  {
    at::AutoDispatchBelowADInplaceOrView guard;
    out = call();
  }
  return record ? Forward::record(std::move(out), args...) : out;
}

}  // namespace fused_acts::autograd
