"""Bad inputs: every one raises before any work, with a message that names
the op, the argument and the problem, the same in eager, under
torch.compile and on fake tensors."""

import subprocess
import sys

import pytest
import torch
from helpers import subprocess_env

import fused_acts
from fused_acts import nn as fnn


def rand(device, *shape):
    return torch.randn(shape, device=device)


def bad_inputs():
    """(id, call(device), exception, message) for every bad input."""
    for dtype in (torch.int64, torch.bool, torch.complex64):
        name = str(dtype).removeprefix("torch.")
        msg = f"must be float32, float64, bfloat16 or float16, got {name}"

        def bad(device, dtype=dtype):
            return torch.ones(3, 4, device=device, dtype=dtype)

        yield f"gelu-{name}", lambda d, bad=bad: fused_acts.gelu(bad(d)), TypeError, f"gelu: x {msg}"
        yield f"silu-{name}", lambda d, bad=bad: fused_acts.silu(bad(d)), TypeError, f"silu: x {msg}"
        yield f"mish-{name}", lambda d, bad=bad: fused_acts.mish(bad(d)), TypeError, f"mish: x {msg}"
        yield f"swiglu_packed-{name}", lambda d, bad=bad: fused_acts.swiglu(bad(d)), TypeError, f"swiglu: x {msg}"
        yield (
            f"swiglu-{name}",
            lambda d, bad=bad: fused_acts.swiglu(bad(d), rand(d, 3, 4)),
            TypeError,
            f"swiglu: gate {msg}",
        )
    yield (
        "swiglu-shapes",
        lambda d: fused_acts.swiglu(rand(d, 3, 4), rand(d, 3, 5)),
        ValueError,
        r"swiglu: gate and up must have the same shape, got \[3, 4\] and \[3, 5\]",
    )
    yield (
        "glu-shapes",
        lambda d: fused_acts.glu(rand(d, 3, 4), rand(d, 3, 5)),
        ValueError,
        r"glu: value and gate must have the same shape, got \[3, 4\] and \[3, 5\]",
    )
    yield (
        "glu-dtypes",
        lambda d: fused_acts.glu(rand(d, 3, 4).double(), rand(d, 3, 4)),
        TypeError,
        "glu: value and gate must have the same dtype, got float64 and float32",
    )
    yield (
        "glu-value-int",
        lambda d: fused_acts.glu(rand(d, 3, 4).int(), rand(d, 3, 4)),
        TypeError,
        "glu: value must be float32, float64, bfloat16 or float16, got int32",
    )
    yield (
        "geglu-shapes",
        lambda d: fused_acts.geglu(rand(d, 3, 4), rand(d, 3, 5)),
        ValueError,
        r"geglu: gate and up must have the same shape, got \[3, 4\] and \[3, 5\]",
    )
    yield (
        "swiglu-dtypes",
        lambda d: fused_acts.swiglu(rand(d, 3, 4), rand(d, 3, 4).double()),
        TypeError,
        "swiglu: gate and up must have the same dtype, got float32 and float64",
    )
    yield (
        "swiglu_packed-odd",
        lambda d: fused_acts.swiglu(rand(d, 3, 5)),
        ValueError,
        r"swiglu: packed x must have an even last dim \(gate‖up\), got shape \[3, 5\]",
    )
    yield (
        "swiglu_packed-0-dim",
        lambda d: fused_acts.swiglu(rand(d)),
        ValueError,
        r"swiglu: packed x must have an even last dim \(gate‖up\), got shape \[\]",
    )
    yield (
        "gelu-approximate",
        lambda d: fused_acts.gelu(rand(d, 3, 4), "exact"),
        ValueError,
        "gelu: approximate must be 'none' or 'tanh', got 'exact'",
    )
    yield (
        "geglu-approximate",
        lambda d: fused_acts.geglu(rand(d, 3, 4), rand(d, 3, 4), "exact"),
        ValueError,
        "geglu: approximate must be 'none' or 'tanh', got 'exact'",
    )
    yield (
        "swish-beta",
        lambda d: fused_acts.swish(rand(d, 3, 4), float("inf")),
        ValueError,
        "swish: beta must be finite, got inf",
    )
    yield (
        "swish_backward-beta",
        lambda d: torch.ops.fused_acts.swish_backward(rand(d, 3, 4), rand(d, 3, 4), float("nan")),
        ValueError,
        "swish_backward: beta must be finite, got nan",
    )
    for limit in (0.0, -1.0, float("nan")):
        yield (
            f"clamped_swiglu-limit-{limit}",
            lambda d, limit=limit: fused_acts.clamped_swiglu(rand(d, 3, 4), limit=limit),
            ValueError,
            f"clamped_swiglu: limit must be positive, got {limit:g}",
        )
    yield (
        "clamped_swiglu_backward-alpha",
        lambda d: torch.ops.fused_acts.clamped_swiglu_backward(*(rand(d, 3, 4) for _ in range(3)), float("inf")),
        ValueError,
        "clamped_swiglu_backward: alpha must be finite, got inf",
    )
    yield (
        "clamped_swiglu-up_offset",
        lambda d: fused_acts.clamped_swiglu(rand(d, 3, 4), rand(d, 3, 4), up_offset=float("-inf")),
        ValueError,
        "clamped_swiglu: up_offset must be finite, got -inf",
    )
    yield (
        "clamped_swiglu_interleaved-odd",
        lambda d: fused_acts.clamped_swiglu(rand(d, 3, 5), interleaved=True),
        ValueError,
        r"clamped_swiglu: packed x must have an even last dim \(gate and up interleaved\), got shape \[3, 5\]",
    )
    yield (
        "glu_packed-odd",
        lambda d: fused_acts.glu(rand(d, 3, 5)),
        ValueError,
        r"glu: packed x must have an even last dim \(up‖gate\), got shape \[3, 5\]",
    )
    yield (
        "reglu_interleaved_up_first-odd",
        lambda d: fused_acts.reglu(rand(d, 3, 5), interleaved=True, up_first=True),
        ValueError,
        r"reglu: packed x must have an even last dim \(up and gate interleaved\), got shape \[3, 5\]",
    )
    yield (
        "reglu-up_first_with_up",
        lambda d: fused_acts.reglu(rand(d, 3, 4), rand(d, 3, 4), up_first=True),
        ValueError,
        "reglu: up_first applies to one packed tensor, but up was given too",
    )
    yield (
        "geglu-interleaved_with_up",
        lambda d: fused_acts.geglu(rand(d, 3, 4), rand(d, 3, 4), interleaved=True),
        ValueError,
        "geglu: interleaved applies to one packed tensor, but up was given too",
    )
    yield (
        "swiglu_packed_backward_-transposed",
        lambda d: torch.ops.fused_acts.swiglu_packed_backward_(rand(d, 3, 2), rand(d, 4, 3).mT),
        ValueError,
        r"swiglu_backward: x must have a row stride to take its gradient in place, got strides \[1, 3\]",
    )
    yield (
        "swiglu_packed_backward_-overlap",
        lambda d: (lambda x: torch.ops.fused_acts.swiglu_packed_backward_(x[:, :2], x))(rand(d, 3, 4)),
        ValueError,
        "swiglu_backward: grad and x must not overlap to write x's gradient in place",
    )
    yield (
        "swiglu_packed_backward_-self_overlap",
        lambda d: torch.ops.fused_acts.swiglu_packed_backward_(rand(d, 4, 4), rand(d, 1, 8).expand(4, 8)),
        ValueError,
        r"swiglu_backward: x overlaps itself \(an expanded tensor's elements share memory\), so its gradient cannot "
        r"be written in place, got strides \[0, 1\]",
    )
    yield (
        "silu_backward-shapes",
        lambda d: torch.ops.fused_acts.silu_backward(rand(d, 3, 5), rand(d, 3, 4)),
        ValueError,
        r"silu_backward: grad and x must have the same shape, got \[3, 5\] and \[3, 4\]",
    )
    yield (
        "swiglu-devices",
        lambda d: fused_acts.swiglu(rand(d, 3, 4), rand("cpu", 3, 4)),
        RuntimeError,
        "swiglu: gate and up must be on the same device, got cuda:0 and cpu",
    )


BAD_INPUTS = {case[0]: case[1:] for case in bad_inputs()}
assert len(BAD_INPUTS) == len(list(bad_inputs())), "two bad-input cases share a name"


@pytest.mark.parametrize("mode", ["eager", "compile"])
@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_inputs_raise_clear_errors(case, mode, device):
    call, error, message = BAD_INPUTS[case]
    if case == "swiglu-devices" and device == "cpu":
        pytest.skip("needs a second device")

    def fn():
        return call(device)

    if mode == "compile":
        torch._dynamo.reset()
        fn = torch.compile(fn, fullgraph=True, backend="aot_eager")
    with pytest.raises(Exception) as info:
        fn()
    # torch.compile wraps errors raised while tracing; the message survives.
    assert isinstance(info.value, error) or mode == "compile", info.value
    assert info.match(message)


def test_fake_kernels_check_inputs():
    meta = torch.empty(3, 4, device="meta")
    with pytest.raises(ValueError, match=r"swiglu: gate and up must have the same shape, got \[3, 4\] and \[3, 5\]"):
        torch.ops.fused_acts.swiglu(meta, torch.empty(3, 5, device="meta"))
    with pytest.raises(TypeError, match="silu: x must be float32, float64, bfloat16 or float16, got int32"):
        torch.ops.fused_acts.silu(torch.empty(3, device="meta", dtype=torch.int32))
    with pytest.raises(ValueError, match="gelu_backward: approximate must be 'none' or 'tanh', got 'exact'"):
        torch.ops.fused_acts.gelu_backward(meta, meta, approximate="exact")
    assert torch.ops.fused_acts.swiglu_packed(meta).shape == (3, 2)


def test_no_work_on_bad_input():
    """A bad call raises before anything is written or allocated: the
    in-place backward, given a grad of the wrong shape, leaves x as it was,
    and neither it nor a forward allocates an output."""
    x, bad_grad, bad_up = torch.randn(4, 8), torch.randn(4, 3), torch.randn(4, 3)
    before = x.clone()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        with pytest.raises(ValueError, match="swiglu_backward: grad and gate must have the same shape"):
            torch.ops.fused_acts.swiglu_packed_backward_(bad_grad, x)
        with pytest.raises(ValueError, match="swiglu: gate and up must have the same shape"):
            torch.ops.fused_acts.swiglu(x, bad_up)
    assert torch.equal(x, before)
    allocations = [e.name for e in prof.events() if e.name.startswith("aten::empty")]
    assert not allocations, allocations


@pytest.mark.parametrize("module", [fnn.GELU, fnn.GeGLU])
def test_modules_check_approximate(module):
    with pytest.raises(ValueError, match=f"{module.__name__}: approximate must be 'none' or 'tanh', got 'exact'"):
        module("exact")


def test_swish_module_checks_beta():
    with pytest.raises(ValueError, match="Swish: beta must be finite, got inf"):
        fnn.Swish(float("inf"))


def test_clamped_swiglu_module_checks_its_params():
    with pytest.raises(ValueError, match="ClampedSwiGLU: limit must be positive, got 0"):
        fnn.ClampedSwiGLU(limit=0)
    with pytest.raises(ValueError, match="ClampedSwiGLU: alpha must be finite, got nan"):
        fnn.ClampedSwiGLU(alpha=float("nan"))
    with pytest.raises(ValueError, match="ClampedSwiGLU: up_offset must be finite, got inf"):
        fnn.ClampedSwiGLU(up_offset=float("inf"))


def run_python(script, **variables):
    return subprocess.run(
        [sys.executable, "-c", script], env=subprocess_env(**variables), capture_output=True, text=True
    )


def test_bad_nontemporal_threshold_is_a_clear_error():
    result = run_python(
        "import torch, fused_acts; fused_acts.silu(torch.ones(3))", FUSED_ACTS_NONTEMPORAL_MIN_BYTES="lots"
    )
    assert result.returncode != 0
    assert (
        "FUSED_ACTS_NONTEMPORAL_MIN_BYTES must be a byte count, 0 (always) or -1 (never), got 'lots'" in result.stderr
    )


def test_unknown_cpu_build_is_a_clear_import_error():
    result = run_python("import fused_acts", FUSED_ACTS_CPU_KERNELS="avx9000")
    assert result.returncode != 0
    assert "no CPU kernels were built for avx9000" in result.stderr
