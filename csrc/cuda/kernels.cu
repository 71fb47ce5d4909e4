// CUDA kernels for every op: the same host code and math as the CPU, run by
// the CUDA engine on the current stream of the operands' device.
#include "../op_kernels.h"
#include "elementwise.cuh"
#include "monitor.cuh"
#include "quantize.cuh"

#include <ATen/Dispatch.h>

namespace fused_acts {

struct CudaBackend {
  template <template <typename, typename> class Kernel, typename Act, int NIn, int NOut>
  static void launch(Act act, const ElementwiseArgs<NIn, NOut>& args, const at::Tensor& like) {
    const c10::cuda::CUDAGuard device_guard(like.device());
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, like.scalar_type(), "fused_acts",
                                    [&] { cuda::elementwise<scalar_t>(args, Kernel<Act, scalar_t>{act}); });
  }
  template <template <typename, typename> class Kernel, typename Act, int NIn>
  static void quantize(Act act, const ElementwiseArgs<NIn, 1>& args, const at::Tensor& like, at::ScalarType out_dtype,
                       const QuantizeArgs& qa) {
    const c10::cuda::CUDAGuard device_guard(like.device());
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, like.scalar_type(), "fused_acts",
                                    [&] { cuda::quantize<scalar_t>(args, Kernel<Act, scalar_t>{act}, out_dtype, qa); });
  }
  template <template <typename, typename> class Kernel, typename Act, int NIn>
  static void monitor(Act act, const ElementwiseArgs<NIn, 1>& args, const at::Tensor& like, const MonitorArgs& ma) {
    const c10::cuda::CUDAGuard device_guard(like.device());
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, like.scalar_type(), "fused_acts",
                                    [&] { cuda::monitor<scalar_t>(args, Kernel<Act, scalar_t>{act}, ma); });
  }
};

TORCH_LIBRARY_IMPL(fused_acts, CUDA, m) { register_kernels<CudaBackend>(m); }

}  // namespace fused_acts
