// The CPU engines, as the host code of every variant (../ops/) calls them.
#pragma once

#include "../ops/dispatch.h"
#include "elementwise.h"
#include "monitor.h"
#include "quantize.h"
#include "sums.h"

namespace fused_acts {

struct CpuEngine {
  using Guard = NoDeviceGuard;
  template <typename scalar_t, typename Args, typename Fn>
  static void elementwise(const Args& args, const Fn& fn) {
    cpu::elementwise<scalar_t>(args, fn);
  }
  template <typename scalar_t, typename Args, typename Fn>
  static void elementwise_sums(const Args& args, const Fn& fn, double* sums) {
    cpu::elementwise_sums<scalar_t>(args, fn, sums);
  }
  template <typename scalar_t, typename Args, typename Fn>
  static void quantize(const Args& args, const Fn& fn, at::ScalarType out_dtype, const QuantizeArgs& qa) {
    cpu::quantize<scalar_t>(args, fn, out_dtype, qa);
  }
  template <typename scalar_t, typename Args, typename Fn>
  static void monitor(const Args& args, const Fn& fn, const MonitorArgs& ma) {
    cpu::monitor<scalar_t>(args, fn, ma);
  }
};

}  // namespace fused_acts
