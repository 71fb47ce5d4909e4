// The quantized ops' host code, written once for both backends: each op's
// forward, its output quantized (../quantize.h), in one pass per call. An
// Engine (cpu/engine.h, cuda/engine.cuh) names its device Guard and runs
// Engine::quantize<scalar_t>(args, functor, out_dtype, qa).
#pragma once

#include "../checks.h"
#include "../elementwise_args.h"
#include "../elementwise_functors.h"
#include "../op_list.h"
#include "../quantize.h"
#include "dispatch.h"
#include "gated_operands.h"

#include <ATen/ops/empty.h>
#include <ATen/ops/full.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <optional>
#include <tuple>
#include <vector>

namespace fused_acts {

template <typename Engine>
struct QuantizedKernels {
  using Tensor = at::Tensor;

  // One pass of Kernel<Act>, quantized, for quantized() to launch. (A
  // generic lambda here crashes GCC 12.)
  template <template <typename, typename> class Kernel, typename Act>
  struct Launcher {
    Act act;
    const Tensor& like;
    at::ScalarType out_dtype;
    template <int NIn>
    void operator()(const ElementwiseArgs<NIn, 1>& args, const QuantizeArgs& qa) const {
      dispatch_floating<typename Engine::Guard>(like, [&](auto type) {
        using scalar_t = typename decltype(type)::type;
        Engine::template quantize<scalar_t>(args, Kernel<Act, scalar_t>{act}, out_dtype, qa);
      });
    }
  };
  template <template <typename, typename> class Kernel, typename Act>
  static Launcher<Kernel, Act> launcher(Act act, const Tensor& like, const QuantSpec& spec) {
    return {act, like, spec.out_dtype};
  }

  // q and its scales from h, the output (of sizes) that launch(args, qa)
  // computes over in and quantizes. like: an input, for dtype and device.
  template <int NIn, typename Launch>
  static std::tuple<Tensor, Tensor> quantized(Tensor (&in)[NIn], Pairs pairs, at::IntArrayRef sizes, const Tensor& like,
                                              const QuantSpec& spec, const Launch& launch) {
    const auto options = like.options();
    const bool power_of_two = spec.power_of_two();
    const auto scale_dtype = power_of_two ? at::kFloat8_e8m0fnu : at::kFloat;
    Tensor q = at::empty(sizes, options.dtype(spec.out_dtype));
    Tensor scale = at::empty(scale_sizes(sizes, spec), options.dtype(scale_dtype));
    if (q.numel() == 0) {
      if (spec.scale) return {q, spec.scale->reshape({}).clone()};
      const float empty_scale = scale_of_amax(0.0f, qmax_of(spec.out_dtype), power_of_two);
      return {q, at::full(scale.sizes(), empty_scale, options.dtype(at::kFloat)).to(scale_dtype)};
    }
    const auto args = make_elementwise_args<NIn, 1>(in, {q}, pairs);
    QuantizeArgs qa{};
    qa.power_of_two = power_of_two;
    qa.scale = scale.data_ptr();
    if (!spec.per_tensor) {
      qa.pass = QuantizeArgs::kGroups;
      qa.group = spec.group_size == 0 ? (sizes.empty() ? 1 : sizes.back()) : spec.group_size;
      launch(args, qa);
      return {q, scale};
    }
    qa.group = std::min(args.cols, kTensorPassGroup);
    qa.pass = QuantizeArgs::kGivenScale;
    if (spec.scale) {
      qa.given = spec.scale->const_data_ptr<float>();
      launch(args, qa);
      return {q, scale};
    }
    Tensor amax = at::zeros({}, options.dtype(at::kFloat));
    qa.pass = QuantizeArgs::kAmax;
    qa.amax = amax.data_ptr<float>();
    launch(args, qa);
    qa.pass = QuantizeArgs::kGivenScale;
    qa.given = qa.amax;
    qa.given_is_amax = true;
    launch(args, qa);
    return {q, scale};
  }

  static float qmax_of(at::ScalarType out_dtype) {
    return with_quantized_type(out_dtype, [](auto out) { return QuantFormat<decltype(out)>::kQmax; });
  }

  // The per-tensor passes' unit of work: rows are cut into pieces of this many elements.
  static constexpr int64_t kTensorPassGroup = 4096;

  static std::vector<int64_t> scale_sizes(at::IntArrayRef sizes, const QuantSpec& spec) {
    if (spec.per_tensor || sizes.empty()) return {};
    std::vector<int64_t> scale_sizes(sizes.begin(), sizes.end());
    scale_sizes.back() = spec.group_size == 0 ? 1 : sizes.back() / spec.group_size;
    return scale_sizes;
  }

  template <typename Act>
  static std::tuple<Tensor, Tensor> unary_quantized(const char* op, Act act, const Tensor& x, const QuantSpec& spec) {
    check_floating(op, "x", x);
    check_quantized(op, spec, x.sizes(), "x", x);
    Tensor in[1] = {x};
    return quantized(in, Pairs{}, x.sizes(), x, spec, launcher<UnaryForward>(act, x, spec));
  }

  // gate and up laid out as gated_operands.h says.
  template <typename Act>
  static std::tuple<Tensor, Tensor> gated_quantized_of(Act act, const Tensor& gate, const Tensor& up,
                                                       const QuantSpec& spec, bool interleaved = false,
                                                       bool up_first = false) {
    return with_gated_order(interleaved, up_first, [&](auto order) {
      using Order = decltype(order);
      const auto [first, second] = Order::order(gate, up);
      Tensor in[2] = {first, second};
      const Pairs pairs = pairs_of<typename Order::template Forward<Act, float>>(interleaved);
      return quantized(in, pairs, gate.sizes(), gate, spec, launcher<Order::template Forward>(act, gate, spec));
    });
  }

  template <typename Act>
  static std::tuple<Tensor, Tensor> gated_quantized(const char* op, Act act, const Tensor& gate, const Tensor& up,
                                                    const QuantSpec& spec) {
    check_same(op, "gate", gate, "up", up);
    check_quantized(op, spec, gate.sizes(), "gate", gate);
    return gated_quantized_of(act, gate, up, spec);
  }

  template <typename Act>
  static std::tuple<Tensor, Tensor> gated_packed_quantized(const char* op, Act act, const Tensor& x, bool interleaved,
                                                           bool up_first, const QuantSpec& spec) {
    check_packed(op, x, interleaved, up_first);
    auto [gate, up] = engine_halves(x, interleaved, up_first);
    check_quantized(op, spec, gate.sizes(), "x", x);
    return gated_quantized_of(act, gate, up, spec, interleaved, up_first);
  }

  static std::tuple<Tensor, Tensor> quantize(const Tensor& x, at::ScalarType out_dtype, int64_t group_size,
                                             bool per_tensor, std::optional<at::ScalarType> scale_dtype,
                                             const std::optional<Tensor>& scale) {
    const QuantSpec spec{out_dtype, group_size, per_tensor, scale_dtype, scale};
    check_floating("quantize", "x", x);
    check_quantized("quantize", spec, x.sizes(), "x", x);
    Tensor in[1] = {x};
    return quantized(in, Pairs{}, x.sizes(), x, spec, launcher<Identity>(NoAct{}, x, spec));
  }
};

// The quantized kernels of one op of op_list.h, as functions of its schema's
// arguments: its forward's, then the format (schemas.cpp's kQuantizedSchema).
template <typename Engine, typename Op, typename Kind = typename Op::Kind,
          typename Params = typename Op::Select::Params>
struct QuantizedOps;

template <typename Engine, typename Op, typename... P>
struct QuantizedOps<Engine, Op, Unary, std::tuple<P...>> {
  using K = QuantizedKernels<Engine>;
  using Tensor = at::Tensor;

  static std::tuple<Tensor, Tensor> quantized(const Tensor& x, P... params, at::ScalarType out_dtype,
                                              int64_t group_size, bool per_tensor,
                                              std::optional<at::ScalarType> scale_dtype,
                                              const std::optional<Tensor>& scale) {
    const QuantSpec spec{out_dtype, group_size, per_tensor, scale_dtype, scale};
    return Op::Select::with_act(
        Op::kName, [&](auto act) { return K::unary_quantized(Op::kName, act, x, spec); }, params...);
  }
  static void register_into(torch::Library& m) { m.impl(Op::kQuantized, TORCH_FN(quantized)); }
};

template <typename Engine, typename Op, typename... P>
struct QuantizedOps<Engine, Op, Gated, std::tuple<P...>> {
  using K = QuantizedKernels<Engine>;
  using Tensor = at::Tensor;

  static std::tuple<Tensor, Tensor> quantized(const Tensor& gate, const Tensor& up, P... params,
                                              at::ScalarType out_dtype, int64_t group_size, bool per_tensor,
                                              std::optional<at::ScalarType> scale_dtype,
                                              const std::optional<Tensor>& scale) {
    const QuantSpec spec{out_dtype, group_size, per_tensor, scale_dtype, scale};
    return Op::Select::with_act(
        Op::kName, [&](auto act) { return K::gated_quantized(Op::kName, act, gate, up, spec); }, params...);
  }
  static std::tuple<Tensor, Tensor> packed_quantized(const Tensor& x, P... params, bool interleaved, bool up_first,
                                                     at::ScalarType out_dtype, int64_t group_size, bool per_tensor,
                                                     std::optional<at::ScalarType> scale_dtype,
                                                     const std::optional<Tensor>& scale) {
    const QuantSpec spec{out_dtype, group_size, per_tensor, scale_dtype, scale};
    return Op::Select::with_act(
        Op::kName, [&](auto act) { return K::gated_packed_quantized(Op::kName, act, x, interleaved, up_first, spec); },
        params...);
  }
  static void register_into(torch::Library& m) {
    m.impl(Op::kQuantized, TORCH_FN(quantized));
    m.impl(Op::kPackedQuantized, TORCH_FN(packed_quantized));
  }
};

// Every op's quantized kernels of kind Kind, for one backend.
template <typename Engine, typename Kind>
void register_quantized(torch::Library& m) {
  for_each_op_of<Kind>([&](auto op) { QuantizedOps<Engine, decltype(op)>::register_into(m); });
}

// quantize's kernel: a tensor's own values, quantized.
template <typename Engine>
void register_quantize(torch::Library& m) {
  m.impl("quantize", TORCH_FN(QuantizedKernels<Engine>::quantize));
}

}  // namespace fused_acts
