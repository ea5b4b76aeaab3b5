"""AsymUNetMCT: shapes for any length, activity head, gradients, determinism, fused attention,
save/load, the bridge residual and the score gate."""
import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from ftlib import checkpoint, models
from ftlib.errors import ConfigError
from ftlib.layers import MultichannelMultiheadAttention
from ftlib.layers.convolutional import (ConvolutionalEmbedding, ConvolutionalMultiheadAttention,
                                        ConvolutionalTransformerEncoder, sinusoidal_position)
from ftlib.models import mask_of
from ftlib.models.asym_unet_mct import ScoreGate


def _build(**options):
    return models.build("asym_unet_mct", "tiny", **options)


def _input(model, frames=12, batch=1):
    return torch.rand(batch, model.config.in_channels, model.config.num_bins, frames)


def test_registered_and_validated():
    assert "asym_unet_mct" in models.list_models()
    assert _build().model_name == "asym_unet_mct"
    with pytest.raises(ConfigError, match="two levels"):
        _build(channel_multipliers=(1,))
    with pytest.raises(ConfigError, match="divisible"):
        _build(num_bins=66)
    with pytest.raises(ConfigError, match="one per non-bottleneck level"):
        _build(attention_maps=(1, 2, 3))


@pytest.mark.parametrize("in_channels", [1, 2])
@pytest.mark.parametrize("frames", [1, 7, 33])
def test_mask_shape_and_range_for_any_length(frames, in_channels):
    model = _build(in_channels=in_channels).eval()
    x = _input(model, frames)
    with torch.no_grad():
        mask = model(x)
    assert mask.shape == x.shape and mask.dtype == x.dtype
    assert mask.min() >= 0 and mask.max() <= 1


def test_activity_head():
    model = _build(activity_head=True).eval()
    x = _input(model, 7, 2)
    with torch.no_grad():
        out = model(x)
    mask, activity = out
    assert mask.shape == x.shape and activity.shape == (2, 4, 7)
    assert mask_of(out) is mask


@pytest.mark.parametrize("options", [{"activity_head": True}, {"residual_attention": False, "in_channels": 1}],
                         ids=str)
def test_gradients_reach_every_parameter(options):
    torch.manual_seed(0)
    model = _build(**options)
    out = model(_input(model, 6, 2))
    loss = out[0].square().mean() + out[1].square().mean() if isinstance(out, tuple) else out.square().mean()
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


def test_gates_only_where_chain_shapes_match():
    model = _build()
    assert [b.gate is not None for b in model.decoder_blocks] == [False, True]
    assert all(b.gate is None for b in _build(gated_attention=False).decoder_blocks)
    assert all(b.gate is None for b in _build(residual_attention=False).decoder_blocks)


def test_heads_adapt_to_the_level_width():
    model = _build(num_heads=8)
    for m in model.modules():
        if isinstance(m, MultichannelMultiheadAttention):
            assert m.num_heads == 1 or m.head_dim >= 16


def test_deterministic_under_seed():
    outs = []
    for _ in range(2):
        torch.manual_seed(123)
        model = _build(activity_head=True).eval()
        torch.manual_seed(7)
        outs.append(model(_input(model, 10)))
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)


def test_fused_attention_equals_explicit():
    torch.manual_seed(0)
    model = _build(residual_attention=False).eval()
    x = _input(model, 20)
    with torch.no_grad():
        fused = model(x)
        for module in model.modules():
            if isinstance(module, (MultichannelMultiheadAttention, ConvolutionalMultiheadAttention)):
                module.force_explicit = True
        torch.testing.assert_close(model(x), fused, rtol=1e-5, atol=1e-6)


def test_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    model = _build(activity_head=True).eval()
    rebuilt = checkpoint.load(checkpoint.save(model, tmp_path / "ckpt")).eval()
    assert type(rebuilt) is type(model) and rebuilt.config == model.config
    x = _input(model, 9)
    with torch.no_grad():
        for a, b in zip(rebuilt(x), model(x)):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


# ----------------------------------------------------------------------------- layers

def test_bridge_residual_keeps_the_attention_sum():
    torch.manual_seed(0)
    layer = ConvolutionalTransformerEncoder(8, num_heads=2, expansion=1.0).eval()
    x = torch.randn(2, 8, 4, 5)
    with torch.no_grad():
        h = x + layer.attn(layer.norm_attn(x))
        torch.testing.assert_close(layer(x), h + layer.ffn(layer.norm_ffn(h)))
        layer.attn.o.weight.zero_(), layer.attn.o.bias.zero_()
        torch.testing.assert_close(layer(x), x + layer.ffn(layer.norm_ffn(x)))


def test_convolutional_attention_fused_equals_explicit_and_scale():
    torch.manual_seed(0)
    attn = ConvolutionalMultiheadAttention(32, num_heads=4).eval()
    assert attn.num_heads == 4 and attn.scale == pytest.approx(1 / 8 ** 0.5)
    assert ConvolutionalMultiheadAttention(32, 4, scale="features").scale == pytest.approx(1 / 32 ** 0.5)
    x = torch.randn(1, 32, 3, 7)
    with torch.no_grad():
        with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):  # raises rather than fall back to the unfused math path
            fused = attn(x)
        attn.force_explicit = True
        torch.testing.assert_close(attn(x), fused, rtol=1e-5, atol=1e-6)


def test_embedding_for_any_length():
    emb = ConvolutionalEmbedding(2, 16, channels=2, scales=3)
    for frames in (1, 5):
        assert emb(torch.rand(1, 2, 16, frames)).shape == (1, 1, 16, frames)
    table = sinusoidal_position(4, 3, torch.device("cpu"), torch.float64)
    assert table.dtype == torch.float64 and torch.equal(table[0], torch.sin(torch.arange(3.0)).double())


def test_score_gate_mixes_between_chain_and_encoder():
    torch.manual_seed(0)
    gate = ScoreGate(hidden=2)
    chain, encoder = torch.zeros(1, 2, 3, 4, 4), torch.ones(1, 2, 3, 4, 4)
    mixed = gate(chain, encoder)
    assert mixed.shape == chain.shape and (mixed > 0).all() and (mixed < 1).all()
