"""``torch.compile(model, backend="fused_acts")``: in each graph that dynamo
captures, the sites that patch() fuses (_recognize.py) become fused ops,
and Inductor compiles the rest. It reaches code that torch.fx cannot trace
but dynamo can (data-dependent control flow breaks a graph, not the
rewrite), and it keeps dynamo's fullgraph, dynamic shapes and training
(the fused ops' autograd runs through AOTAutograd).

The name is registered through the torch_dynamo_backends entry point
(pyproject.toml), which dynamo reads on first use, so that importing
fused_acts does not import dynamo; ``backend=fused_acts.compile_backend``
works without the installed entry point too."""

from ._recognize import rewrite


def compile_backend(gm, example_inputs):
    """A dynamo backend: fused_acts' rewrite, then Inductor."""
    from torch._inductor.compile_fx import compile_fx

    if rewrite(gm.graph, dict(gm.named_modules())):
        gm.graph.lint()
        gm.recompile()
    return compile_fx(gm, example_inputs)
