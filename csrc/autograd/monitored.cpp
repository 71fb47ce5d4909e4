// The monitored forwards' autograd kernels. A monitored forward records its
// plain forward's node (plain.h's Forward::record): the same saved inputs
// and the same backward. stats and histogram, which its kernel adds to, are
// not differentiable; their versions are bumped, as an ATen in-place op
// bumps its output's.
#include "plain.h"

namespace fused_acts::autograd {
namespace {

// The monitored op *kOp, whose arguments are Args... (its forward's) and then stats and histogram.
template <typename Plain, const char* const* kOp, typename... Args>
struct Monitored {
  static const auto& monitored_op() { return op_handle<Tensor(Args..., const Tensor&, const Tensor&), kOp>(); }
  static Tensor call(Args... args, const Tensor& stats, const Tensor& histogram) {
    Tensor out = call_and_record<Plain>([&] { return monitored_op().call(args..., stats, histogram); }, args...);
    torch::autograd::increment_version(stats);
    torch::autograd::increment_version(histogram);
    return out;
  }
};

template <typename Op, typename Kind = typename Op::Kind, typename Params = typename Op::Select::Params>
struct MonitoredAutograd;

template <typename Op, typename... P>
struct MonitoredAutograd<Op, Unary, std::tuple<P...>> {
  using Plain = PlainAutograd<Op>;
  static void register_into(torch::Library& m) {
    m.impl(Op::kMonitored, TORCH_FN((Monitored<typename Plain::Forward, &Op::kMonitored, const Tensor&, P...>::call)));
  }
};

template <typename Op, typename... P>
struct MonitoredAutograd<Op, Gated, std::tuple<P...>> {
  using Plain = PlainAutograd<Op>;
  static void register_into(torch::Library& m) {
    m.impl(Op::kMonitored,
           TORCH_FN((Monitored<typename Plain::Forward, &Op::kMonitored, const Tensor&, const Tensor&, P...>::call)));
    m.impl(
        Op::kPackedMonitored,
        TORCH_FN(
            (Monitored<typename Plain::PackedForward, &Op::kPackedMonitored, const Tensor&, P..., bool, bool>::call)));
  }
};

}  // namespace

TORCH_LIBRARY_IMPL(fused_acts, Autograd, m) {
  for_each_op([&](auto op) { MonitoredAutograd<decltype(op)>::register_into(m); });
}

}  // namespace fused_acts::autograd
