"""The ops as the compiled library declares them (csrc/op_list.h), read from
their registered schemas: the Python registrations (fake kernels, vmap and
sharding rules) and the tests follow that one list instead of repeating it."""

from dataclasses import dataclass
from functools import cached_property

import torch

from . import _extension  # noqa: F401  (loads the schemas)


@dataclass(frozen=True)
class OpInfo:
    """One op of the library: its schema, seen as an activation's op."""

    name: str

    @cached_property
    def schema(self):
        return self.overload._schema

    @property
    def overload(self):
        return getattr(torch.ops.fused_acts, self.name).default

    @property
    def family(self):
        """The op list entry this op belongs to: "geglu" for geglu_packed_backward."""
        name = self.name.removesuffix("_").removesuffix("_quantized").removesuffix("_monitored")
        return name.removesuffix("_backward").removesuffix("_packed")

    @property
    def check_name(self):
        """The name its error messages start with: a packed op's is its unpacked twin's."""
        return self.name.replace("_packed", "").removesuffix("_quantized").removesuffix("_monitored").removesuffix("_")

    @property
    def backward(self):
        return self.name.removesuffix("_").endswith("_backward")

    @property
    def quantized(self):
        """Whether it returns its forward's output quantized, with its scales
        (name_quantized, name_packed_quantized, and quantize itself)."""
        return self.name.endswith("_quantized") or self.name == "quantize"

    @property
    def monitored(self):
        """Whether it is a forward that also adds its output's statistics to
        its stats and histogram (name_monitored, name_packed_monitored)."""
        return self.name.endswith("_monitored")

    @property
    def inplace(self):
        """Whether it writes its result over its last tensor, returning nothing (name_packed_backward_)."""
        return self.name.endswith("_")

    @cached_property
    def kind(self):
        """ "unary", "gated" (separate gate and up) or "packed" (one gate‖up tensor)."""
        if "_packed" in self.name:
            return "packed"
        return "gated" if "gate" in self.tensors else "unary"

    @cached_property
    def tensors(self):
        """The tensor arguments' names, in order: ("grad", "gate", "up")."""
        return tuple(a.name for a in self.schema.arguments if isinstance(a.type, torch.TensorType))

    @cached_property
    def params(self):
        """The other arguments' names, in order: ("approximate",)."""
        return tuple(a.name for a in self.schema.arguments if not isinstance(a.type, torch.TensorType))

    @cached_property
    def kwarg_only(self):
        """The names of its keyword-only arguments (a quantized op's format)."""
        return tuple(a.name for a in self.schema.arguments if a.kwarg_only)

    @cached_property
    def num_outputs(self):
        return len(self.schema.returns)

    def bind(self, args, kwargs):
        """A call's arguments by name, in schema order, defaults filled in."""
        bound = {}
        for i, arg in enumerate(self.schema.arguments):
            if i < len(args):
                bound[arg.name] = args[i]
            else:
                bound[arg.name] = kwargs.get(arg.name, arg.default_value)
        return bound


def _registered_names():
    prefix = "fused_acts::"
    return sorted(n.removeprefix(prefix) for n in torch._C._dispatch_get_all_op_names() if n.startswith(prefix))


OPS = {name: OpInfo(name) for name in _registered_names()}
"""Every op, by name: forward and backward, separate and packed."""

FORWARD_OPS = [op for op in OPS.values() if not op.backward and not op.quantized and not op.monitored]
"""The activations' forward ops, separate and packed."""
