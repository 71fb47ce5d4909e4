"""A module's forward, traced by torch.fx (its submodules as leaves),
rewritten with the fused ops (_recognize.py), and run in the module's place:
the methods patch puts on a module whose forward computes fused
activations."""

import inspect

from torch import fx

from ._activation_modules import module_activation
from ._recognize import rewrite


class _LeafTracer(fx.Tracer):
    """Traces one module's forward, every submodule a leaf (patch visits each itself)."""

    def is_leaf_module(self, module, qualname):
        return True


def _traced_forward(module, defaults):
    """module's forward, traced with its defaulted arguments at their
    defaults and rewritten: (code, counts), or None where it does not trace
    or has nothing to fuse."""
    before = dict(vars(module))
    try:
        graph = _LeafTracer().trace(module, concrete_args=defaults)
    except Exception:
        return None
    finally:
        changed = vars(module).keys() != before.keys() or any(vars(module)[k] is not v for k, v in before.items())
        if changed:  # the forward set an attribute: a side effect the trace would drop
            vars(module).clear()
            vars(module).update(before)
    if changed:
        return None
    counts = rewrite(graph, dict(module.named_modules()), module_sites=True)
    if not counts:
        return None
    graph.lint()
    return graph.python_code(root_module="self"), dict(counts)


def _compiled(code):
    """The function that an fx PythonCode defines."""
    namespace = dict(code.globals)
    exec(compile(code.src, "<fused_acts.patch>", "exec"), namespace)
    return namespace["forward"]


def _signature_parts(cls):
    """(signature, required names, defaults) of cls.forward, its arguments
    after self, or None where it takes *args, **kwargs or keyword-only
    arguments."""
    try:
        signature = inspect.signature(cls.forward)
    except (TypeError, ValueError):
        return None
    parameters = list(signature.parameters.values())[1:]
    if any(p.kind not in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in parameters):
        return None
    required = tuple(p.name for p in parameters if p.default is p.empty)
    defaults = {p.name: p.default for p in parameters if p.default is not p.empty}
    return signature, required, defaults


def _at_default(value, default):
    if value is default:
        return True
    return isinstance(default, (bool, int, float, str)) and type(value) is type(default) and value == default


_FUSED_FORWARDS = {}


def _fused_forward(cls, parts, train_code, eval_code):
    """The forward that runs the rewritten trace of the module's mode, one per
    (class, traces)."""
    key = (cls, train_code.src, eval_code.src)
    if key in _FUSED_FORWARDS:
        return _FUSED_FORWARDS[key]
    by_mode = {True: _compiled(train_code), False: _compiled(eval_code)}
    signature, required, defaults = parts

    def forward(self, *args, **kwargs):
        traced = by_mode[self.training]
        if not kwargs and len(args) == len(required):
            return traced(self, *args)
        try:
            bound = signature.bind(self, *args, **kwargs).arguments
        except TypeError:
            return cls.forward(self, *args, **kwargs)  # fails as the original does
        if not all(_at_default(bound[name], default) for name, default in defaults.items() if name in bound):
            return cls.forward(self, *args, **kwargs)
        return traced(self, *(bound[name] for name in required))

    _FUSED_FORWARDS[key] = forward
    return forward


def forward_methods(module):
    """The fused methods and counts for a module whose forward computes fused
    activations, else None."""
    cls = type(module)
    # torch's and our modules, and activation modules (patch() replaces
    # them), are leaves of their parents' traces.
    if cls.__module__.startswith(("torch.", "fused_acts.")) or module_activation(module) is not None:
        return None
    parts = _signature_parts(cls)
    if parts is None or "forward" in vars(module):
        return None
    training = module.training
    traced = {}
    try:
        for mode in (True, False):
            module.training = mode
            traced[mode] = _traced_forward(module, parts[2])
            if traced[mode] is None:
                return None
    finally:
        module.training = training
    forward = _fused_forward(cls, parts, traced[True][0], traced[False][0])
    return {"forward": forward}, traced[True][1]
