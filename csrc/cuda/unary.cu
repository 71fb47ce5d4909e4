// The unary ops' CUDA kernels, every variant, and quantize's (one file per
// kind of op, as cpu/unary.cpp says why).
#include "../ops/register.h"
#include "engine.cuh"

namespace fused_acts {

TORCH_LIBRARY_IMPL(fused_acts, CUDA, m) {
  register_kernels<CudaEngine, Unary>(m);
  register_quantize<CudaEngine>(m);
}

}  // namespace fused_acts
