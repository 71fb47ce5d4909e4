"""The ops as the compiled library declares them (csrc/op_list.h), from the
table it exports and their registered schemas: the Python registrations (fake
kernels, vmap and sharding rules) and the tests follow that one list instead
of repeating it."""

from dataclasses import dataclass
from functools import cached_property

import torch

from . import _extension


@dataclass(frozen=True)
class OpInfo:
    """One op of the library, as the compiled library exports it: its name,
    its family (the op list entry, "geglu" for geglu_packed_backward), its
    variant (forward, backward, backward_in_place, quantized or monitored)
    and its layout (separate, or packed: one gate‖up x)."""

    name: str
    family: str
    variant: str
    layout: str

    @cached_property
    def schema(self):
        return self.overload._schema

    @property
    def overload(self):
        return getattr(torch.ops.fused_acts, self.name).default

    @property
    def check_name(self):
        """The name its error messages start with: its family's, a backward's with _backward."""
        return f"{self.family}_backward" if self.backward else self.family

    @property
    def backward(self):
        return self.variant in ("backward", "backward_in_place")

    @property
    def quantized(self):
        """Whether it returns its forward's output quantized, with its scales
        (name_quantized, name_packed_quantized, and quantize itself)."""
        return self.variant == "quantized"

    @property
    def monitored(self):
        """Whether it is a forward that also adds its output's statistics to
        its stats and histogram (name_monitored, name_packed_monitored)."""
        return self.variant == "monitored"

    @property
    def inplace(self):
        """Whether it writes its result over its last tensor, returning nothing (name_packed_backward_)."""
        return self.variant == "backward_in_place"

    @cached_property
    def kind(self):
        """ "unary", "gated" (separate gate and up), "packed" (one gate‖up
        tensor), or "xielu" (x and tensor coefficients, whose gradients its
        backward gives too)."""
        if self.family == "xielu":
            return "xielu"
        if self.layout == "packed":
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


OPS = {row[0]: OpInfo(*row) for row in sorted(_extension.op_table())}
"""Every op, by name: forward and backward, separate and packed."""

FORWARD_OPS = [op for op in OPS.values() if not op.backward and not op.quantized and not op.monitored]
"""The activations' forward ops, separate and packed."""
