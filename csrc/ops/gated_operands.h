// How the gated ops hand gate and up to a functor, written once for the plain,
// quantized and monitored paths. Gate first, as GatedForward and GatedBackward
// read them; but a packed x with up and gate interleaved, up at the even
// elements, goes to the UpFirst functors with up first, since the engines pair
// operands k and k + 1 as a tensor's even and odd elements (elementwise_args.h).
#pragma once

#include "../checks.h"
#include "../elementwise_args.h"
#include "../elementwise_functors.h"
#include "../op_list.h"

#include <ATen/core/Tensor.h>

#include <tuple>

namespace fused_acts {

struct GateFirst {
  template <typename Act, typename scalar_t>
  using Forward = GatedForward<Act, scalar_t>;
  template <typename Act, typename scalar_t>
  using Backward = GatedBackward<Act, scalar_t>;
  template <typename T>
  static std::tuple<const T&, const T&> order(const T& gate, const T& up) {
    return {gate, up};
  }
};

struct UpFirst {
  template <typename Act, typename scalar_t>
  using Forward = GatedForwardUpFirst<Act, scalar_t>;
  template <typename Act, typename scalar_t>
  using Backward = GatedBackwardUpFirst<Act, scalar_t>;
  template <typename T>
  static std::tuple<const T&, const T&> order(const T& gate, const T& up) {
    return {up, gate};
  }
};

// fn(GateFirst{}) or fn(UpFirst{}), for gate and up laid out so.
template <typename Fn>
decltype(auto) with_gated_order(bool interleaved, bool up_first, const Fn& fn) {
  if (interleaved && up_first) return fn(UpFirst{});
  return fn(GateFirst{});
}

// The pairs that Functor's operands form: none unless gate and up are interleaved.
template <typename Functor>
Pairs pairs_of(bool interleaved) {
  return interleaved ? Functor::kInterleaved : Pairs{};
}

// op_list.h's packed_halves, as the engines read them: interleaved halves
// (element stride 2) are read as pairs, given a row stride.
inline std::tuple<at::Tensor, at::Tensor> engine_halves(const at::Tensor& x, bool interleaved, bool up_first) {
  const bool copy = interleaved && !row_stride_of(x).has_value();
  return packed_halves(copy ? x.contiguous() : x, interleaved, up_first);
}

}  // namespace fused_acts
