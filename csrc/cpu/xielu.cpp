// xIELU's CPU kernels (ops/xielu.h).
#include "../ops/xielu.h"
#include "engine.h"

namespace fused_acts {

TORCH_LIBRARY_IMPL(fused_acts, CPU, m) {
  m.impl(kXielu, TORCH_FN(XieluOps<CpuEngine>::forward));
  m.impl(kXieluBackward, TORCH_FN(XieluOps<CpuEngine>::backward));
}

}  // namespace fused_acts
