"""ftlib.layers: shapes, gradients, and the fused attention path against the explicit one."""
import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from ftlib.layers import (
    ChannelMix, FrameDecoder, FrameEncoder, FrameTransformerBlock, MultichannelLayerNorm, MultichannelLinear,
    MultichannelMultiheadAttention, RotaryEmbedding, heads_for,
)


def _grads_reach_all(module, out):
    out.square().mean().backward()
    missing = [n for n, p in module.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"no gradient reached {missing}"


def test_multichannel_linear_matches_per_channel_loop():
    torch.manual_seed(0)
    layer = MultichannelLinear(3, 5, 8, 6)
    x = torch.randn(2, 3, 8, 7)
    y = layer(x)
    assert y.shape == (2, 5, 6, 7)
    mixed = torch.einsum("oc,bcft->boft", layer.mix, x)
    for c in range(5):
        expected = torch.einsum("of,bft->bot", layer.weight[c], mixed[:, c]) + layer.bias[c]
        torch.testing.assert_close(y[:, c], expected, rtol=1e-5, atol=1e-5)
    _grads_reach_all(layer, y)


def test_channel_mix_equals_1x1_conv():
    mix = ChannelMix(4, 3)
    x = torch.randn(2, 4, 16, 5)
    expected = torch.nn.functional.conv2d(x, mix.weight[:, :, None, None])
    torch.testing.assert_close(mix(x), expected, rtol=1e-5, atol=1e-5)
    frames_first = x.transpose(2, 3).contiguous().transpose(2, 3)  # same values, frequency stride 1
    torch.testing.assert_close(mix(frames_first), expected, rtol=1e-5, atol=1e-5)


def test_multichannel_layer_norm_normalises_each_frame():
    norm = MultichannelLayerNorm(3, 16)
    y = norm(torch.randn(2, 3, 16, 9) * 5 + 3)
    torch.testing.assert_close(y.mean(dim=2), torch.zeros(2, 3, 9), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.std(dim=2, unbiased=False), torch.ones(2, 3, 9), atol=1e-3, rtol=0)
    _grads_reach_all(norm, y * torch.randn_like(y))


def test_rotary_scores_depend_only_on_relative_position():
    rot = RotaryEmbedding(8)
    q, k = torch.randn(1, 8), torch.randn(1, 8)
    seq_q, seq_k = q.expand(20, 8), k.expand(20, 8)
    scores = rot(seq_q) @ rot(seq_k).T  # [20, 20]
    torch.testing.assert_close(scores[3, 1], scores[13, 11], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(scores[0, 5], scores[10, 15], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("rotary", [True, False])
@pytest.mark.parametrize("cross", [False, True])
@pytest.mark.parametrize("qkv_conv", ["none", "primer", "kxk"])
def test_fused_attention_equals_explicit(rotary, cross, qkv_conv):
    torch.manual_seed(0)
    attn = MultichannelMultiheadAttention(3, 32, 4, rotary=rotary, qkv_conv=qkv_conv)
    x, mem = torch.randn(2, 3, 32, 11, requires_grad=True), torch.randn(2, 3, 32, 7)
    with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):  # raises rather than fall back to the unfused math path
        fused, _ = attn(x, memory=mem if cross else None)
        (fused_grad,) = torch.autograd.grad(fused.square().sum(), x)
    attn.force_explicit = True
    explicit, _ = attn(x, memory=mem if cross else None)
    (explicit_grad,) = torch.autograd.grad(explicit.square().sum(), x)
    torch.testing.assert_close(fused, explicit, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(fused_grad, explicit_grad, rtol=1e-4, atol=1e-4)


def test_residual_scores_are_returned_and_added():
    torch.manual_seed(0)
    attn = MultichannelMultiheadAttention(2, 16, 2)
    x = torch.randn(1, 2, 16, 6)
    out, scores = attn(x, return_scores=True)
    assert scores.shape == (1, 2, 2, 6, 6)
    out2, scores2 = attn(x, prev_scores=scores, return_scores=True)
    torch.testing.assert_close(scores2, 2 * scores)
    assert not torch.allclose(out, out2)


def test_heads_adapt_to_narrow_levels():
    assert heads_for(1024, 8) == 8
    assert heads_for(32, 8) == 2  # head_dim stays >= 16
    assert heads_for(8, 8) == 1
    assert heads_for(48, 4) == 3


def test_blocks_shapes_and_gradients():
    torch.manual_seed(0)
    x, skip = torch.randn(2, 6, 32, 9), torch.randn(2, 5, 64, 9)
    enc = FrameEncoder(5, 6, 64, stride=(2, 1))
    assert enc(skip).shape == (2, 6, 32, 9)
    dec = FrameDecoder(6, 5, 4, 64)
    y = dec(x, skip)
    assert y.shape == (2, 4, 64, 9)
    _grads_reach_all(dec, y)
    te = FrameTransformerBlock(6, 2, 32, num_heads=2)
    h, scores = te(x)
    assert h.shape == (2, 2, 32, 9) and scores is None
    _grads_reach_all(te, h)
    memory = torch.randn(2, 3, 32, 5)
    td = FrameTransformerBlock(6, 2, 32, memory_channels=(6, 3), num_heads=2, ffn="conv", qkv_conv="primer")
    h, scores = td(x, (x, memory), return_scores=True)
    assert h.shape == (2, 2, 32, 9) and scores.shape == (2, 2, 2, 9, 9)
    _grads_reach_all(td, h)
    with pytest.raises(ValueError, match="expects 2 memories"):
        td(x, (x,))
    t_enc = FrameEncoder(5, 6, 64, stride=(1, 2))
    assert t_enc(skip).shape == (2, 6, 64, 5), "time stride rounds odd frame counts up"


def test_attention_weights_can_be_captured():
    attn = MultichannelMultiheadAttention(2, 16, 2)
    attn.capture = True
    attn(torch.randn(1, 2, 16, 7))
    assert attn.weights.shape == (1, 2, 2, 7, 7)
    torch.testing.assert_close(attn.weights.sum(-1), torch.ones(1, 2, 2, 7))


def test_flattened_block_attends_over_all_maps_of_a_frame():
    torch.manual_seed(0)
    block = FrameTransformerBlock(5, 3, 16, memory_channels=(4,), num_heads=4, flatten=True)
    assert block.attn.q.weight.shape == (1, 48, 48), "one channel of 3 maps x 16 bins"
    x, memory = torch.randn(2, 5, 16, 7), torch.randn(2, 4, 16, 9)
    h, _ = block(x, (memory,))
    assert h.shape == (2, 3, 16, 7)
    _grads_reach_all(block, h)


def test_frequency_only_convolutions_are_frame_local():
    enc = FrameEncoder(2, 4, 32, stride=(2, 1), kernel=(3, 1))
    x = torch.randn(1, 2, 32, 9)
    y = enc(x)
    x2 = x.clone()
    x2[..., 4] += 1.0  # change one frame
    changed = (enc(x2) - y).abs().sum(dim=(0, 1, 2)) > 0
    assert changed.tolist() == [i == 4 for i in range(9)]


def test_lstm_block_sees_the_whole_crop_in_both_directions():
    from ftlib.layers import FrameLSTMBlock

    torch.manual_seed(0)
    block = FrameLSTMBlock(3, 2, 8, hidden=6)
    x = torch.randn(2, 3, 8, 11)
    y = block(x)
    assert y.shape == (2, 2, 8, 11)
    _grads_reach_all(block, y)
    for frame in (0, 10):  # a change at either end reaches every frame
        x2 = x.clone()
        x2[..., frame] += 1.0
        assert ((block(x2) - y).abs().sum(dim=(0, 1, 2)) > 0).all()
