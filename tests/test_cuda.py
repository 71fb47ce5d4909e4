"""What only a GPU can show: streams, devices, CUDA graphs, alignment paths
and tensors past 2^31 elements. Skipped without CUDA."""

import pytest
import torch
import torch.nn.functional as F
from reference import GATED, UNARY

import fused_acts

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64])
def test_silu_and_swiglu_match_eager_bit_for_bit(dtype):
    """SiLU keeps eager's formula, so CUDA results are eager's exactly."""
    x = torch.randn(3, 1000, device="cuda", dtype=dtype) * 4
    u = torch.randn_like(x)
    g = torch.randn_like(x)
    assert torch.equal(fused_acts.silu(x), F.silu(x))
    assert torch.equal(torch.ops.fused_acts.silu_backward(g, x), torch.ops.aten.silu_backward(g, x))
    assert torch.equal(fused_acts.swiglu(x, u), F.silu(x) * u)


@pytest.mark.parametrize("offset", [0, 1, 3])
@pytest.mark.parametrize("cols", [8, 13, 64])
def test_vector_and_scalar_paths(offset, cols):
    """Aligned rows take 16-byte vectors; misaligned starts and odd row
    lengths take the scalar path. Both must write every element exactly once."""
    base = torch.randn(4 * (2 * cols + offset + 5), device="cuda", dtype=torch.bfloat16)
    rows = base[offset : offset + 4 * (2 * cols + 5)].view(4, 2 * cols + 5)
    gate, up = rows[:, :cols], rows[:, cols : 2 * cols]
    out = fused_acts.swiglu(gate, up)
    assert torch.equal(out, F.silu(gate) * up)
    flat = base[offset : offset + 1001]
    assert torch.equal(fused_acts.silu(flat), F.silu(flat))


def test_non_default_stream():
    x = torch.randn(1 << 20, device="cuda")
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        out = fused_acts.gelu(x, "tanh")
        grad = torch.ops.fused_acts.gelu_backward(torch.ones_like(x), x, "tanh")
    torch.cuda.current_stream().wait_stream(stream)
    torch.testing.assert_close(out, F.gelu(x, approximate="tanh"))
    ref = torch.ops.aten.gelu_backward(torch.ones_like(x), x, approximate="tanh")
    torch.testing.assert_close(grad, ref)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_second_device():
    x = torch.randn(4096, device="cuda:1")
    with torch.cuda.device(0):
        out = fused_acts.mish(x)
    assert out.device == x.device
    torch.testing.assert_close(out, F.mish(x))


def test_cuda_graphs_reduce_overhead():
    torch._dynamo.reset()

    def step(x):
        return (fused_acts.swiglu(x) + fused_acts.gelu(x[..., :64])).sum()

    compiled = torch.compile(step, mode="reduce-overhead", fullgraph=True)
    for _ in range(3):
        x = torch.randn(32, 128, device="cuda", requires_grad=True)
        out = compiled(x)
        (grad,) = torch.autograd.grad(out, x)
        ref_x = x.detach().requires_grad_()
        ref = step(ref_x)
        (ref_grad,) = torch.autograd.grad(ref, ref_x)
        torch.testing.assert_close(out, ref)
        torch.testing.assert_close(grad, ref_grad)


@pytest.mark.slow
def test_more_than_2_31_elements():
    """bf16, 2^32 + 2^20 + 7 elements: 64-bit indexing end to end. Its packed
    view has more than 2^31 rows, past the engine's 32-bit row division."""
    n = (1 << 32) + (1 << 20) + 7
    try:
        x = torch.empty(n, device="cuda", dtype=torch.bfloat16)
        x.uniform_(-6, 6)
        out = fused_acts.silu(x)
    except torch.OutOfMemoryError:
        pytest.skip("not enough GPU memory")
    for start in (0, (1 << 31) - 4096, (1 << 32) - 4096, n - 4096):
        window = slice(start, start + 4096)
        assert torch.equal(out[window], F.silu(x[window]))
    del out
    packed = x[: (n - 1)].view(-1, 2)  # even last dim, over 2^31 rows
    out = fused_acts.swiglu(packed)
    for start in (0, (1 << 31) - 2048, out.shape[0] - 2048):
        rows = packed[start : start + 2048]
        assert torch.equal(out[start : start + 2048, 0], F.silu(rows[:, 0]) * rows[:, 1])


@pytest.mark.parametrize("name", list(UNARY) + list(GATED))
def test_every_op_on_cuda_matches_cpu(name):
    """The same math header on both backends: CUDA agrees with the CPU to fp32 rounding."""
    x = torch.randn(64, 130, dtype=torch.float64) * 3
    fused = (UNARY.get(name) or GATED[name])[0]
    cpu = fused(x)
    cuda = fused(x.cuda()).cpu()
    torch.testing.assert_close(cuda, cpu, rtol=1e-13, atol=1e-300)
