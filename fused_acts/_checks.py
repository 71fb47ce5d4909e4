"""Input checks, message for message those of csrc/checks.h (floats printed
as C++ prints them, %g), in the same order as the kernels make them, so
that fake tensors (torch.compile, meta) fail exactly as real ones do."""

import math

import torch

FLOATING = (torch.float32, torch.float64, torch.bfloat16, torch.float16)
APPROXIMATE = ("none", "tanh")
_OVERLAP_YES = 1  # torch._debug_has_internal_overlap's answer where elements share memory


def _dtype_name(t):
    return str(t if isinstance(t, torch.dtype) else t.dtype).removeprefix("torch.")


def check_floating(op, arg, t):
    if t.dtype not in FLOATING:
        raise TypeError(f"{op}: {arg} must be float32, float64, bfloat16 or float16, got {_dtype_name(t)}")


def check_same(op, a_name, a, b_name, b):
    """a and b must match in shape, dtype and device."""
    check_floating(op, a_name, a)
    check_floating(op, b_name, b)
    if a.shape != b.shape:
        raise ValueError(
            f"{op}: {a_name} and {b_name} must have the same shape, got {list(a.shape)} and {list(b.shape)}"
        )
    if a.dtype != b.dtype:
        raise TypeError(
            f"{op}: {a_name} and {b_name} must have the same dtype, got {_dtype_name(a)} and {_dtype_name(b)}"
        )
    if a.device != b.device:
        raise RuntimeError(f"{op}: {a_name} and {b_name} must be on the same device, got {a.device} and {b.device}")


def packed_layout_name(interleaved, up_first):
    """How a packed x holds gate and up, as the messages name it."""
    if interleaved:
        return "up and gate interleaved" if up_first else "gate and up interleaved"
    return "up‖gate" if up_first else "gate‖up"


def check_packed(op, x, interleaved=False, up_first=False):
    check_floating(op, "x", x)
    if x.dim() < 1 or x.shape[-1] % 2 != 0:
        layout = packed_layout_name(interleaved, up_first)
        raise ValueError(f"{op}: packed x must have an even last dim ({layout}), got shape {list(x.shape)}")


def _row_strided(t):
    """Whether t's last dim is unit-stride and its outer dims collapse into
    rows (csrc/elementwise_args.h's row_stride_of)."""
    if t.dim() == 0:
        return True
    if t.shape[-1] != 1 and t.stride(-1) != 1:
        return False
    row_stride, next_stride = None, 0
    for size, stride in zip(reversed(t.shape[:-1]), reversed(t.stride()[:-1])):
        if size == 1:
            continue
        if row_stride is not None and stride != next_stride:
            return False
        row_stride = stride if row_stride is None else row_stride
        next_stride = stride * size
    return True


def check_writable(op, grad, x):
    if not _row_strided(x):
        strides = list(x.stride())
        raise ValueError(f"{op}: x must have a row stride to take its gradient in place, got strides {strides}")
    if torch._debug_has_internal_overlap(x) == _OVERLAP_YES:
        raise ValueError(
            f"{op}: x overlaps itself (an expanded tensor's elements share memory), so its gradient cannot be "
            f"written in place, got strides {list(x.stride())}"
        )
    if torch._C._overlaps(grad, x):
        raise ValueError(f"{op}: grad and x must not overlap to write x's gradient in place")


def check_approximate(op, approximate):
    if approximate not in APPROXIMATE:
        raise ValueError(f"{op}: approximate must be 'none' or 'tanh', got '{approximate}'")


def check_finite(op, arg, value):
    if not math.isfinite(value):
        raise ValueError(f"{op}: {arg} must be finite, got {value:g}")


def check_positive(op, arg, value):
    if not value > 0:
        raise ValueError(f"{op}: {arg} must be positive, got {value:g}")


QUANTIZED_DTYPES = (torch.float8_e4m3fn, torch.float8_e5m2, torch.int8)
SCALE_DTYPES = (torch.float32, torch.float8_e8m0fnu)


def check_quantized(op, by_name, sizes, x_name):
    """A quantized op's format (csrc/checks.h's check_quantized); sizes: its output's."""
    out_dtype, group_size, per_tensor = by_name["out_dtype"], by_name["group_size"], by_name["per_tensor"]
    scale_dtype, scale = by_name["scale_dtype"], by_name["scale"]
    if out_dtype not in QUANTIZED_DTYPES:
        raise TypeError(f"{op}: out_dtype must be float8_e4m3fn, float8_e5m2 or int8, got {_dtype_name(out_dtype)}")
    if scale_dtype is not None and scale_dtype not in SCALE_DTYPES:
        raise TypeError(f"{op}: scale_dtype must be float32 or float8_e8m0fnu, got {_dtype_name(scale_dtype)}")
    if per_tensor:
        if group_size != 0:
            raise ValueError(f"{op}: a per-tensor scale takes no group_size, got {group_size}")
    else:
        cols = sizes[-1] if len(sizes) else 1
        if group_size < 0:
            raise ValueError(f"{op}: granularity must be a positive group size, got {group_size}")
        if group_size != 0 and cols % group_size != 0:
            raise ValueError(f"{op}: granularity {group_size} does not divide the last dim {cols}")
    if scale is not None:
        if not per_tensor:
            granularity = group_size if group_size else "'row'"
            raise ValueError(
                f"{op}: a static scale is one scale for the tensor, so granularity must be 'tensor', got {granularity}"
            )
        if scale.dtype != torch.float32 or scale.numel() != 1:
            raise TypeError(
                f"{op}: scale must be a float32 tensor with one element, got {_dtype_name(scale)} "
                f"of shape {list(scale.shape)}"
            )
        if scale_dtype == torch.float8_e8m0fnu:
            raise ValueError(
                f"{op}: a static scale is used as given, so scale_dtype must be float32, got float8_e8m0fnu"
            )
        x = by_name[x_name]
        if scale.device != x.device:
            raise RuntimeError(
                f"{op}: scale and {x_name} must be on the same device, got {scale.device} and {x.device}"
            )


NUM_STATS = 6  # csrc/monitor.h's MonitorStat
MAX_HISTOGRAM_BINS = 4096


def check_monitor(op, stats, histogram, channels, x_name, x):
    """A monitored op's accumulators (csrc/checks.h's check_monitor)."""
    if stats.dtype != torch.float64:
        raise TypeError(f"{op}: stats must be float64, got {_dtype_name(stats)}")
    if stats.shape != (NUM_STATS, channels):
        raise ValueError(
            f"{op}: stats must have shape [{NUM_STATS}, {channels}] ({NUM_STATS} statistics per channel of the "
            f"output), got {list(stats.shape)}"
        )
    if not stats.is_contiguous():
        raise ValueError(f"{op}: stats must be contiguous")
    if histogram.dtype != torch.float64:
        raise TypeError(f"{op}: histogram must be float64, got {_dtype_name(histogram)}")
    if histogram.dim() != 1 or histogram.shape[0] > MAX_HISTOGRAM_BINS or not histogram.is_contiguous():
        raise ValueError(
            f"{op}: histogram must be a contiguous 1-D tensor of at most {MAX_HISTOGRAM_BINS} bins, "
            f"got shape {list(histogram.shape)}"
        )
    for name, t in (("stats", stats), ("histogram", histogram)):
        if t.device != x.device:
            raise RuntimeError(f"{op}: {name} and {x_name} must be on the same device, got {t.device} and {x.device}")


def forward_sizes(op, by_name):
    """The shape of a quantized (or monitored) op's output, before quantization."""
    x = by_name[op.tensors[0]]
    return (*x.shape[:-1], x.shape[-1] // 2) if op.kind == "packed" else tuple(x.shape)


def scale_sizes(by_name, sizes):
    """The scales' shape: one per row, per group, or per tensor (csrc/ops/quantized.h)."""
    if by_name["per_tensor"] or not sizes:
        return ()
    group_size = by_name["group_size"]
    return (*sizes[:-1], sizes[-1] // group_size if group_size else 1)


# Each param's check (the Select structs of csrc/op_list.h), by its schema name.
PARAM_CHECKS = {
    "approximate": check_approximate,
    "beta": lambda op, beta: check_finite(op, "beta", beta),
    "alpha": lambda op, alpha: check_finite(op, "alpha", alpha),
    "limit": lambda op, limit: check_positive(op, "limit", limit),
    "up_offset": lambda op, up_offset: check_finite(op, "up_offset", up_offset),
    "eps": lambda op, eps: check_finite(op, "eps", eps),
    "interleaved": lambda op, interleaved: None,
    "up_first": lambda op, up_first: None,
    # The quantized format, checked after the tensors (check_quantized).
    "out_dtype": lambda op, out_dtype: None,
    "group_size": lambda op, group_size: None,
    "per_tensor": lambda op, per_tensor: None,
    "scale_dtype": lambda op, scale_dtype: None,
    "scale": lambda op, scale: None,
}


def check_coefficient(op, arg, t, x_name, x):
    check_floating(op, arg, t)
    if t.numel() != 1:
        raise ValueError(f"{op}: {arg} must have one element, got shape {list(t.shape)}")
    if t.device != x.device:
        raise RuntimeError(f"{op}: {arg} and {x_name} must be on the same device, got {t.device} and {x.device}")


def check_xielu(op, by_name):
    """xielu's and xielu_backward's checks (csrc/ops/xielu.h), in their order."""
    x = by_name["x"]
    if op.backward:
        check_same(op.check_name, "grad", by_name["grad"], "x", x)
    check_floating(op.check_name, "x", x)
    for arg in ("alpha_p", "alpha_n"):
        check_coefficient(op.check_name, arg, by_name[arg], "x", x)
    for param in ("beta", "eps"):
        check_finite(op.check_name, param, by_name[param])


def check_call(op, by_name):
    """Every check that op's kernel makes on its arguments (by name), in the
    kernel's order: params first, then the tensors."""
    if op.kind == "xielu":
        return check_xielu(op, by_name)
    name = op.check_name
    for param in op.params:
        PARAM_CHECKS[param](name, by_name[param])
    if op.kind == "unary":
        if op.backward:
            check_same(name, "grad", by_name["grad"], "x", by_name["x"])
        else:
            check_floating(name, "x", by_name["x"])
    elif op.kind == "gated":
        check_same(name, "gate", by_name["gate"], "up", by_name["up"])
        if op.backward:
            check_same(name, "grad", by_name["grad"], "gate", by_name["gate"])
    else:
        check_packed(name, by_name["x"], by_name["interleaved"], by_name["up_first"])
        if op.backward:
            gate = by_name["x"].chunk(2, dim=-1)[0]
            check_same(name, "grad", by_name["grad"], "gate", gate)
        if op.inplace:
            check_writable(name, by_name["grad"], by_name["x"])
    x_name = "gate" if op.kind == "gated" else "x"
    if op.quantized:
        check_quantized(name, by_name, forward_sizes(op, by_name), x_name)
    if op.monitored:
        sizes = forward_sizes(op, by_name)
        channels = sizes[-1] if sizes else 1
        check_monitor(name, by_name["stats"], by_name["histogram"], channels, x_name, by_name[x_name])
