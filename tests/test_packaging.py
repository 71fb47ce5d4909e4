"""The release path: an sdist that holds every source, a wheel built from it
that installs and runs outside the source tree, and a clear error when the
installed torch is not the one the kernels were built against."""

import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import torch
from helpers import subprocess_env

import fused_acts
from fused_acts import _extension

ROOT = Path(fused_acts.__file__).resolve().parents[1]


def run(args, **kwargs):
    result = subprocess.run([str(a) for a in args], capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


@pytest.mark.slow
def test_wheel_from_sdist_installs_and_runs_outside_the_tree(tmp_path):
    """python -m build: the sdist, then a wheel built from it (CPU kernels only,
    to save time), installed into a folder of its own and imported from elsewhere."""
    dist = tmp_path / "dist"
    run([sys.executable, "-m", "build", "--no-isolation", "--outdir", dist, ROOT],
        env={**os.environ, "FUSED_ACTS_CUDA": "0"})  # fmt: skip
    (sdist,) = dist.glob("*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = archive.getnames()
    for source in (
        "csrc/op_list.h",
        "csrc/cpu/elementwise.h",
        "csrc/cuda/elementwise.cuh",
        "csrc/autograd/plain.cpp",
        "csrc/ops/plain.h",
    ):
        assert any(name.endswith(source) for name in names), source
    assert not any(name.endswith("_built_with.py") for name in names)
    (wheel,) = dist.glob("*.whl")
    site = tmp_path / "site"
    run([sys.executable, "-m", "pip", "install", "--no-deps", "--target", site, wheel])
    libraries = sorted((site / "fused_acts").glob("_*.so"))
    assert len(libraries) >= 2, libraries
    for library in libraries:
        assert ".debug_info" not in sections(library), library.name
    script = (
        "import torch, fused_acts\n"
        "x = torch.randn(5, 8, requires_grad=True)\n"
        "fused_acts.swiglu(x).sum().backward()\n"
        "torch.testing.assert_close(fused_acts.swiglu(x), torch.nn.functional.silu(x[:, :4]) * x[:, 4:])\n"
        "print(fused_acts.__file__, fused_acts.__version__)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = run([sys.executable, "-c", script], env={**env, "PYTHONPATH": str(site)}, cwd=tmp_path)
    assert out.startswith(str(site)) and fused_acts.__version__ in out


def sections(library):
    """The names of a shared library's ELF sections."""
    return set(re.findall(r"\]\s+(\.\S+)", run(["readelf", "--section-headers", "--wide", library])))


def test_built_extensions_carry_debug_information_only_when_asked():
    """Python's own CFLAGS carry -g, which made the build 10x larger; the
    build turns it off unless FUSED_ACTS_DEBUG=1, which it records."""
    from fused_acts._built_with import DEBUG

    libraries = sorted(Path(fused_acts.__file__).parent.glob("_*.so"))
    assert {"_C", f"_cpu_{_extension.cpu_capability}"} <= {library.name.split(".")[0] for library in libraries}
    for library in libraries:
        names = sections(library)
        assert ".text" in names, (library.name, names)
        assert (".debug_info" in names) == DEBUG, (library.name, sorted(names))


def test_a_missing_best_cpu_build_is_a_warning():
    levels = ("avx512_bf16", "avx512", "avx2", "default")
    with pytest.warns(
        UserWarning, match="runs the avx512_bf16 CPU kernels best, but they were not built; using the slower avx2"
    ):
        assert _extension.pick_cpu_build(levels, ["avx2", "default"]) == "avx2"


def test_no_cpu_build_this_cpu_runs_is_a_clear_import_error():
    with pytest.raises(ImportError, match="no CPU kernels were built for avx2, default, the builds this CPU runs"):
        _extension.pick_cpu_build(("avx2", "default"), [])


def test_the_best_cpu_build_loads_without_a_word(recwarn):
    assert _extension.pick_cpu_build(("avx2", "default"), ["avx2", "default"]) == "avx2"
    assert not recwarn.list


def test_build_records_the_torch_it_was_built_against():
    assert _extension._built_with() == torch.__version__


def test_another_torch_is_a_clear_import_error():
    with pytest.raises(ImportError) as info:
        _extension.check_torch_version("2.4.0", torch.__version__)
    message = str(info.value)
    assert f"built against torch 2.4.0 but torch {torch.__version__} is installed" in message
    assert _extension.REBUILD in message


def test_import_checks_the_torch_version():
    script = (
        "import sys, types\n"
        "record = types.ModuleType('fused_acts._built_with')\n"
        "record.TORCH_VERSION = '2.4.0'\n"
        "sys.modules['fused_acts._built_with'] = record\n"
        "import fused_acts\n"
    )
    result = subprocess.run([sys.executable, "-c", script], env=subprocess_env(), capture_output=True, text=True)
    assert result.returncode != 0
    assert "ImportError: fused_acts was built against torch 2.4.0" in result.stderr
