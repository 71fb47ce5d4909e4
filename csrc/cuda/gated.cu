// The gated ops' CUDA kernels, every variant (see unary.cu).
#include "../ops/register.h"
#include "engine.cuh"

namespace fused_acts {

TORCH_LIBRARY_IMPL(fused_acts, CUDA, m) { register_kernels<CudaEngine, Gated>(m); }

}  // namespace fused_acts
