// The CUDA engines, as the host code of every variant (../ops/) calls them:
// the CPU's host code and math, run on the current stream of the operands'
// device.
#pragma once

#include "../ops/dispatch.h"
#include "elementwise.cuh"
#include "monitor.cuh"
#include "quantize.cuh"

namespace fused_acts {

struct CudaEngine {
  using Guard = c10::cuda::CUDAGuard;
  template <typename scalar_t, typename Args, typename Fn>
  static void elementwise(const Args& args, const Fn& fn) {
    cuda::elementwise<scalar_t>(args, fn);
  }
  template <typename scalar_t, typename Args, typename Fn>
  static void quantize(const Args& args, const Fn& fn, at::ScalarType out_dtype, const QuantizeArgs& qa) {
    cuda::quantize<scalar_t>(args, fn, out_dtype, qa);
  }
  template <typename scalar_t, typename Args, typename Fn>
  static void monitor(const Args& args, const Fn& fn, const MonitorArgs& ma) {
    cuda::monitor<scalar_t>(args, fn, ma);
  }
};

}  // namespace fused_acts
