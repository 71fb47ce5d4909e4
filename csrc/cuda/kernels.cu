// CUDA kernels for every op: the same host code and math as the CPU, run by
// the CUDA engine on the current stream of the operands' device.
#include "../op_kernels.h"
#include "elementwise.cuh"

#include <ATen/Dispatch.h>

namespace fused_acts {

struct CudaBackend {
  template <template <typename, typename> class Kernel, typename Act, int NIn, int NOut>
  static void launch(Act act, const ElementwiseArgs<NIn, NOut>& args, const at::Tensor& like) {
    const c10::cuda::CUDAGuard device_guard(like.device());
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, like.scalar_type(), "fused_acts",
                                    [&] { cuda::elementwise<scalar_t>(args, Kernel<Act, scalar_t>{act}); });
  }
};

TORCH_LIBRARY_IMPL(fused_acts, CUDA, m) { register_kernels<CudaBackend>(m); }

}  // namespace fused_acts
