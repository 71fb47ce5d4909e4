// The gated ops' CPU kernels, every variant (see unary.cpp).
#include "../ops/register.h"
#include "engine.h"

namespace fused_acts {

TORCH_LIBRARY_IMPL(fused_acts, CPU, m) { register_kernels<CpuEngine, Gated>(m); }

}  // namespace fused_acts
