// CPU kernels for every op. Built once per CPU capability (see setup.py);
// fused_acts loads the build that matches torch's own CPU capability.
#include "../op_kernels.h"
#include "elementwise.h"
#include "monitor.h"
#include "quantize.h"

#include <ATen/Dispatch.h>

namespace fused_acts {

struct CpuBackend {
  template <template <typename, typename> class Kernel, typename Act, int NIn, int NOut>
  static void launch(Act act, const ElementwiseArgs<NIn, NOut>& args, const at::Tensor& like) {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, like.scalar_type(), "fused_acts",
                                    [&] { cpu::elementwise<scalar_t>(args, Kernel<Act, scalar_t>{act}); });
  }
  template <template <typename, typename> class Kernel, typename Act, int NIn>
  static void quantize(Act act, const ElementwiseArgs<NIn, 1>& args, const at::Tensor& like, at::ScalarType out_dtype,
                       const QuantizeArgs& qa) {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, like.scalar_type(), "fused_acts",
                                    [&] { cpu::quantize<scalar_t>(args, Kernel<Act, scalar_t>{act}, out_dtype, qa); });
  }
  template <template <typename, typename> class Kernel, typename Act, int NIn>
  static void monitor(Act act, const ElementwiseArgs<NIn, 1>& args, const at::Tensor& like, const MonitorArgs& ma) {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, like.scalar_type(), "fused_acts",
                                    [&] { cpu::monitor<scalar_t>(args, Kernel<Act, scalar_t>{act}, ma); });
  }
};

TORCH_LIBRARY_IMPL(fused_acts, CPU, m) { register_kernels<CpuBackend>(m); }

}  // namespace fused_acts
