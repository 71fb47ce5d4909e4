"""A module's method (its forward, or an MoE experts' _apply_gate), traced by
torch.fx with its submodules as leaves, rewritten with the fused ops
(_recognize.py), and run in the method's place.

The trace is specialised to the call as callers make it:
- *args and **kwargs empty, keyword-only arguments and defaulted ones at
  their defaults; a call that passes anything else runs the original;
- a branch on a tensor's device type (diffusers' `gate.device.type ==
  "mps"`) taken as a call on one device type takes it. Such a trace is kept
  per device type, traced when a call on a new one first comes, and a call
  checks its first tensor's device type;
- plain Python facts (`torch.jit.is_scripting()`, availability and version
  checks, the module's non-tensor attributes) are read as they are at trace
  time, as before.
A method that reads anything else about its inputs in control flow does
not trace, and is left as it is."""

import inspect

import torch

from ._activation_modules import module_activation
from ._recognize import rewrite
from ._spellings import same_function
from ._tracer import LeafTracer


class Specialised:
    """How a method's calls are specialised: its named positional arguments,
    which ones are required, and the defaults every traced call has."""

    def __init__(self, method):
        signature = inspect.signature(method)
        parameters = list(signature.parameters.values())[1:]
        positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        named = [p for p in parameters if p.kind in positional]
        keyword_only = [p for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY]
        if any(p.default is p.empty for p in keyword_only):
            raise TypeError("a required keyword-only argument")
        self.signature = signature
        self.self_name = next(iter(signature.parameters))
        self.names = tuple(p.name for p in named)
        self.required = tuple(p.name for p in named if p.default is p.empty)
        self.defaults = {p.name: p.default for p in (*named, *keyword_only) if p.default is not p.empty}
        self.keyword_only = {p.name: p.default for p in keyword_only}

    def traced_args(self, args, kwargs):
        """The required arguments of a call that the trace runs, else None."""
        try:
            bound = self.signature.bind(None, *args, **kwargs).arguments
        except TypeError:
            return None
        if bound.keys() - {self.self_name, *self.names, *self.keyword_only}:  # *args or **kwargs given
            return None
        if not all(_at_default(bound[name], default) for name, default in self.defaults.items() if name in bound):
            return None
        return tuple(bound[name] for name in self.required)

    def wrapper(self, method):
        """method with only its required arguments, the rest at their
        defaults and *args, **kwargs empty: what fx traces."""
        params = "".join(f", {name}" for name in self.required)
        source = f"def specialised(self{params}):\n    return _method(self{params}, **_keyword_only)\n"
        namespace = {"_method": method, "_keyword_only": self.keyword_only}
        exec(compile(source, "<fused_acts.specialised>", "exec"), namespace)
        return namespace["specialised"]


def _at_default(value, default):
    if value is default:
        return True
    return isinstance(default, (bool, int, float, str)) and type(value) is type(default) and value == default


def _traced_graph(module, method_name, specialised, device_type):
    """(graph, tracer, tensor constants) of module's method traced for calls
    on device_type, or None where it does not trace or sets an attribute (a
    side effect the trace would drop). The module is left as it was."""
    cls = type(module)
    base = getattr(cls, "_fused_acts_base", cls)  # a patched module's original class
    # fx traces type(root).forward: trace a subclass whose forward is the specialised method.
    tracing_class = type(base.__name__, (base,), {"forward": specialised.wrapper(getattr(base, method_name))})
    tracer = LeafTracer(device_type)
    before = dict(vars(module))
    module.__class__ = tracing_class
    try:
        graph = tracer.trace(module)
    except Exception:
        return None
    finally:
        module.__class__ = cls
        after = dict(vars(module))
        vars(module).clear()
        vars(module).update(before)
    # A custom autograd.Function is inlined only where it is, forward and
    # backward, the same function as an activation (BLOOM's GeLUFunction).
    if any(same_function(function.apply, backward=True) is None for function in tracer.functions):
        return None
    constants = {k: v for k, v in after.items() if k not in before and k.startswith("_fused_acts_tensor_constant")}
    if after.keys() - constants.keys() != before.keys() or any(after[k] is not v for k, v in before.items()):
        return None
    for node in dict.fromkeys(tracer.facts):  # a condition before the facts it read
        if not node.users:
            graph.erase_node(node)
    return graph, tracer, constants


def _trace(module, method_name, specialised, device_type):
    """module's method traced for calls on device_type and rewritten:
    (graph, counts, whether it read the device type), or None where it does
    not trace. Its tensor constants are put on the module."""
    traced = _traced_graph(module, method_name, specialised, device_type)
    if traced is None:
        return None
    graph, tracer, constants = traced
    vars(module).update(constants)
    counts = rewrite(graph, dict(module.named_modules()), module_sites=method_name == "forward")
    graph.lint()
    return graph, counts, tracer.read_device


_COMPILED = {}


def _compiled(graph):
    """The function that graph's code defines, one per source."""
    code = graph.python_code(root_module="self")
    if code.src not in _COMPILED:
        namespace = dict(code.globals)
        exec(compile(code.src, "<fused_acts.patch>", "exec"), namespace)
        _COMPILED[code.src] = namespace["forward"]
    return _COMPILED[code.src]


def called_modules(module, method_name="forward"):
    """The names of the submodules that module's method calls, where it
    traces (its original computation, on module's own device type), else None."""
    base = getattr(type(module), "_fused_acts_base", type(module))
    try:
        specialised = Specialised(getattr(base, method_name))
    except (TypeError, ValueError, AttributeError):
        return None
    traced = _traced_graph(module, method_name, specialised, _device_type_of(module))
    return None if traced is None else {node.target for node in traced[0].nodes if node.op == "call_module"}


def _device_type_of(module):
    for tensor in (*module.parameters(recurse=True), *module.buffers(recurse=True)):
        return tensor.device.type
    return "cpu"


def _first_device_type(args):
    for arg in args:
        if isinstance(arg, torch.Tensor):
            return arg.device.type
    return None


_FUSED_METHODS = {}


def _fused_method(cls, method_name, specialised):
    """The method that runs the module's rewritten trace for the call's mode
    (and device type, where the trace read it), or the original; one per
    (class, method)."""
    key = (cls, method_name)
    if key in _FUSED_METHODS:
        return _FUSED_METHODS[key]
    original = getattr(cls, method_name)

    def fused(self, *args, **kwargs):
        if not kwargs and len(args) == len(specialised.required):
            traced_args = args
        else:
            traced_args = specialised.traced_args(args, kwargs)
            if traced_args is None:
                return original(self, *args, **kwargs)
        traces = self._fused_acts_traces
        fn = traces.get((method_name, self.training))
        if fn is None:  # a trace per device type
            key = (method_name, self.training, _first_device_type(traced_args))
            fn = traces.get(key, _MISSING)
            if fn is _MISSING:
                fn = traces[key] = _trace_call(self, method_name, specialised, key[2])
            if fn is None:
                return original(self, *args, **kwargs)
        return fn(self, *traced_args)

    _FUSED_METHODS[key] = fused
    return fused


_MISSING = object()


def _trace_call(module, method_name, specialised, device_type):
    """The fused function for a call on a device type not traced yet, or
    None (the original runs)."""
    traced = _trace(module, method_name, specialised, device_type or "cpu")
    return _compiled(traced[0]) if traced is not None and traced[1] else None


def fused_methods(module, method_name="forward"):
    """({method name: fused method}, counts) for a module whose method
    computes fused activations, else None. Its traces, one per mode (and
    device type), are kept on the module."""
    cls = type(module)
    # torch's and our modules, and activation modules (patch() replaces
    # them), are leaves of their parents' traces.
    if cls.__module__.startswith(("torch.", "fused_acts.")) or module_activation(module) is not None:
        return None
    if method_name in vars(module) or not callable(getattr(cls, method_name, None)):
        return None
    try:
        specialised = Specialised(getattr(cls, method_name))
    except (TypeError, ValueError):
        return None
    device_type = _device_type_of(module)
    training = module.training
    traced = {}
    try:
        for mode in (True, False):
            module.training = mode
            traced[mode] = _trace(module, method_name, specialised, device_type)
            if traced[mode] is None or not traced[mode][1]:
                return None
    finally:
        module.training = training
    by_device = traced[True][2] or traced[False][2]
    traces = getattr(module, "_fused_acts_traces", {})
    for mode, (graph, _, _) in traced.items():
        traces[(method_name, mode, device_type) if by_device else (method_name, mode)] = _compiled(graph)
    module._fused_acts_traces = traces
    return {method_name: _fused_method(cls, method_name, specialised)}, dict(traced[True][1])
