"""The CPU kernels are built once per SIMD level (default, avx2, avx512,
avx512_bf16), and the import loads the best one this CPU runs. Here every
other build that the CPU can run takes the tests marked cpu_builds, in a
subprocess, against eager running at the same SIMD width."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import subprocess_env

import fused_acts


def cpu_has(feature):
    return getattr(torch.cpu, f"_is_{feature}_supported", lambda: False)()


# Each CPU build: whether this CPU runs it, and the ATen capability whose
# eager kernels share its SIMD width, and so its results bit for bit.
CPU_BUILDS = {
    "default": (lambda: True, "default"),
    "avx2": (lambda: cpu_has("avx2"), "avx2"),
    "avx512": (lambda: cpu_has("avx512"), "avx512"),
    "avx512_bf16": (lambda: cpu_has("avx512_bf16"), "avx512"),
}


def run_marked_tests_in_subprocess(level, **variables):
    """The CPU cases of the tests marked cpu_builds, in a subprocess that loads
    the `level` CPU build, eager running at the same SIMD width."""
    if fused_acts._extension._library_path(f"_cpu_{level}") is None:
        pytest.skip(f"no {level} build on this platform")
    supported, aten_capability = CPU_BUILDS[level]
    if not supported():
        pytest.skip(f"this CPU cannot run {level}")
    tests = Path(__file__).parent
    pytest_args = ["-q", "-x", "-p", "no:cacheprovider", "-m", "cpu_builds and not cuda", str(tests)]
    script = (
        "import sys, pytest, fused_acts\n"
        f"assert fused_acts._extension.cpu_capability == {level!r}\n"
        f"sys.exit(pytest.main({pytest_args!r}))"
    )
    env = subprocess_env(FUSED_ACTS_CPU_KERNELS=level, ATEN_CPU_CAPABILITY=aten_capability, **variables)
    result = subprocess.run([sys.executable, "-c", script], env=env, cwd=tests, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert " passed" in result.stdout.splitlines()[-1], result.stdout[-3000:]


@pytest.mark.slow
@pytest.mark.parametrize("level", CPU_BUILDS)
def test_each_cpu_build_matches_eager_in_subprocess(level):
    """The import loads the best CPU build; the others run here."""
    if level == fused_acts._extension.cpu_capability:
        pytest.skip("the build this process runs")
    run_marked_tests_in_subprocess(level)


@pytest.mark.slow
@pytest.mark.parametrize("level", [level for level in CPU_BUILDS if level != "default"])
def test_nontemporal_stores_match_eager_in_subprocess(level):
    """Calls that outgrow the last-level cache store past it (non-temporal
    stores, AVX2 and up). A threshold of 0 bytes sends every call there,
    among them outputs whose rows start unaligned and so fall back."""
    run_marked_tests_in_subprocess(level, FUSED_ACTS_NONTEMPORAL_MIN_BYTES="0")
