"""Builds fused_acts' compiled kernels.

- ``fused_acts._C``: the op schemas and autograd, plus the CUDA kernels when
  CUDA is built.
- ``fused_acts._cpu_<capability>``: the CPU kernels, once per SIMD level
  (default, avx2, avx512 and avx512_bf16 on x86-64); at import, fused_acts
  loads the best one that this CPU runs.

Each extension is a few files, which the compiler runs side by side.

Environment:
- ``FUSED_ACTS_CUDA=0/1`` forces CUDA off or on; by default CUDA is built
  when torch has CUDA and a CUDA toolkit is found.
- ``CUDA_HOME`` points at the toolkit; otherwise nvcc on PATH (when it sits in
  a real toolkit) or /usr/local/cuda.
- ``TORCH_CUDA_ARCH_LIST`` picks the GPU targets (default: 8.0;9.0+PTX).
- ``MAX_JOBS`` caps how many files compile at once (default: one per core).
  Each takes up to 2 GB of memory: lower it where memory per core is less.
- ``FUSED_ACTS_CPU_CAPABILITIES``: the CPU builds, comma-separated, or
  ``native`` for the best one this machine runs (default: all).
- ``FUSED_ACTS_DEBUG=1`` builds with debug information (``-g``, and nvcc's
  ``-lineinfo``); by default the build carries none.

The build records the torch it was built against in ``fused_acts/_built_with.py``:
the compiled kernels run only with that torch.
"""

import copy
import importlib.util
import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).parent.resolve()
DEFAULT_CUDA_ARCHS = "8.0;9.0+PTX"
# Each extension's files: one per variant for autograd, one per kind of op
# for the kernels (csrc/cpu/unary.cpp says why), the slowest first.
AUTOGRAD = [
    "csrc/schemas.cpp",
    "csrc/autograd/plain.cpp",
    "csrc/autograd/monitored.cpp",
    "csrc/autograd/quantized.cpp",
    "csrc/autograd/xielu.cpp",
]
CUDA_KERNELS = ["csrc/cuda/gated.cu", "csrc/cuda/unary.cu", "csrc/cuda/xielu.cpp"]
CPU_KERNELS = ["csrc/cpu/gated.cpp", "csrc/cpu/unary.cpp", "csrc/cpu/xielu.cpp"]


def _cpu_levels_module():
    """fused_acts/_cpu_levels.py, which the import also reads, loaded by path:
    importing the package would load the kernels this builds."""
    spec = importlib.util.spec_from_file_location("_cpu_levels", ROOT / "fused_acts" / "_cpu_levels.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def debug_build():
    debug = os.environ.get("FUSED_ACTS_DEBUG", "0")
    if debug not in ("0", "1"):
        sys.exit(f"FUSED_ACTS_DEBUG must be 0 or 1, got {debug!r}")
    return debug == "1"


def _is_toolkit(path):
    """A toolkit root has nvcc and the runtime headers side by side."""
    path = Path(path)
    return (path / "bin" / "nvcc").exists() and (path / "include" / "cuda_runtime.h").exists()


def find_cuda_home():
    """torch guesses the toolkit from nvcc's location, which is wrong when nvcc
    is a wrapper script outside the toolkit (as /usr/local/bin/nvcc can be)."""
    candidates = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH")]
    nvcc = shutil.which("nvcc")
    if nvcc:
        candidates.append(Path(nvcc).resolve().parent.parent)
    candidates.append("/usr/local/cuda")
    for candidate in candidates:
        if candidate and _is_toolkit(candidate):
            return str(Path(candidate).resolve())
    return None


def nvcc_version(cuda_home):
    """(major, minor) of the toolkit's nvcc."""
    out = subprocess.run([str(Path(cuda_home) / "bin" / "nvcc"), "--version"], capture_output=True, text=True).stdout
    match = re.search(r"release (\d+)\.(\d+)", out)
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)


def want_cuda(cuda_home):
    import torch

    forced = os.environ.get("FUSED_ACTS_CUDA")
    if forced is not None and forced not in ("0", "1"):
        sys.exit(f"FUSED_ACTS_CUDA must be 0 or 1, got {forced!r}")
    if forced == "0":
        return False
    available = torch.version.cuda is not None and cuda_home is not None
    if forced == "1" and not available:
        sys.exit(
            "FUSED_ACTS_CUDA=1 but CUDA cannot be built: "
            f"torch.version.cuda={torch.version.cuda}, CUDA toolkit={cuda_home}"
        )
    return available


def cpu_capabilities():
    """(name, flags) for each SIMD level that the CPU kernels are built for."""
    levels = _all_cpu_capabilities()
    wanted = os.environ.get("FUSED_ACTS_CPU_CAPABILITIES")
    if not wanted:
        return levels
    names = [name for name, _ in levels]
    if wanted == "native":
        picked = [_cpu_levels_module().best_levels()[0]]
    else:
        picked = [name.strip() for name in wanted.split(",")]
    unknown = [name for name in picked if name not in names]
    if unknown or not picked:
        sys.exit(f"FUSED_ACTS_CPU_CAPABILITIES must be 'native' or a comma-separated list of {names}, got {wanted!r}")
    return [(name, flags) for name, flags in levels if name in picked]


def _all_cpu_capabilities():
    levels = [("default", ["-DCPU_CAPABILITY=DEFAULT", "-DCPU_CAPABILITY_DEFAULT"])]
    if platform.machine() in ("x86_64", "AMD64"):
        levels.append(("avx2", ["-DCPU_CAPABILITY=AVX2", "-DCPU_CAPABILITY_AVX2", "-mavx2", "-mfma", "-mf16c"]))
        avx512 = [
            "-DCPU_CAPABILITY=AVX512",
            "-DCPU_CAPABILITY_AVX512",
            "-mavx512f",
            "-mavx512bw",
            "-mavx512vl",
            "-mavx512dq",
            "-mavx2",
            "-mfma",
            "-mf16c",
        ]
        levels.append(("avx512", avx512))
        # Same code; bfloat16 outputs round in one instruction (vcvtne2ps2bf16).
        levels.append(("avx512_bf16", avx512 + ["-mavx512bf16"]))
    return levels


def extensions(cuda_home):
    from torch.utils.cpp_extension import CppExtension, CUDAExtension

    # Python's own CFLAGS, which the compiler command starts with, carry -g:
    # the last -g option wins.
    debug = debug_build()
    cxx_flags = ["-O3", "-fvisibility=hidden", "-g" if debug else "-g0"]
    nvcc_flags = ["-O3", "--expt-relaxed-constexpr"] + (["-lineinfo", "-g"] if debug else [])
    exts = []
    if want_cuda(cuda_home):
        os.environ.setdefault("TORCH_CUDA_ARCH_LIST", DEFAULT_CUDA_ARCHS)
        if nvcc_version(cuda_home) >= (12, 8):
            # The GPU code compressed for size: a tenth of the default mode's,
            # decompressed once when the module loads.
            nvcc_flags.append("--compress-mode=size")
        print(
            f"fused_acts: building CUDA kernels with {cuda_home} "
            f"for TORCH_CUDA_ARCH_LIST={os.environ['TORCH_CUDA_ARCH_LIST']}"
        )
        exts.append(
            CUDAExtension(
                "fused_acts._C",
                CUDA_KERNELS + AUTOGRAD,
                extra_compile_args={"cxx": cxx_flags, "nvcc": nvcc_flags},
            )
        )
    else:
        print("fused_acts: building without CUDA kernels")
        exts.append(CppExtension("fused_acts._C", AUTOGRAD, extra_compile_args=cxx_flags))
    for name, flags in cpu_capabilities():
        # at::parallel_for is inline OpenMP: without -fopenmp it runs serially.
        exts.append(
            CppExtension(
                f"fused_acts._cpu_{name}",
                CPU_KERNELS,
                extra_compile_args=cxx_flags + flags + ["-fopenmp"],
                extra_link_args=["-fopenmp"],
            )
        )
    return exts


def main():
    cuda_home = find_cuda_home()
    if cuda_home:
        os.environ["CUDA_HOME"] = cuda_home
    # Imported only now: torch.utils.cpp_extension reads CUDA_HOME at import.
    import torch
    from torch.utils.cpp_extension import BuildExtension

    jobs = max(1, int(os.environ.get("MAX_JOBS") or os.cpu_count() or 1))

    class Build(BuildExtension):
        def finalize_options(self):
            super().finalize_options()
            # MAX_JOBS files compile at once: the extensions build side by
            # side, each running its share of them (torch's ninja reads
            # MAX_JOBS as its -j). jobs is the user's MAX_JOBS, read before
            # this sets it: an editable install finalizes this command twice.
            self.parallel = min(jobs, len(self.extensions))
            os.environ["MAX_JOBS"] = str(max(1, jobs // self.parallel))
            print(f"fused_acts: {self.parallel} extensions at once, {os.environ['MAX_JOBS']} files each")

        def build_extension(self, ext):
            # setuptools compiles each extension's objects into one build folder
            # by source path; the per-capability builds of one source need
            # their own. On a copy of this command: extensions build in threads.
            command = copy.copy(self)
            command.build_temp = os.path.join(self.build_temp, ext.name)
            BuildExtension.build_extension(command, ext)

        def run(self):
            super().run()
            # The torch this build is for, which fused_acts checks at import.
            package = Path("fused_acts") if self.inplace else Path(self.build_lib) / "fused_acts"
            (package / "_built_with.py").write_text(f"TORCH_VERSION = {torch.__version__!r}\nDEBUG = {debug_build()}\n")

    setup(
        ext_modules=extensions(cuda_home),
        cmdclass={"build_ext": Build.with_options(use_ninja=shutil.which("ninja") is not None)},
    )


if __name__ == "__main__":
    main()
