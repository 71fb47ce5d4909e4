"""Which CPU kernel build this machine runs best. setup.py reads it too (for
FUSED_ACTS_CPU_CAPABILITIES=native), so it imports nothing of fused_acts."""

import torch

# Best first: each SIMD level falls back to the levels below it.
_FALLBACKS = {
    "AVX512": ("avx512", "avx2", "default"),
    "AVX2": ("avx2", "default"),
}


def best_levels():
    """The CPU builds this CPU runs, best first, as torch's own CPU capability
    says. It has no AVX512-BF16 level of its own, so that one is asked of cpuinfo."""
    capability = torch.backends.cpu.get_cpu_capability()
    levels = _FALLBACKS.get(capability, ("default",))
    has_bf16 = getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    if capability == "AVX512" and has_bf16():
        levels = ("avx512_bf16", *levels)
    return levels
