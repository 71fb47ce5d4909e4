// The unary ops' CPU kernels, every variant, and quantize's. One file per
// kind of op, not per variant: the variants share the engine's code for each
// functor, which a file per variant would compile three times
// (docs/design.md, "The build"). Like every file here, built once per CPU
// capability (setup.py); fused_acts loads the build that this CPU runs best.
#include "../ops/register.h"
#include "engine.h"

namespace fused_acts {

TORCH_LIBRARY_IMPL(fused_acts, CPU, m) {
  register_kernels<CpuEngine, Unary>(m);
  register_quantize<CpuEngine>(m);
}

}  // namespace fused_acts
