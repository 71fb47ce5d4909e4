"""Checks that need several processes, run by test_distributed.py as
    python -m torch.distributed.run --standalone --nproc-per-node 2 distributed_checks.py OUT.json
on the CPU (gloo). Every rank runs every check; rank 0 writes, per check,
"ok" or what failed, so that each check is a test of its own."""

import copy
import json
import os
import sys
import traceback

import torch
import torch.distributed as dist
from reference import GATED, UNARY
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard
from torch.distributed.tensor import DTensor, Partial, Replicate, Shard, distribute_tensor
from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel, parallelize_module

import fused_acts
from fused_acts.nn import SwiGLUFFN
from fused_acts.tensor_parallel import swiglu_ffn_plan
from fused_acts.testing import Sizes, tiny_config


class Skip(Exception):
    """A check that cannot run here: its test is skipped, with this reason."""


PLACEMENTS = {"replicate": Replicate(), "shard0": Shard(0), "shard1": Shard(1), "partial": Partial()}


def forms():
    """(name, fn, number of inputs, inputs' last dim) for every op form."""
    for name, case in UNARY.items():
        yield name, case.fused, 1
    for name, case in GATED.items():
        yield name, case.fused, 2
        yield f"{name}_packed", case.fused, 1


def distribute(full, mesh, placement):
    if isinstance(placement, Partial):
        # Each rank holds a part; their sum is the full tensor.
        return DTensor.from_local(full / mesh.size(), mesh, [placement], run_check=False)
    return distribute_tensor(full, mesh, [placement])


def check_dtensor(mesh, fn, num_inputs, placement):
    """Forward and backward on DTensors equal those on the full tensors."""
    torch.manual_seed(0)
    inputs = [torch.randn(6, 8, dtype=torch.float64) for _ in range(num_inputs)]
    grad_out = torch.randn_like(fn(*inputs))
    leaves = [t.clone().requires_grad_() for t in inputs]
    expected = fn(*leaves)
    expected_grads = torch.autograd.grad(expected, leaves, grad_out)

    dleaves = [distribute(t, mesh, placement).detach().requires_grad_() for t in inputs]
    out = fn(*dleaves)
    assert isinstance(out, DTensor)
    grads = torch.autograd.grad(out, dleaves, distribute_tensor(grad_out, mesh, out.placements))
    torch.testing.assert_close(out.full_tensor(), expected)
    for grad, expected_grad in zip(grads, expected_grads):
        torch.testing.assert_close(grad.full_tensor(), expected_grad)


def check_xielu_dtensor(mesh, placement):
    """xielu on a DTensor x with replicated coefficients: forward, x's gradient
    and the coefficients' (Partial sums where x is sharded) equal the full tensors'."""
    torch.manual_seed(0)
    x = torch.randn(6, 8, dtype=torch.float64)
    coefficients = [torch.tensor([0.8], dtype=torch.float64), torch.tensor([1.3], dtype=torch.float64)]
    grad_out = torch.randn(6, 8, dtype=torch.float64)
    leaves = [t.clone().requires_grad_() for t in (x, *coefficients)]
    expected = fused_acts.xielu(*leaves)
    expected_grads = torch.autograd.grad(expected, leaves, grad_out)
    dleaves = [distribute(x, mesh, placement).detach().requires_grad_()]
    dleaves += [distribute_tensor(c, mesh, [Replicate()]).detach().requires_grad_() for c in coefficients]
    out = fused_acts.xielu(*dleaves)
    grads = torch.autograd.grad(out, dleaves, distribute_tensor(grad_out, mesh, out.placements))
    torch.testing.assert_close(out.full_tensor(), expected)
    for grad, expected_grad in zip(grads, expected_grads):
        torch.testing.assert_close(grad.full_tensor(), expected_grad)


def grads_of(module, x, grad_out):
    """Output, input gradient and parameter gradients (as full tensors) of one forward+backward."""
    x = x.clone().requires_grad_()
    out = module(x)
    out.backward(grad_out)
    full = {n: p.grad.full_tensor() if isinstance(p.grad, DTensor) else p.grad for n, p in module.named_parameters()}
    return out.detach(), x.grad, full


def assert_same_module(parallel, reference, in_features):
    """parallel computes what reference does: outputs, input gradient and weight gradients."""
    torch.manual_seed(1)
    x = torch.randn(5, in_features)
    grad_out = torch.randn(5, in_features)
    for actual, expected in zip(grads_of(parallel, x, grad_out), grads_of(reference, x, grad_out)):
        torch.testing.assert_close(actual, expected)


def check_swiglu_ffn_packed_style(mesh):
    torch.manual_seed(0)
    ffn = SwiGLUFFN(16, 24, bias=True)
    reference = copy.deepcopy(ffn)
    parallelize_module(ffn, mesh, swiglu_ffn_plan())
    assert_same_module(ffn, reference, 16)
    # The weights keep their layout: the full tensor is the unsharded module's.
    torch.testing.assert_close(ffn.gate_up_proj.weight.full_tensor(), reference.gate_up_proj.weight)


def check_swiglu_ffn_plain_colwise_is_refused(mesh):
    ffn = SwiGLUFFN(16, 24)
    parallelize_module(ffn, mesh, {"gate_up_proj": ColwiseParallel(), "down_proj": RowwiseParallel()})
    try:
        ffn(torch.randn(5, 16))
    except ValueError as error:
        assert "splits gate from up" in str(error) and "PackedColwiseParallel" in str(error), error
    else:
        raise AssertionError("a plain ColwiseParallel on gate_up_proj ran")


def tiny_llama_config():
    try:
        import transformers  # noqa: F401
    except ImportError:
        raise Skip("transformers is not installed") from None
    return tiny_config("llama", Sizes(hidden=16, intermediate=24))


def check_patched_llama_mlp_tensor_parallel(mesh):
    config = tiny_llama_config()  # first: it skips where transformers is missing
    from transformers.models.llama.modeling_llama import LlamaMLP

    torch.manual_seed(0)
    mlp = LlamaMLP(config)
    reference = copy.deepcopy(mlp)
    assert fused_acts.patch(mlp) == {"SwiGLU": 1, "SiLU": 1}
    plan = {"gate_proj": ColwiseParallel(), "up_proj": ColwiseParallel(), "down_proj": RowwiseParallel()}
    parallelize_module(mlp, mesh, plan)
    assert_same_module(mlp, reference, 16)


def check_patched_llama_fsdp2(mesh, recompute):
    """fully_shard on a patched tiny Llama trains as the unpatched one does,
    over two optimizer steps: FSDP2 unshards the parameters again for the
    backward, recomputing or not."""
    config = tiny_llama_config()  # first: it skips where transformers is missing
    import transformers

    torch.manual_seed(0)
    reference = transformers.LlamaForCausalLM(config)
    model = copy.deepcopy(reference)
    assert fused_acts.patch(model, recompute=recompute) == {"SwiGLU": 2, "SiLU": 2}
    ids = torch.randint(1, 128, (2, 12), generator=torch.Generator().manual_seed(dist.get_rank()))
    losses = []
    for m in (reference, model):
        for layer in m.model.layers:
            fully_shard(layer, mesh=mesh)
        fully_shard(m, mesh=mesh)
        optimizer = torch.optim.AdamW(m.parameters(), lr=1e-2)
        steps = []
        for _ in range(2):
            loss = m(input_ids=ids, labels=ids).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            steps.append(loss.detach())
        losses.append(torch.stack(steps))
    torch.testing.assert_close(losses[1], losses[0])
    for (name, p), (_, q) in zip(model.named_parameters(), reference.named_parameters()):
        torch.testing.assert_close(p.full_tensor(), q.full_tensor(), msg=name)


def checks(mesh):
    for name, fn, num_inputs in forms():
        for label, placement in PLACEMENTS.items():
            yield f"dtensor-{name}-{label}", lambda fn=fn, n=num_inputs, p=placement: check_dtensor(mesh, fn, n, p)
    for label, placement in PLACEMENTS.items():
        yield f"dtensor-xielu-{label}", lambda p=placement: check_xielu_dtensor(mesh, p)
    yield "tp-swiglu_ffn-packed_style", lambda: check_swiglu_ffn_packed_style(mesh)
    yield "tp-swiglu_ffn-plain_colwise_refused", lambda: check_swiglu_ffn_plain_colwise_is_refused(mesh)
    yield "tp-patched_llama_mlp", lambda: check_patched_llama_mlp_tensor_parallel(mesh)
    yield "fsdp2-patched_llama", lambda: check_patched_llama_fsdp2(mesh, recompute=False)
    yield "fsdp2-patched_llama-recompute", lambda: check_patched_llama_fsdp2(mesh, recompute=True)


def main(out_path):
    dist.init_process_group("gloo")
    mesh = init_device_mesh("cpu", (dist.get_world_size(),))
    results = {}
    for name, check in checks(mesh):
        try:
            check()
            results[name] = "ok"
        except Skip as reason:
            results[name] = f"skip: {reason}"
        except Exception:
            results[name] = traceback.format_exc()
    if dist.get_rank() == 0:
        with open(out_path, "w") as f:
            json.dump(results, f)
    dist.destroy_process_group()
    # Skip interpreter teardown: a gloo worker thread still releasing a finished
    # collective can abort the process while Python finalizes (the race in
    # pytorch/pytorch#179291), which would fail a run whose checks all passed.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1])
