"""Second derivatives of the activations, for double backward
(create_graph=True: gradient penalties, Hessian-vector products).

First derivatives come from the fused kernels; these are eager PyTorch, since
the path is rare and autograd can differentiate them again, to any order.
They take and return opmath tensors (float or double).
"""

import math

import torch
import torch.nn.functional as F

_INV_SQRT_2PI = 1 / math.sqrt(2 * math.pi)
_TWO_BETA = 2 * math.sqrt(2 / math.pi)
_KAPPA = 0.044715


def _capped(x):
    # Each f'' below is 0 in float64 well before |x| = 1000: capping x there
    # keeps x² and x³ finite. ±inf gives nan, as eager's double backward does.
    return torch.where(x.isinf(), torch.nan, x.clamp(-1000, 1000))


def gelu(x, approximate="none"):
    x = _capped(x)
    if approximate == "tanh":
        # gelu = x·s with s = sigmoid(v), v = 2u: gelu'' = 2s' + x·s'', and
        # s' = v'·s(1 − s), s'' = v''·s(1 − s) + v'·s'·(1 − 2s).
        v = _TWO_BETA * (x + _KAPPA * x**3)
        s, one_minus_s = torch.sigmoid(v), torch.sigmoid(-v)
        dv = _TWO_BETA * (1 + 3 * _KAPPA * x * x)
        d2v = _TWO_BETA * 6 * _KAPPA * x
        ds = dv * s * one_minus_s
        d2s = d2v * s * one_minus_s + dv * ds * (one_minus_s - s)
        return 2 * ds + x * d2s
    return torch.exp(-0.5 * x * x) * _INV_SQRT_2PI * (2 - x * x)


def silu(x):
    x = _capped(x)
    s, one_minus_s = torch.sigmoid(x), torch.sigmoid(-x)
    return s * one_minus_s * (2 + x * (one_minus_s - s))


def mish(x):
    # With t = tanh(softplus(x)) and s = sigmoid(x): t' = (1 − t²)·s, and
    # mish'' = (1 − t²)·s·(2 + x·(1 − s − 2ts)); 1 − t² as sech², which
    # keeps its precision where t → 1.
    x = _capped(x)
    sp = F.softplus(x)
    t, sech2, s = torch.tanh(sp), torch.cosh(sp).pow(-2), torch.sigmoid(x)
    return sech2 * s * (2 + x * (1 - s - 2 * t * s))


# Each op family's f'': a gated op's is its gate activation's.
BY_OP = {"gelu": gelu, "silu": silu, "mish": mish, "swiglu": silu, "geglu": gelu}
