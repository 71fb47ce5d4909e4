"""Loads the compiled kernels: the schemas and autograd (with the CUDA
kernels, when built) and the CPU kernels built for torch's own SIMD level,
after checking that they were built against the torch installed.

``FUSED_ACTS_CPU_KERNELS=<level>`` loads that CPU build instead (default,
avx2, avx512, avx512_bf16), so the tests can run each one on one machine.
"""

import importlib.machinery
import os
from pathlib import Path

import torch

_HERE = Path(__file__).parent

# Best first: each SIMD level falls back to the levels below it.
_CPU_FALLBACKS = {
    "AVX512": ("avx512", "avx2", "default"),
    "AVX2": ("avx2", "default"),
}


def _cpu_levels():
    """The CPU kernel builds to try, best first. torch's capability has no
    AVX512-BF16 level of its own, so that extension is asked of cpuinfo."""
    forced = os.environ.get("FUSED_ACTS_CPU_KERNELS")
    if forced:
        return (forced,)
    capability = torch.backends.cpu.get_cpu_capability()
    levels = _CPU_FALLBACKS.get(capability, ("default",))
    has_bf16 = getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    if capability == "AVX512" and has_bf16():
        levels = ("avx512_bf16", *levels)
    return levels


def _library_path(name):
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = _HERE / f"{name}{suffix}"
        if path.exists():
            return path
    return None


REBUILD = "pip install --no-build-isolation --no-deps --force-reinstall ."


def check_torch_version(built, installed):
    """The kernels link against one torch's C++ ABI: another one fails to load
    them, or worse. built is None where the build left no record."""
    if built != installed:
        raise ImportError(
            f"fused_acts was built against torch {built} but torch {installed} is installed; "
            f"rebuild it against this torch: `{REBUILD}` from the fused_acts source folder"
        )


def _built_with():
    try:
        from ._built_with import TORCH_VERSION
    except ImportError:
        return None
    return TORCH_VERSION


def _load():
    schemas = _library_path("_C")
    if schemas is None:
        raise ImportError(
            "fused_acts: the compiled extension is missing; install with "
            "`pip install --no-build-isolation .` from the repository root"
        )
    check_torch_version(_built_with(), torch.__version__)
    torch.ops.load_library(str(schemas))
    for level in _cpu_levels():
        path = _library_path(f"_cpu_{level}")
        if path is not None:
            torch.ops.load_library(str(path))
            return level
    raise ImportError(f"fused_acts: no CPU kernels were built for {', '.join(_cpu_levels())}")


cpu_capability = _load()
