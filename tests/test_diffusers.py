"""patch on real diffusers modules, built from configs with random weights
(nothing is downloaded): FeedForward with each activation, a tiny SD 1.x
UNet and tiny SD3 and Flux transformers. Counted, the fused op runs, fp32
outputs and every gradient are eager's, unpatch restores, bf16 is close.
Skipped without diffusers (the hf extra)."""

import copy

import pytest
import torch

import fused_acts

diffusers = pytest.importorskip("diffusers")
from diffusers.models.attention import FeedForward  # noqa: E402

# activation_fn -> (counts, the fused forward op)
FEED_FORWARDS = {
    "geglu": ({"GeGLU": 1}, "geglu_packed"),  # SD 1.x/2.x/XL: hidden_states * gelu(gate), up‖gate
    "gelu": ({"GELU": 1}, "gelu"),
    "gelu-approximate": ({"GELU": 1}, "gelu"),  # SD3, Flux, PixArt
    "geglu-approximate": ({"QuickGELU": 1}, "swish"),  # x * sigmoid(1.702 x)
    "swiglu": ({"SwiGLU": 1, "SiLU": 1}, "swiglu_packed"),
    "linear-silu": ({"SiLU": 1}, "silu"),
}


def fused_ops_run(fn):
    with torch.profiler.profile() as prof:
        fn()
    return {e.name.removeprefix("fused_acts::") for e in prof.events() if e.name.startswith("fused_acts::")}


def outputs_and_grads(model, inputs):
    model.zero_grad(set_to_none=True)
    out = model(*inputs)
    out = getattr(out, "sample", out)
    out.float().square().mean().backward()
    return out.detach(), {n: p.grad for n, p in model.named_parameters() if p.grad is not None}


def check(model, counts, op, inputs):
    torch.manual_seed(0)
    model.eval()
    reference = copy.deepcopy(model)
    expected, expected_grads = outputs_and_grads(reference, inputs)
    assert fused_acts.patch(model) == counts
    assert op in fused_ops_run(lambda: outputs_and_grads(model, inputs))
    out, grads = outputs_and_grads(model, inputs)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    assert grads.keys() == expected_grads.keys()
    for name, grad in grads.items():
        torch.testing.assert_close(grad, expected_grads[name], rtol=1e-4, atol=1e-5, msg=name)
    fused_acts.unpatch(model)
    restored, _ = outputs_and_grads(model, inputs)
    assert torch.equal(restored, expected)
    bf16 = copy.deepcopy(model).bfloat16()
    fused_acts.patch(bf16)
    with torch.no_grad():
        out = bf16(*(x.bfloat16() if x.is_floating_point() else x for x in inputs))
    out = getattr(out, "sample", out).float()
    assert (out - expected).abs().max() <= 0.05 * expected.abs().max() + 0.05


@pytest.mark.parametrize("activation_fn", FEED_FORWARDS)
def test_feed_forward(activation_fn):
    counts, op = FEED_FORWARDS[activation_fn]
    torch.manual_seed(0)
    check(FeedForward(16, activation_fn=activation_fn), counts, op, (torch.randn(2, 5, 16),))


def test_unet_2d_condition():
    torch.manual_seed(0)
    unet = diffusers.UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(8, 16),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=16,
        attention_head_dim=4,
        norm_num_groups=4,
    )
    inputs = (torch.randn(1, 4, 8, 8), torch.tensor([10]), torch.randn(1, 3, 16))
    # conv_act is called from the UNet's own forward, which does not trace.
    check(unet, {"GeGLU": 4, "SiLU": 9, "SiLU (unverified)": 1}, "geglu_packed", inputs)


def test_sd3_transformer():
    torch.manual_seed(0)
    sd3 = diffusers.SD3Transformer2DModel(
        sample_size=8,
        patch_size=2,
        in_channels=4,
        num_layers=1,
        attention_head_dim=8,
        num_attention_heads=2,
        joint_attention_dim=16,
        caption_projection_dim=16,
        pooled_projection_dim=8,
        out_channels=4,
        pos_embed_max_size=16,
    )
    inputs = (torch.randn(1, 4, 8, 8), torch.randn(1, 3, 16), torch.randn(1, 8), torch.tensor([10]))
    check(sd3, {"GELU": 1, "SiLU": 5}, "gelu", inputs)


def test_flux_transformer():
    torch.manual_seed(0)
    flux = diffusers.FluxTransformer2DModel(
        patch_size=1,
        in_channels=4,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=8,
        num_attention_heads=2,
        joint_attention_dim=16,
        pooled_projection_dim=8,
        axes_dims_rope=(2, 2, 4),
    )
    tokens, text = 4, 3
    inputs = (
        torch.randn(1, tokens, 4),
        torch.randn(1, text, 16),
        torch.randn(1, 8),
        torch.tensor([10.0]),
        torch.zeros(tokens, 3),
        torch.zeros(text, 3),
    )
    check(flux, {"GELU": 2, "GELU (unverified)": 1, "SiLU": 6}, "gelu", inputs)
