"""Loads the compiled kernels: the schemas and autograd (with the CUDA
kernels, when built) and the best CPU kernel build that this CPU runs, after
checking that they were built against the torch installed.

``FUSED_ACTS_CPU_KERNELS=<level>`` loads that CPU build instead (default,
avx2, avx512, avx512_bf16), so the tests can run each one on one machine.
"""

import ctypes
import importlib.machinery
import os
import warnings
from pathlib import Path

import torch

from ._cpu_levels import best_levels

_HERE = Path(__file__).parent


def _cpu_levels():
    """The CPU kernel builds to try, best first."""
    forced = os.environ.get("FUSED_ACTS_CPU_KERNELS")
    return (forced,) if forced else best_levels()


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
    levels = _cpu_levels()
    built = [level for level in levels if _library_path(f"_cpu_{level}") is not None]
    level = pick_cpu_build(levels, built)
    torch.ops.load_library(str(_library_path(f"_cpu_{level}")))
    return level


def op_table():
    """(name, family, variant, layout) for every op, as csrc/schemas.cpp
    defines them and exports them (fused_acts_op_table)."""
    library = ctypes.CDLL(str(_library_path("_C")))
    library.fused_acts_op_table.restype = ctypes.c_char_p
    return [tuple(line.split()) for line in library.fused_acts_op_table().decode().splitlines()]


def pick_cpu_build(levels, built):
    """The best of levels (best first) that was built, with a word when it is
    not the best: a build of fewer CPU capabilities (FUSED_ACTS_CPU_CAPABILITIES)
    on another machine runs slower kernels, or none."""
    if not built:
        raise ImportError(
            f"fused_acts: no CPU kernels were built for {', '.join(levels)}, the builds this CPU runs; rebuild "
            "on this machine, or with FUSED_ACTS_CPU_CAPABILITIES unset (all builds)"
        )
    if built[0] != levels[0]:
        warnings.warn(
            f"fused_acts: this CPU runs the {levels[0]} CPU kernels best, but they were not built; "
            f"using the slower {built[0]} ones. Rebuild with FUSED_ACTS_CPU_CAPABILITIES={levels[0]} "
            "(or unset, for all)",
            stacklevel=2,
        )
    return built[0]


cpu_capability = _load()
