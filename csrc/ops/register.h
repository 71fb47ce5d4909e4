// Every variant's kernels for the ops of one Kind, for one backend's engine:
// what cpu/ and cuda/ register, a file per kind of op.
#pragma once

#include "monitored.h"
#include "plain.h"
#include "quantized.h"

namespace fused_acts {

template <typename Engine, typename Kind>
void register_kernels(torch::Library& m) {
  register_plain<Engine, Kind>(m);
  register_quantized<Engine, Kind>(m);
  register_monitored<Engine, Kind>(m);
}

}  // namespace fused_acts
