"""The monitored forwards and fused_acts.monitor: every op, layout and dtype
adds exactly reference.py's ref_monitor to its statistics, over several
calls and threads, and returns the plain forward's output bit for bit; then
the monitor on hand-written FFNs and transformers models against a hook
reference on the unpatched model, training, compile, report and plot."""

import copy

import pytest
import torch
import torch.nn.functional as F
from helpers import SPECIAL_VALUES, make_input, same_bits
from reference import PACKINGS, pack, ref_monitor
from torch import nn

import fused_acts
from fused_acts.testing import Sizes, tiny_config

_OPS = torch.ops.fused_acts

# (op family, params) for each activation as the tests name it.
UNARY_OPS = {
    "silu": ("silu", ()),
    "gelu": ("gelu", ("none",)),
    "gelu_tanh": ("gelu", ("tanh",)),
    "mish": ("mish", ()),
    "quick_gelu": ("swish", (1.702,)),
    "swish_negative_beta": ("swish", (-0.5,)),
    "relu_squared": ("relu_squared", ()),
}
GATED_OPS = {
    "swiglu": ("swiglu", ()),
    "geglu": ("geglu", ("none",)),
    "geglu_tanh": ("geglu", ("tanh",)),
    "clamped_swiglu": ("clamped_swiglu", (1.702, 7.0, 1.0)),
    "clamped_swiglu_limit_1": ("clamped_swiglu", (1.5, 1.0, 1.0)),
    "clamped_swiglu_deepseek_v4": ("clamped_swiglu", (1.0, 1.0, 0.0)),
    "glu": ("glu", ()),
    "reglu": ("reglu", ()),
}
BINS = 32
# Rows of each call: a monitor sees several batches. Wide enough that two
# threads split them.
BATCHES = [(15, 200), (1, 200), (64, 200)]


def accumulators(channels, device, bins=BINS):
    return (
        torch.zeros(6, channels, dtype=torch.float64, device=device),
        torch.zeros(bins, dtype=torch.float64, device=device),
    )


def assert_same_stats(stats, histogram, expected, expected_histogram, dtype=torch.float32):
    """Counts, amax and the histogram bit for bit; the sums within the error
    of accumulating kFlushRows (256) rows in opmath before float64: at most
    256 ulps of Σ|h| (bounded by √(rows·Σh²)) and of Σh², and the squares'
    underflow. Where h² passes opmath's range (|h| > 1.8e19 in float32),
    the opmath sum of squares is inf, as documented."""
    stats, histogram = stats.cpu(), histogram.cpu()
    assert torch.equal(stats[:3], expected[:3]), "rows, active or saturated"
    assert same_bits(stats[3], expected[3]), "amax"
    opmath = torch.finfo(torch.float64 if dtype == torch.float64 else torch.float32)
    in_range = expected.isfinite().all(0) & (expected[5] < opmath.max)
    bound = {4: 256 * opmath.eps / 2 * (expected[0] * expected[5]).sqrt(), 5: 256 * opmath.eps / 2 * expected[5]}
    for k in (4, 5):
        assert torch.equal(stats[k].isnan(), expected[k].isnan()), "a nan in the sums"
        error = (stats[k] - expected[k]).abs()[in_range]
        assert (error <= bound[k][in_range] + opmath.tiny).all(), ("sum", "sumsq")[k - 4]
    assert torch.equal(histogram, expected_histogram), "histogram"


def monitored_calls(family, params, inputs, packing=None):
    """Each inputs' (gate, up or None) through the monitored op, accumulating:
    (stats, histogram, expected, expected histogram), the outputs checked
    against the plain op bit for bit on the way."""
    first_gate = inputs[0][0]
    channels = first_gate.shape[-1] if first_gate.dim() else 1
    device = first_gate.device
    stats, histogram = accumulators(channels, device)
    expected = torch.zeros(6, channels, dtype=torch.float64)
    expected_histogram = torch.zeros(BINS, dtype=torch.float64)
    for gate, up in inputs:
        if up is None:
            args = (gate, *params)
            name = family
        elif packing is None:
            args = (gate, up, *params)
            name = family
        else:
            layout = PACKINGS[packing]
            args = (pack(gate, up, **layout), *params, layout.get("interleaved", False), layout.get("up_first", False))
            name = f"{family}_packed"
        out = getattr(_OPS, f"{name}_monitored")(*args, stats=stats, histogram=histogram)
        plain = getattr(_OPS, name)(*args)
        assert same_bits(out, plain)
        call_stats, call_histogram = ref_monitor(gate.cpu(), plain.cpu(), family, params, BINS)
        expected[0] += call_stats[0]
        expected[1:3] += call_stats[1:3]
        expected[3] = torch.where((call_stats[3] > expected[3]) | call_stats[3].isnan(), call_stats[3], expected[3])
        expected[4:] += call_stats[4:]
        expected_histogram += call_histogram
    return stats, histogram, expected, expected_histogram


DTYPES_MONITORED = [torch.float32, torch.bfloat16]


@pytest.mark.parametrize("dtype", DTYPES_MONITORED, ids=str)
@pytest.mark.parametrize("layout", ["contiguous", "row_strided", "transposed"])
@pytest.mark.parametrize("name", UNARY_OPS)
def test_unary_monitored_matches_reference(name, layout, dtype, device):
    family, params = UNARY_OPS[name]
    inputs = [(make_input(shape, layout, device, dtype), None) for shape in BATCHES]
    assert_same_stats(*monitored_calls(family, params, inputs))


@pytest.mark.parametrize("dtype", DTYPES_MONITORED, ids=str)
@pytest.mark.parametrize("packing", [None, *PACKINGS])
@pytest.mark.parametrize("name", GATED_OPS)
def test_gated_monitored_matches_reference(name, packing, dtype, device):
    family, params = GATED_OPS[name]
    inputs = [
        (make_input(shape, "row_strided", device, dtype), make_input(shape, "contiguous", device, dtype))
        for shape in BATCHES
    ]
    assert_same_stats(*monitored_calls(family, params, inputs, packing))


@pytest.mark.parametrize("dtype", [torch.float16, torch.float64], ids=str)
@pytest.mark.parametrize("name", ["gelu", "swiglu"])
def test_other_dtypes_match_reference(name, dtype, device):
    family, params = {**UNARY_OPS, **GATED_OPS}[name]
    gated = name in GATED_OPS
    inputs = [
        (
            make_input(shape, "contiguous", device, dtype),
            make_input(shape, "contiguous", device, dtype) if gated else None,
        )
        for shape in BATCHES
    ]
    assert_same_stats(*monitored_calls(family, params, inputs), dtype=dtype)


@pytest.mark.parametrize("shape", [(), (1,), (7,), (3, 0, 5), (0, 4), (2, 3, 1029)], ids=str)
def test_odd_shapes(shape, device):
    inputs = [
        (make_input(shape, "contiguous", device, torch.float32), make_input(shape, "contiguous", device, torch.float32))
    ]
    assert_same_stats(*monitored_calls("swiglu", (), inputs))
    assert_same_stats(*monitored_calls("silu", (), [(inputs[0][0], None)]))


def test_special_values(device):
    """nan: kept by amax and the sums, in no bin, neither active nor saturated; ±inf in the outer bins."""
    values = torch.tensor(SPECIAL_VALUES, device=device)
    gate = values.repeat(3, 1)
    up = values.flip(0).repeat(3, 1)
    assert_same_stats(*monitored_calls("swiglu", (), [(gate, up)]))
    assert_same_stats(*monitored_calls("gelu", ("none",), [(gate, None)]))


@pytest.mark.parametrize("threads", [1, 2])
def test_threads_lose_no_update(threads):
    """Two threads split the rows (each span is a task); the merged stats are the one-thread ones."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        x = torch.randn(512, 2 * 4096)
        inputs = [(x[:, :4096], x[:, 4096:])]
        assert_same_stats(*monitored_calls("swiglu", (), inputs, "packed"))
    finally:
        torch.set_num_threads(previous)


def test_backward_is_the_plain_ops(device):
    """The monitored ops' gradients are the plain ops', to any order."""
    x = torch.randn(4, 10, device=device, dtype=torch.float64, requires_grad=True)
    stats, histogram = accumulators(5, device)
    out = _OPS.swiglu_packed_monitored(x, False, False, stats=stats, histogram=histogram)
    grad_out = torch.randn_like(out)
    (grad,) = torch.autograd.grad(out, x, grad_out, create_graph=True)
    (expected,) = torch.autograd.grad(_OPS.swiglu_packed(x, False, False), x, grad_out, create_graph=True)
    assert torch.equal(grad, expected)
    torch.autograd.gradcheck(
        lambda x: _OPS.gelu_monitored(x, "tanh", stats=accumulators(10, device)[0], histogram=histogram), (x,)
    )


def test_versions_are_bumped(device):
    stats, histogram = accumulators(4, device)
    versions = stats._version, histogram._version
    _OPS.silu_monitored(torch.randn(3, 4, device=device), stats=stats, histogram=histogram)
    assert (stats._version, histogram._version) == (versions[0] + 1, versions[1] + 1)


# Each bad accumulator, by name: (stats, histogram) from good ones, and its error.
BAD_ACCUMULATORS = {
    "stats-float32": (lambda s, h, d: (s.float(), h), TypeError, "silu: stats must be float64, got float32"),
    "stats-shape": (lambda s, h, d: (s[:, :3], h), ValueError, r"silu: stats must have shape \[6, 4\] \(6 statistics"),
    "stats-strided": (lambda s, h, d: (s.t().contiguous().t(), h), ValueError, "silu: stats must be contiguous"),
    "histogram-float32": (lambda s, h, d: (s, h.float()), TypeError, "silu: histogram must be float64, got float32"),
    "histogram-2d": (
        lambda s, h, d: (s, h.reshape(2, -1)),
        ValueError,
        "silu: histogram must be a contiguous 1-D tensor",
    ),
    "histogram-bins": (
        lambda s, h, d: (s, torch.zeros(4097, dtype=torch.float64, device=d)),
        ValueError,
        "of at most 4096 bins",
    ),
    "stats-device": (lambda s, h, d: (s.to("meta"), h), RuntimeError, "silu: stats and x must be on the same device"),
}


@pytest.mark.parametrize("case", BAD_ACCUMULATORS)
@pytest.mark.parametrize("fake", [False, True])
def test_bad_accumulators_are_clear_errors(case, fake, device):
    make, error, message = BAD_ACCUMULATORS[case]
    stats, histogram = make(*accumulators(4, device), device)
    x = torch.randn(3, 4, device=device)
    if fake:
        if stats.device.type == "meta":
            pytest.skip("a meta tensor is on the fake x's device")
        x, stats, histogram = (t.to("meta") for t in (x, stats, histogram))
    with pytest.raises(error, match=message):
        _OPS.silu_monitored(x, stats=stats, histogram=histogram)


def test_packed_checks_come_first(device):
    stats, histogram = accumulators(2, device)
    with pytest.raises(
        ValueError, match=r"swiglu: packed x must have an even last dim \(gate‖up\), got shape \[3, 5\]"
    ):
        _OPS.swiglu_packed_monitored(torch.randn(3, 5, device=device), False, False, stats=stats, histogram=histogram)


# The monitor on whole models.


class SwiGLUFFN(nn.Module):
    """A hand-written Llama-style FFN."""

    def __init__(self, hidden=32, intermediate=48):
        super().__init__()
        self.gate_proj = nn.Linear(hidden, intermediate, bias=False)
        self.up_proj = nn.Linear(hidden, intermediate, bias=False)
        self.down_proj = nn.Linear(intermediate, hidden, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class PackedFFN(nn.Module):
    """gate‖up from one projection, split by chunk."""

    def __init__(self, hidden=32, intermediate=48):
        super().__init__()
        self.gate_up = nn.Linear(hidden, 2 * intermediate)
        self.down = nn.Linear(intermediate, hidden)

    def forward(self, x):
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(F.silu(gate) * up)


class GELUMLP(nn.Module):
    """A GPT-2-style MLP with an activation module, which patch swaps."""

    def __init__(self, hidden=32, intermediate=64):
        super().__init__()
        self.fc = nn.Linear(hidden, intermediate)
        self.act = nn.GELU(approximate="tanh")
        self.proj = nn.Linear(intermediate, hidden)

    def forward(self, x):
        return self.proj(self.act(self.fc(x)))


class Model(nn.Module):
    """Three sites, each fed x itself, so that each sees the unpatched model's inputs."""

    def __init__(self):
        super().__init__()
        self.ffn = SwiGLUFFN()
        self.packed = PackedFFN()
        self.mlp = GELUMLP()

    def forward(self, x):
        return self.ffn(x) + self.packed(x) + self.mlp(x)


def capture(model):
    """Forward hooks that keep each site's gate and h: {site: {"gate": [...], "h": [...]}}."""
    captured = {"ffn": {}, "packed": {}, "mlp.act": {}}

    def keep(site, kind, of_input=False, first_half=False):
        def hook(module, args, output):
            t = (args[0] if of_input else output).detach()
            captured[site].setdefault(kind, []).append(t.chunk(2, dim=-1)[0] if first_half else t)

        return hook

    model.ffn.gate_proj.register_forward_hook(keep("ffn", "gate"))
    model.ffn.down_proj.register_forward_hook(keep("ffn", "h", of_input=True))
    model.packed.gate_up.register_forward_hook(keep("packed", "gate", first_half=True))
    model.packed.down.register_forward_hook(keep("packed", "h", of_input=True))
    model.mlp.fc.register_forward_hook(keep("mlp.act", "gate"))
    model.mlp.proj.register_forward_hook(keep("mlp.act", "h", of_input=True))
    return captured


def total(per_call):
    """Statistics of several calls (ref_monitor's), added up as the monitor does."""
    stats = torch.stack([s for s, _ in per_call])
    out = stats.sum(0)
    out[3] = stats[:, 3].amax(0)
    return out, sum(h for _, h in per_call)


SITES = {"ffn": ("swiglu", ()), "packed": ("swiglu", ()), "mlp.act": ("gelu", ("tanh",))}


@pytest.mark.parametrize("dtype", DTYPES_MONITORED, ids=str)
def test_monitor_matches_hooks_on_the_unpatched_model(dtype):
    """The tutorials' reference: hooks on the unpatched model capture each
    site's gate and h. Counts are exact; so is amax, against the h that the
    fused op returned (hooks inside the monitor), and the sums are within
    accumulation error of the unpatched model's h."""
    torch.manual_seed(0)
    model = Model().to(dtype)
    unpatched = copy.deepcopy(model)
    reference = capture(unpatched)
    batches = [torch.randn(2, 5, 32, dtype=dtype), torch.randn(3, 32, dtype=dtype), torch.randn(1, 7, 32, dtype=dtype)]
    with torch.no_grad():
        for x in batches:
            unpatched(x)
        with fused_acts.monitor(model, bins=BINS) as mon:
            seen = capture(model)
            for x in batches:
                model(x)
    stats = mon.stats
    assert set(stats) == set(SITES)
    for name, (family, params) in SITES.items():
        s = stats[name]
        assert s.activation == ("gelu(tanh)" if family == "gelu" else family) and s.rows == 10 + 3 + 7
        for unpatched_gate, gate in zip(reference[name]["gate"], seen[name]["gate"]):
            assert torch.equal(unpatched_gate, gate)
        eager, _ = total([ref_monitor(g, h, family, params, BINS) for g, h in zip(*reference[name].values())])
        fused, histogram = total([ref_monitor(g, h, family, params, BINS) for g, h in zip(*seen[name].values())])
        assert torch.equal(s.active, eager[1].long()) and torch.equal(s.saturated, eager[2].long())
        assert torch.equal(s.histogram, histogram.long())
        assert torch.equal(s.amax, fused[3])
        rtol = 1e-5 if dtype == torch.float32 else 2e-2
        torch.testing.assert_close(s.amax, eager[3], rtol=rtol, atol=0)
        torch.testing.assert_close(s.sum, eager[4], rtol=rtol, atol=rtol * eager[5].sqrt().max().item())
        torch.testing.assert_close(s.sumsq, eager[5], rtol=rtol, atol=rtol)


def test_monitor_restores_the_model():
    model = Model()
    fused_acts.patch(model.ffn, recompute=True)
    with fused_acts.monitor(model):
        assert isinstance(model.mlp.act, fused_acts.nn.GELU)
        assert "forward" in vars(model.ffn)
    assert type(model.mlp.act) is nn.GELU and type(model.packed) is PackedFFN
    assert type(model.ffn) is not SwiGLUFFN and model.ffn._fused_acts_recompute  # patched before: stays so
    assert all("forward" not in vars(m) for m in model.modules())


def test_outside_the_monitor_nothing_is_counted():
    model = SwiGLUFFN()
    fused_acts.patch(model)
    with fused_acts.monitor(model) as mon:
        model(torch.randn(4, 32))
    model(torch.randn(4, 32))
    assert mon.stats[""].rows == 4


def test_training_is_unchanged():
    torch.manual_seed(0)
    model = Model()
    plain = copy.deepcopy(model)
    fused_acts.patch(plain)
    x = torch.randn(6, 32)
    plain(x).square().sum().backward()
    with fused_acts.monitor(model) as mon:
        model(x).square().sum().backward()
    for (name, p), q in zip(model.named_parameters(), plain.parameters()):
        assert torch.equal(p.grad, q.grad), name
    assert mon.stats["ffn"].rows == 6


def test_recompute_counts_each_forward_once():
    model = SwiGLUFFN()
    fused_acts.patch(model, recompute=True)
    with fused_acts.monitor(model) as mon:
        model(torch.randn(5, 32, requires_grad=True)).sum().backward()
    assert mon.stats[""].rows == 5


def test_under_torch_compile_sites_run_eagerly():
    torch.manual_seed(0)
    model = Model()
    x = torch.randn(4, 32)
    with fused_acts.monitor(model) as eager:
        expected = model(x)
    torch._dynamo.reset()
    with fused_acts.monitor(model) as compiled:
        out = torch.compile(model)(x)
    torch.testing.assert_close(out, expected)
    for name, s in eager.stats.items():
        assert torch.equal(compiled.stats[name].active, s.active) and compiled.stats[name].rows == s.rows


def test_a_compiled_model_is_a_clear_error():
    model = torch.compile(SwiGLUFFN())
    with pytest.raises(RuntimeError, match="monitor: the model is compiled already"):
        with fused_acts.monitor(model):
            pass


@pytest.mark.parametrize("bins", [-1, 4097, 2.0, True])
def test_bad_bins_are_clear_errors(bins):
    with pytest.raises(ValueError, match="monitor: bins must be an int from 0 to 4096"):
        fused_acts.monitor(SwiGLUFFN(), bins=bins)


def test_report_warns_of_dead_channels_and_low_activity(tmp_path):
    model = SwiGLUFFN()
    with torch.no_grad():
        model.gate_proj.weight[:3] = 0.0  # three channels whose gate is 0: never > 0
    with fused_acts.monitor(model, bins=16) as mon:
        model(torch.randn(8, 32))
    report = mon.report()
    assert report.splitlines()[0].split() == [
        "site", "activation", "rows", "channels", "active", "%", "dead", "saturated", "%", "amax", "mean", "rms"
    ]  # fmt: skip
    assert "warning: : 3 dead channels (never active) of 48" in report
    assert "% active, under" in mon.report(active_below=0.9)
    assert "warning" not in mon.report(dead_above=3)
    pytest.importorskip("matplotlib")
    fig = mon.plot(tmp_path / "activations.png")
    assert (tmp_path / "activations.png").stat().st_size > 0 and len(fig.axes) == 3


def tiny(model_type, **sizes):
    transformers = pytest.importorskip("transformers")
    config = tiny_config(model_type, Sizes(vocab=64, **sizes))
    return transformers.AutoModelForCausalLM.from_config(config).eval()


def tiny_llama():
    return tiny("llama", intermediate=48)


def tiny_gpt2():
    return tiny("gpt2")


@pytest.mark.parametrize("make, sites, gate_of", [
    (tiny_llama, [f"model.layers.{i}.mlp" for i in range(2)], lambda m, i: m.model.layers[i].mlp.gate_proj),
    (tiny_gpt2, [f"transformer.h.{i}.mlp.act" for i in range(2)], lambda m, i: m.transformer.h[i].mlp.c_fc),
], ids=["llama", "gpt2"])  # fmt: skip
def test_transformers_models(make, sites, gate_of):
    torch.manual_seed(0)
    model = make()
    unpatched = copy.deepcopy(model)
    gates = {i: [] for i in range(len(sites))}
    for i in gates:
        gate_of(unpatched, i).register_forward_hook(lambda m, a, out, i=i: gates[i].append(out.detach()))
    batches = [torch.randint(0, 64, (2, 9)), torch.randint(0, 64, (1, 5))]
    with torch.no_grad():
        logits = [unpatched(ids).logits for ids in batches]
        with fused_acts.monitor(model) as mon:
            monitored = [model(ids).logits for ids in batches]
    assert not any(
        name.startswith("Fused") or type(m).__module__.startswith("fused_acts")
        for name, m in ((type(m).__name__, m) for m in model.modules())
    )  # restored
    for out, expected in zip(monitored, logits):
        torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    assert list(mon.stats) == sites
    for i, name in enumerate(sites):
        s = mon.stats[name]
        assert s.rows == 18 + 5
        assert torch.equal(s.active, sum((g.reshape(-1, g.shape[-1]) > 0).sum(0) for g in gates[i]))


def tiny_moe(kind):
    return tiny(kind, intermediate=48)


@pytest.mark.parametrize("kind, activation", [("qwen3_moe", "swiglu"), ("gpt_oss", "clamped_swiglu(1.702, 7.0, 1.0)")])
def test_moe_experts(kind, activation):
    """The experts' gate counts each (token, expert) row it runs, at the experts module."""
    torch.manual_seed(0)
    model = tiny_moe(kind)
    ids = torch.randint(0, 64, (2, 7))
    with torch.no_grad():
        expected = model(ids).logits
        with fused_acts.monitor(model) as mon:
            logits = model(ids).logits
    torch.testing.assert_close(logits, expected, rtol=1e-5, atol=1e-5)
    assert list(mon.stats) == [f"model.layers.{i}.mlp.experts" for i in range(2)]
    for s in mon.stats.values():
        assert s.activation == activation and s.rows == 14 * 2 and s.channels == 16
