// The node that a plain or monitored forward records for its backward: a
// torch::autograd::Node of our own, as ATen's generated ones are. A
// torch::autograd::Function's generic CppNode costs about 3 µs more a call
// at decode sizes (an IValue map for the params, bookkeeping of every input
// and output); this one holds its saved inputs and params typed. Its apply
// runs the op's differentiable backward, so double backward records as
// before; compiled autograd reads it through compiled_args and
// apply_with_saved.
#pragma once

#include "common.h"

#include <c10/util/intrusive_ptr.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/functions/utils.h>
#include <torch/csrc/autograd/saved_variable.h>
#include <torch/version.h>

// The compiled-autograd interface this node implements is torch 2.14's;
// built against an older torch, compiled autograd refuses the node (as
// Node's defaults do) and everything else works.
#define FUSED_ACTS_COMPILED_AUTOGRAD \
  (TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 14))
#if FUSED_ACTS_COMPILED_AUTOGRAD
#include <torch/csrc/dynamo/compiled_autograd.h>
#endif

#include <memory>
#include <mutex>

#include <array>
#include <optional>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

namespace fused_acts::autograd {

// Backward::backward(grad, saved, params...) gives the gradients of the
// forward's kSaved tensor inputs, which it saved.
template <typename Backward, size_t kSaved, typename... Params>
struct ForwardNode final : torch::autograd::Node {
  explicit ForwardNode(const char* name, Params... params) : name_(name), params_(std::move(params)...) {}

  std::string name() const override { return name_; }

  void release_variables() override {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& saved : saved_) saved.reset_data();
  }

  variable_list apply(variable_list&& grads) override {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!grads[0].defined()) return variable_list(num_outputs());
    std::array<Tensor, kSaved> saved;
    for (size_t i = 0; i < kSaved; ++i) saved[i] = saved_[i].unpack();
    return std::apply([&](const auto&... params) { return Backward::backward(grads[0], saved, params...); }, params_);
  }

#if FUSED_ACTS_COMPILED_AUTOGRAD
  void compiled_args(torch::dynamo::autograd::CompiledNodeArgs& args) const override {
    for (const auto& saved : saved_) args.collect(saved, /*is_output=*/false);
    std::apply([&](const auto&... params) { (args.collect(params), ...); }, params_);
  }

  // Compiled autograd calls the backward as a function of the grads, the
  // saved tensors and the params, as it calls ATen's generated nodes.
  variable_list apply_with_saved(const variable_list& grads,
                                 torch::dynamo::autograd::SwapSavedVariables& swap) override {
    namespace compiled = torch::dynamo::autograd;
    for (auto& saved : saved_) swap.before(saved);
    std::vector<c10::IValue> args;
    for (const auto& saved : saved_) args.emplace_back(saved.unpack());
    std::apply([&](const auto&... params) { (args.emplace_back(params), ...); }, params_);
    const auto& python = compiled::getPyCompilerInterface();
    // Bound once: compiled autograd's registry of functions lives as long as the process.
    static const std::string fn = [&] {
      std::vector<at::TypePtr> schema;
      for (const auto& arg : args) schema.push_back(arg.isTensor() ? at::TensorType::get() : arg.type());
      return python->bind_function(swap.get_py_compiler(), name_, &ForwardNode::apply_functional, schema);
    }();
    const auto output_metadata =
        compiled::IValuePacker<std::vector<std::optional<torch::autograd::InputMetadata>>>::pack(
            compiled::get_input_metadata(next_edges()));
    variable_list result =
        python->call_function(swap.get_py_compiler(), "apply_functional", fn, grads, args, output_metadata);
    for (auto& saved : saved_) swap.after(saved);
    return result;
  }

  static variable_list apply_functional(const variable_list& grads, const std::vector<c10::IValue>& args) {
    if (!grads[0].defined()) return variable_list(kSaved);
    std::array<Tensor, kSaved> saved;
    for (size_t i = 0; i < kSaved; ++i) saved[i] = args[i].toTensor();
    return params_from(args, std::index_sequence_for<Params...>{},
                       [&](const auto&... params) { return Backward::backward(grads[0], saved, params...); });
  }

#endif

  // out's history: this node, which saves inputs (the forward's tensors, in
  // order) and gives their gradients.
  template <typename... Inputs>
  static Tensor record(Tensor out, const char* name, std::tuple<Params...> params, const Inputs&... inputs) {
    static_assert(sizeof...(Inputs) == kSaved);
    auto node = std::apply([&](auto&&... p) { return make(name, std::forward<decltype(p)>(p)...); }, std::move(params));
    node->set_next_edges(torch::autograd::collect_next_edges(inputs...));
    size_t i = 0;
    ((node->saved_[i++] = torch::autograd::SavedVariable(inputs, /*is_output=*/false)), ...);
    torch::autograd::set_history(out, node);
    return out;
  }

 private:
  // Nodes are owned by intrusive pointers in newer torch (2.14 here), by
  // shared ones in older.
  template <typename... Args>
  static auto make(Args&&... args) {
    if constexpr (std::is_base_of_v<c10::intrusive_ptr_target, ForwardNode>) {
      return c10::make_intrusive<ForwardNode>(std::forward<Args>(args)...);
    } else {
      return std::shared_ptr<ForwardNode>(new ForwardNode(std::forward<Args>(args)...));
    }
  }

  template <size_t... I, typename Fn>
  static variable_list params_from(const std::vector<c10::IValue>& args, std::index_sequence<I...>, Fn&& fn) {
    return fn(args[kSaved + I].template to<Params>()...);
  }

  const char* name_;
  std::tuple<Params...> params_;
  std::array<torch::autograd::SavedVariable, kSaved> saved_;
};

}  // namespace fused_acts::autograd
