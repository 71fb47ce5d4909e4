"""Loads the compiled kernels: the schemas (with the CUDA kernels, when built)
and the CPU kernels built for torch's own SIMD level."""

import importlib.machinery
from pathlib import Path

import torch

_HERE = Path(__file__).parent

# Best first: each SIMD level falls back to the levels below it.
_CPU_FALLBACKS = {
    "AVX512": ("avx512", "avx2", "default"),
    "AVX2": ("avx2", "default"),
}


def _library_path(name):
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = _HERE / f"{name}{suffix}"
        if path.exists():
            return path
    return None


def _load():
    schemas = _library_path("_C")
    if schemas is None:
        raise ImportError(
            "fused_acts: the compiled extension is missing; install with "
            "`pip install --no-build-isolation .` from the repository root"
        )
    torch.ops.load_library(str(schemas))
    capability = torch.backends.cpu.get_cpu_capability()
    for level in _CPU_FALLBACKS.get(capability, ("default",)):
        path = _library_path(f"_cpu_{level}")
        if path is not None:
            torch.ops.load_library(str(path))
            return level
    raise ImportError("fused_acts: no CPU kernels were built")


cpu_capability = _load()
