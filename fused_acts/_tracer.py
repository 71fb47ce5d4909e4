"""The fx tracer of patch: one module's method, every submodule a leaf,
for tensors of one device type (a branch on a tensor's device type is taken
as a call on it would take it), noting each custom autograd.Function whose
forward it runs inline; _traced.py specialises, vets and rewrites its
traces."""

import operator

import torch
from torch import fx

# Tensor attributes whose value is a fact of the device type.
_DEVICE_FLAGS = {"is_cpu": "cpu", "is_cuda": "cuda", "is_mps": "mps", "is_xpu": "xpu", "is_meta": "meta"}
_COMPARISONS = (operator.eq, operator.ne, operator.not_, operator.and_, operator.or_)


class _DeviceOf:
    """A tensor's device, of which only the type is known."""

    def __init__(self, device_type):
        self.type = device_type


class LeafTracer(fx.Tracer):
    """Traces one module's method, every submodule a leaf (patch visits each
    itself), for tensors of one device type."""

    def __init__(self, device_type):
        super().__init__()
        self.device_type = device_type
        self.read_device = False
        self.facts = []
        self.functions = set()

    def trace(self, root, concrete_args=None):
        # fx runs a custom autograd.Function's forward inline, dropping its
        # backward: note each one, for _traced_graph to vet.
        apply = vars(torch.autograd.Function)["apply"]

        def noted_apply(function, *args, **kwargs):
            if any(isinstance(arg, fx.Proxy) for arg in (*args, *kwargs.values())):
                self.functions.add(function)
            return apply.__get__(None, function)(*args, **kwargs)

        torch.autograd.Function.apply = classmethod(noted_apply)
        try:
            return super().trace(root, concrete_args)
        finally:
            torch.autograd.Function.apply = apply

    def is_leaf_module(self, module, qualname):
        return True

    def call_module(self, module, forward, args, kwargs):
        # A module that is not a submodule, such as transformers' global
        # `gelu = get_activation("gelu")` (RoBERTa's LM head), is traced
        # through, as Python calls it.
        try:
            self.path_of_module(module)
        except NameError:
            return forward(*args, **kwargs)
        return super().call_module(module, forward, args, kwargs)

    def get_fresh_qualname(self, prefix):
        # A tensor constant of the trace (fx's _tensor_constant0) is kept on
        # the module under our prefix, so that unpatch and pickling drop it.
        return super().get_fresh_qualname(f"_fused_acts{prefix}")

    def to_bool(self, obj):
        value = self._fact(obj.node)
        if not isinstance(value, bool):
            raise fx.proxy.TraceError("a branch on a traced value")
        return value

    def _fact(self, node):
        """node's value where it is a fact of the device type (or a constant)."""
        if not isinstance(node, fx.Node):
            return node
        self.facts.append(node)
        if node.op == "call_function" and node.target is getattr and len(node.args) == 2:
            base, name = node.args
            if name == "device":
                self.read_device = True
                return _DeviceOf(self.device_type)
            if name in _DEVICE_FLAGS:
                self.read_device = True
                return _DEVICE_FLAGS[name] == self.device_type
            value = self._fact(base)
            if isinstance(value, _DeviceOf) and name == "type":
                return value.type
        elif node.op == "call_function" and node.target in _COMPARISONS and not node.kwargs:
            values = [self._fact(arg) for arg in node.args]
            if not any(isinstance(v, _DeviceOf) for v in values):
                return node.target(*values)
        raise fx.proxy.TraceError("a branch on a traced value")
