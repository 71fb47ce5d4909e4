// The host side of every op, written once for both backends: check inputs,
// allocate outputs, describe operands, and hand one functor to the backend's
// engine. Backend::launch<Kernel>(act, args, like) runs Kernel<Act, scalar_t>
// over args on like's device, for like's dtype; Backend::quantize<Kernel>(act,
// args, like, out_dtype, qa) runs one pass of a quantized output (quantize.h);
// Backend::monitor<Kernel>(act, args, like, ma), a monitored forward (monitor.h).
#pragma once

#include "checks.h"
#include "elementwise_args.h"
#include "elementwise_functors.h"
#include "monitor.h"
#include "op_list.h"
#include "quantize.h"

#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/full.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <tuple>
#include <vector>

namespace fused_acts {

template <typename Backend>
struct OpKernels {
  using Tensor = at::Tensor;

  template <typename Act>
  static Tensor unary_forward(const char* op, Act act, const Tensor& x) {
    check_floating(op, "x", x);
    Tensor out = at::empty_like(x, at::MemoryFormat::Contiguous);
    if (x.numel() == 0) return out;
    Tensor in[1] = {x};
    const auto args = make_elementwise_args<1, 1>(in, {out});
    Backend::template launch<UnaryForward>(act, args, x);
    return out;
  }

  template <typename Act>
  static Tensor unary_backward(const char* op, Act act, const Tensor& grad, const Tensor& x) {
    check_same(op, "grad", grad, "x", x);
    Tensor grad_x = at::empty_like(x, at::MemoryFormat::Contiguous);
    if (x.numel() == 0) return grad_x;
    Tensor in[2] = {grad, x};
    const auto args = make_elementwise_args<2, 1>(in, {grad_x});
    Backend::template launch<UnaryBackward>(act, args, x);
    return grad_x;
  }

  // out and the gradients may be views (the halves of a packed tensor);
  // interleaved: gate and up, and the gradients, pair up (elementwise_args.h),
  // the even elements first: up's where up_first.
  template <typename Act>
  static void gated_forward_into(Act act, const Tensor& gate, const Tensor& up, const Tensor& out,
                                 bool interleaved = false, bool up_first = false) {
    if (out.numel() == 0) return;
    if (interleaved && up_first) {
      Tensor in[2] = {up, gate};
      const auto args = make_elementwise_args<2, 1>(in, {out}, GatedForwardUpFirst<Act, float>::kInterleaved);
      return Backend::template launch<GatedForwardUpFirst>(act, args, gate);
    }
    Tensor in[2] = {gate, up};
    const auto args = make_elementwise_args<2, 1>(in, {out}, pairs<GatedForward<Act, float>>(interleaved));
    Backend::template launch<GatedForward>(act, args, gate);
  }

  template <typename Act>
  static void gated_backward_into(Act act, const Tensor& grad, const Tensor& gate, const Tensor& up,
                                  const Tensor& grad_gate, const Tensor& grad_up, bool interleaved = false,
                                  bool up_first = false) {
    if (grad.numel() == 0) return;
    if (interleaved && up_first) {
      Tensor in[3] = {grad, up, gate};
      const auto args =
          make_elementwise_args<3, 2>(in, {grad_up, grad_gate}, GatedBackwardUpFirst<Act, float>::kInterleaved);
      return Backend::template launch<GatedBackwardUpFirst>(act, args, gate);
    }
    Tensor in[3] = {grad, gate, up};
    const auto args =
        make_elementwise_args<3, 2>(in, {grad_gate, grad_up}, pairs<GatedBackward<Act, float>>(interleaved));
    Backend::template launch<GatedBackward>(act, args, gate);
  }

  template <typename Functor>
  static Pairs pairs(bool interleaved) {
    return interleaved ? Functor::kInterleaved : Pairs{};
  }

  template <typename Act>
  static Tensor gated_forward(const char* op, Act act, const Tensor& gate, const Tensor& up) {
    check_same(op, "gate", gate, "up", up);
    Tensor out = at::empty_like(gate, at::MemoryFormat::Contiguous);
    gated_forward_into(act, gate, up, out);
    return out;
  }

  template <typename Act>
  static std::tuple<Tensor, Tensor> gated_backward(const char* op, Act act, const Tensor& grad, const Tensor& gate,
                                                   const Tensor& up) {
    check_same(op, "gate", gate, "up", up);
    check_same(op, "grad", grad, "gate", gate);
    Tensor grad_gate = at::empty_like(gate, at::MemoryFormat::Contiguous);
    Tensor grad_up = at::empty_like(up, at::MemoryFormat::Contiguous);
    gated_backward_into(act, grad, gate, up, grad_gate, grad_up);
    return {grad_gate, grad_up};
  }

  // op_list.h's packed_halves, as the engines read them: interleaved halves
  // (element stride 2) are read as pairs, given a row stride.
  static std::tuple<Tensor, Tensor> engine_halves(const Tensor& x, bool interleaved, bool up_first) {
    const bool copy = interleaved && !row_stride_of(x).has_value();
    return packed_halves(copy ? x.contiguous() : x, interleaved, up_first);
  }

  template <typename Act>
  static Tensor gated_packed_forward(const char* op, Act act, const Tensor& x, bool interleaved, bool up_first) {
    check_packed(op, x, interleaved, up_first);
    auto [gate, up] = engine_halves(x, interleaved, up_first);
    Tensor out = at::empty(gate.sizes(), x.options());
    gated_forward_into(act, gate, up, out, interleaved, up_first);
    return out;
  }

  // The gradient is one packed tensor whose halves the kernel writes in place.
  template <typename Act>
  static Tensor gated_packed_backward(const char* op, Act act, const Tensor& grad, const Tensor& x, bool interleaved,
                                      bool up_first) {
    check_packed(op, x, interleaved, up_first);
    auto [gate, up] = engine_halves(x, interleaved, up_first);
    check_same(op, "grad", grad, "gate", gate);
    Tensor grad_x = at::empty_like(x, at::MemoryFormat::Contiguous);
    auto [grad_gate, grad_up] = engine_halves(grad_x, interleaved, up_first);
    gated_backward_into(act, grad, gate, up, grad_gate, grad_up, interleaved, up_first);
    return grad_x;
  }

  // The same, written over x: each element pair is read before it is written,
  // by the thread that writes it. x must have a row stride, so its own
  // halves serve (no copy, even on the way to that error).
  template <typename Act>
  static void gated_packed_backward_inplace(const char* op, Act act, const Tensor& grad, const Tensor& x,
                                            bool interleaved, bool up_first) {
    check_packed(op, x, interleaved, up_first);
    auto [gate, up] = packed_halves(x, interleaved, up_first);
    check_same(op, "grad", grad, "gate", gate);
    check_writable(op, grad, x, row_stride_of(x).has_value());
    gated_backward_into(act, grad, gate, up, gate, up, interleaved, up_first);
  }

  // The quantized ops: q and its scales from h, the output (of sizes) that
  // launch(args, qa) computes over in and quantizes, one pass per call
  // (Backend::quantize). like: an input, for dtype and device.
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

  // One pass of Kernel<Act>, quantized, for quantized() to launch. (A
  // generic lambda here crashes GCC 12.)
  template <template <typename, typename> class Kernel, typename Act>
  struct Launcher {
    Act act;
    const Tensor& like;
    at::ScalarType out_dtype;
    template <int NIn>
    void operator()(const ElementwiseArgs<NIn, 1>& args, const QuantizeArgs& qa) const {
      Backend::template quantize<Kernel>(act, args, like, out_dtype, qa);
    }
  };
  template <template <typename, typename> class Kernel, typename Act>
  static Launcher<Kernel, Act> launcher(Act act, const Tensor& like, const QuantSpec& spec) {
    return {act, like, spec.out_dtype};
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

  // gate and up as gated_forward_into takes them.
  template <typename Act>
  static std::tuple<Tensor, Tensor> gated_quantized_of(Act act, const Tensor& gate, const Tensor& up,
                                                       const QuantSpec& spec, bool interleaved = false,
                                                       bool up_first = false) {
    if (interleaved && up_first) {
      Tensor in[2] = {up, gate};
      return quantized(in, GatedForwardUpFirst<Act, float>::kInterleaved, gate.sizes(), gate, spec,
                       launcher<GatedForwardUpFirst>(act, gate, spec));
    }
    Tensor in[2] = {gate, up};
    return quantized(in, pairs<GatedForward<Act, float>>(interleaved), gate.sizes(), gate, spec,
                     launcher<GatedForward>(act, gate, spec));
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

  // The monitored forwards: the plain forward's output, and its statistics
  // added to stats and histogram (monitor.h). in, out: as the forward's
  // engine reads them; channels: out's last dim.
  template <template <typename, typename> class Kernel, typename Act, int NIn>
  static void monitor_into(Act act, Tensor (&in)[NIn], const Tensor& out, Pairs pairs, const Tensor& like,
                           const Tensor& stats, const Tensor& histogram) {
    if (out.numel() == 0) return;
    const int64_t channels = out.dim() == 0 ? 1 : out.size(-1);
    const auto args = per_channel(make_elementwise_args<NIn, 1>(in, {out}, pairs), channels);
    const MonitorArgs ma{stats.data_ptr<double>(), channels, saturation(act),
                         histogram.numel() > 0 ? histogram.data_ptr<double>() : nullptr, histogram.numel()};
    Backend::template monitor<Kernel>(act, args, like, ma);
  }

  template <typename Act>
  static Tensor unary_monitored(const char* op, Act act, const Tensor& x, const Tensor& stats,
                                const Tensor& histogram) {
    check_floating(op, "x", x);
    check_monitor(op, stats, histogram, x.dim() == 0 ? 1 : x.size(-1), "x", x);
    Tensor out = at::empty_like(x, at::MemoryFormat::Contiguous);
    Tensor in[1] = {x};
    monitor_into<UnaryForward>(act, in, out, Pairs{}, x, stats, histogram);
    return out;
  }

  // gate and up as gated_forward_into takes them.
  template <typename Act>
  static void gated_monitor_into(Act act, const Tensor& gate, const Tensor& up, const Tensor& out, const Tensor& stats,
                                 const Tensor& histogram, bool interleaved = false, bool up_first = false) {
    if (interleaved && up_first) {
      Tensor in[2] = {up, gate};
      return monitor_into<GatedForwardUpFirst>(act, in, out, GatedForwardUpFirst<Act, float>::kInterleaved, gate, stats,
                                               histogram);
    }
    Tensor in[2] = {gate, up};
    monitor_into<GatedForward>(act, in, out, pairs<GatedForward<Act, float>>(interleaved), gate, stats, histogram);
  }

  template <typename Act>
  static Tensor gated_monitored(const char* op, Act act, const Tensor& gate, const Tensor& up, const Tensor& stats,
                                const Tensor& histogram) {
    check_same(op, "gate", gate, "up", up);
    check_monitor(op, stats, histogram, gate.dim() == 0 ? 1 : gate.size(-1), "gate", gate);
    Tensor out = at::empty_like(gate, at::MemoryFormat::Contiguous);
    gated_monitor_into(act, gate, up, out, stats, histogram);
    return out;
  }

  template <typename Act>
  static Tensor gated_packed_monitored(const char* op, Act act, const Tensor& x, bool interleaved, bool up_first,
                                       const Tensor& stats, const Tensor& histogram) {
    check_packed(op, x, interleaved, up_first);
    check_monitor(op, stats, histogram, x.size(-1) / 2, "x", x);
    auto [gate, up] = engine_halves(x, interleaved, up_first);
    Tensor out = at::empty(gate.sizes(), x.options());
    gated_monitor_into(act, gate, up, out, stats, histogram, interleaved, up_first);
    return out;
  }
};

// The kernels of one op of op_list.h, as functions of its schema's
// arguments: the tensors, then the params (P...) that Select reads.
template <typename Backend, typename Op, typename Kind = typename Op::Kind,
          typename Params = typename Op::Select::Params>
struct OpFamily;

template <typename Backend, typename Op, typename... P>
struct OpFamily<Backend, Op, Unary, std::tuple<P...>> {
  using K = OpKernels<Backend>;
  using Tensor = at::Tensor;

  static Tensor forward(const Tensor& x, P... params) {
    return Op::Select::with_act(Op::kName, [&](auto act) { return K::unary_forward(Op::kName, act, x); }, params...);
  }
  static Tensor backward(const Tensor& grad, const Tensor& x, P... params) {
    return Op::Select::with_act(
        Op::kBackward, [&](auto act) { return K::unary_backward(Op::kBackward, act, grad, x); }, params...);
  }
  static std::tuple<Tensor, Tensor> quantized(const Tensor& x, P... params, at::ScalarType out_dtype,
                                              int64_t group_size, bool per_tensor,
                                              std::optional<at::ScalarType> scale_dtype,
                                              const std::optional<Tensor>& scale) {
    const QuantSpec spec{out_dtype, group_size, per_tensor, scale_dtype, scale};
    return Op::Select::with_act(
        Op::kName, [&](auto act) { return K::unary_quantized(Op::kName, act, x, spec); }, params...);
  }
  static Tensor monitored(const Tensor& x, P... params, const Tensor& stats, const Tensor& histogram) {
    return Op::Select::with_act(
        Op::kName, [&](auto act) { return K::unary_monitored(Op::kName, act, x, stats, histogram); }, params...);
  }
  static void register_into(torch::Library& m) {
    m.impl(Op::kName, TORCH_FN(forward));
    m.impl(Op::kBackward, TORCH_FN(backward));
    m.impl(Op::kQuantized, TORCH_FN(quantized));
    m.impl(Op::kMonitored, TORCH_FN(monitored));
  }
};

template <typename Backend, typename Op, typename... P>
struct OpFamily<Backend, Op, Gated, std::tuple<P...>> {
  using K = OpKernels<Backend>;
  using Tensor = at::Tensor;

  static Tensor forward(const Tensor& gate, const Tensor& up, P... params) {
    return Op::Select::with_act(
        Op::kName, [&](auto act) { return K::gated_forward(Op::kName, act, gate, up); }, params...);
  }
  static std::tuple<Tensor, Tensor> backward(const Tensor& grad, const Tensor& gate, const Tensor& up, P... params) {
    return Op::Select::with_act(
        Op::kBackward, [&](auto act) { return K::gated_backward(Op::kBackward, act, grad, gate, up); }, params...);
  }
  static Tensor packed_forward(const Tensor& x, P... params, bool interleaved, bool up_first) {
    return Op::Select::with_act(
        Op::kName, [&](auto act) { return K::gated_packed_forward(Op::kName, act, x, interleaved, up_first); },
        params...);
  }
  static Tensor packed_backward(const Tensor& grad, const Tensor& x, P... params, bool interleaved, bool up_first) {
    return Op::Select::with_act(
        Op::kBackward,
        [&](auto act) { return K::gated_packed_backward(Op::kBackward, act, grad, x, interleaved, up_first); },
        params...);
  }
  static void packed_backward_inplace(const Tensor& grad, const Tensor& x, P... params, bool interleaved,
                                      bool up_first) {
    Op::Select::with_act(
        Op::kBackward,
        [&](auto act) { K::gated_packed_backward_inplace(Op::kBackward, act, grad, x, interleaved, up_first); },
        params...);
  }
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
  static Tensor monitored(const Tensor& gate, const Tensor& up, P... params, const Tensor& stats,
                          const Tensor& histogram) {
    return Op::Select::with_act(
        Op::kName, [&](auto act) { return K::gated_monitored(Op::kName, act, gate, up, stats, histogram); }, params...);
  }
  static Tensor packed_monitored(const Tensor& x, P... params, bool interleaved, bool up_first, const Tensor& stats,
                                 const Tensor& histogram) {
    return Op::Select::with_act(
        Op::kName,
        [&](auto act) { return K::gated_packed_monitored(Op::kName, act, x, interleaved, up_first, stats, histogram); },
        params...);
  }
  static void register_into(torch::Library& m) {
    m.impl(Op::kName, TORCH_FN(forward));
    m.impl(Op::kBackward, TORCH_FN(backward));
    m.impl(Op::kQuantized, TORCH_FN(quantized));
    m.impl(Op::kPackedQuantized, TORCH_FN(packed_quantized));
    m.impl(Op::kMonitored, TORCH_FN(monitored));
    m.impl(Op::kPackedMonitored, TORCH_FN(packed_monitored));
    m.impl(Op::kPacked, TORCH_FN(packed_forward));
    m.impl(Op::kPackedBackward, TORCH_FN(packed_backward));
    m.impl(Op::kPackedBackwardInPlace, TORCH_FN(packed_backward_inplace));
  }
};

// Every op's kernels for one backend.
template <typename Backend>
void register_kernels(torch::Library& m) {
  for_each_op([&](auto op) { OpFamily<Backend, decltype(op)>::register_into(m); });
  m.impl("quantize", TORCH_FN(OpKernels<Backend>::quantize));
}

}  // namespace fused_acts
