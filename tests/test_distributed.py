"""DTensor, FSDP2 and tensor parallelism, in 2 CPU processes (gloo): one
launch runs every check of distributed_checks.py, and each is a test here."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import subprocess_env

pytestmark = pytest.mark.skipif(
    not (torch.distributed.is_available() and torch.distributed.is_gloo_available()), reason="no gloo"
)

HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    out = tmp_path_factory.mktemp("distributed") / "results.json"
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    result = subprocess.run(
        [*launch, str(HERE / "distributed_checks.py"), str(out)],
        env=subprocess_env(OMP_NUM_THREADS="1"), cwd=HERE, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return json.loads(out.read_text())


def check_names():
    sys.path.insert(0, str(HERE))
    import distributed_checks

    class Mesh:
        def size(self):
            return 2

    return [name for name, _ in distributed_checks.checks(Mesh())]


@pytest.mark.parametrize("check", check_names())
def test_distributed(check, results):
    if results[check].startswith("skip: "):
        pytest.skip(results[check].removeprefix("skip: "))
    assert results[check] == "ok", results[check]
