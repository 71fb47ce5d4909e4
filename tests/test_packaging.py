"""The release path: an sdist that holds every source, a wheel built from it
that installs and runs outside the source tree, and a clear error when the
installed torch is not the one the kernels were built against."""

import os
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
        "csrc/autograd/kernels.cpp",
    ):
        assert any(name.endswith(source) for name in names), source
    assert not any(name.endswith("_built_with.py") for name in names)
    (wheel,) = dist.glob("*.whl")
    site = tmp_path / "site"
    run([sys.executable, "-m", "pip", "install", "--no-deps", "--target", site, wheel])
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
