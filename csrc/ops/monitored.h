// The monitored forwards' host code, written once for both backends: the
// plain forward's output, and its statistics added to stats and histogram
// (../monitor.h). An Engine (cpu/engine.h, cuda/engine.cuh) names its device
// Guard and runs Engine::monitor<scalar_t>(args, functor, ma).
#pragma once

#include "../checks.h"
#include "../elementwise_args.h"
#include "../elementwise_functors.h"
#include "../monitor.h"
#include "../op_list.h"
#include "dispatch.h"
#include "gated_operands.h"

#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <torch/library.h>

#include <tuple>

namespace fused_acts {

template <typename Engine>
struct MonitoredKernels {
  using Tensor = at::Tensor;

  // in, out: as the forward's engine reads them; channels: out's last dim.
  template <template <typename, typename> class Kernel, typename Act, int NIn>
  static void monitor_into(Act act, Tensor (&in)[NIn], const Tensor& out, Pairs pairs, const Tensor& like,
                           const Tensor& stats, const Tensor& histogram) {
    if (out.numel() == 0) return;
    const int64_t channels = out.dim() == 0 ? 1 : out.size(-1);
    const auto args = per_channel(make_elementwise_args<NIn, 1>(in, {out}, pairs), channels);
    const MonitorArgs ma{stats.data_ptr<double>(), channels, saturation(act),
                         histogram.numel() > 0 ? histogram.data_ptr<double>() : nullptr, histogram.numel()};
    dispatch_floating<typename Engine::Guard>(like, [&](auto type) {
      using scalar_t = typename decltype(type)::type;
      Engine::template monitor<scalar_t>(args, Kernel<Act, scalar_t>{act}, ma);
    });
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

  // gate and up laid out as gated_operands.h says.
  template <typename Act>
  static void gated_monitor_into(Act act, const Tensor& gate, const Tensor& up, const Tensor& out, const Tensor& stats,
                                 const Tensor& histogram, bool interleaved = false, bool up_first = false) {
    with_gated_order(interleaved, up_first, [&](auto order) {
      using Order = decltype(order);
      const auto [first, second] = Order::order(gate, up);
      Tensor in[2] = {first, second};
      const Pairs pairs = pairs_of<typename Order::template Forward<Act, float>>(interleaved);
      monitor_into<Order::template Forward>(act, in, out, pairs, gate, stats, histogram);
    });
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

// The monitored kernels of one op of op_list.h, as functions of its schema's
// arguments: its forward's, then stats and histogram.
template <typename Engine, typename Op, typename Kind = typename Op::Kind,
          typename Params = typename Op::Select::Params>
struct MonitoredOps;

template <typename Engine, typename Op, typename... P>
struct MonitoredOps<Engine, Op, Unary, std::tuple<P...>> {
  using K = MonitoredKernels<Engine>;
  using Tensor = at::Tensor;

  static Tensor monitored(const Tensor& x, P... params, const Tensor& stats, const Tensor& histogram) {
    return Op::Select::with_act(
        Op::kName, [&](auto act) { return K::unary_monitored(Op::kName, act, x, stats, histogram); }, params...);
  }
  static void register_into(torch::Library& m) { m.impl(Op::kMonitored, TORCH_FN(monitored)); }
};

template <typename Engine, typename Op, typename... P>
struct MonitoredOps<Engine, Op, Gated, std::tuple<P...>> {
  using K = MonitoredKernels<Engine>;
  using Tensor = at::Tensor;

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
    m.impl(Op::kMonitored, TORCH_FN(monitored));
    m.impl(Op::kPackedMonitored, TORCH_FN(packed_monitored));
  }
};

// Every op's monitored kernels of kind Kind, for one backend.
template <typename Engine, typename Kind>
void register_monitored(torch::Library& m) {
  for_each_op_of<Kind>([&](auto op) { MonitoredOps<Engine, decltype(op)>::register_into(m); });
}

}  // namespace fused_acts
