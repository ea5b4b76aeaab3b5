"""Model families: registry, shapes for any length, gradients, determinism, fused attention, save/load."""
import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from ftlib import checkpoint, models
from ftlib.errors import CheckpointError, ConfigError
from ftlib.layers import MultichannelMultiheadAttention, mid_side_magnitudes

SEPARATORS = ["asym_unet_mct", "conv_unet", "frame_primer", "frame_transformer", "temporal_unet"]
DISCRIMINATORS = ["patch_discriminator", "vocal_activity_discriminator"]
# every option of the frame transformer line, on the tiny preset
VARIANTS = [
    ("frame_transformer", {}),
    ("frame_transformer", {"residual_attention": True}),
    ("frame_transformer", {"transformer_from_level": 1}),
    ("frame_transformer", {"in_channels": 1, "activation": "relu2", "attention_scale": "features"}),
    ("frame_transformer", {"qkv_conv": "primer", "attention_maps": (1, 2, 3), "expansion": (1.0, 2.0, 4.0)}),
    ("frame_transformer", {"input_attention_maps": 2, "decoder_attention": "self", "qkv_conv": "kxk",
                           "residual_attention": True}),
    ("frame_transformer", {"source_attention": True, "input_attention_maps": 1}),
    ("frame_transformer", {"mid_side": True, "source_attention": True}),
    ("temporal_unet", {}),
    ("temporal_unet", {"residual_attention": True, "in_channels": 1}),
    ("frame_primer", {}),
    ("asym_unet_mct", {}),
    ("frame_primer", {"flatten_maps": False, "residual_attention": True, "conv_kernel": (3, 3)}),
    ("conv_unet", {}),
    ("conv_unet", {"time_downsample": 2, "lstm_from_level": 0, "lstm_maps": 2, "in_channels": 1, "input_power": 0.5}),
    ("conv_unet", {"max_bin": 32}),
    ("conv_unet", {"mid_side": True, "max_bin": 32}),
]
ATTENTION = [name for name in SEPARATORS if name != "conv_unet"]  # families with attention layers


def _input(model, frames=12, batch=2):
    x = torch.rand(batch, model.config.in_channels, model.config.num_bins, frames)
    return torch.polar(x, 2 * torch.pi * torch.rand_like(x)) if models.is_complex(model) else x


def _call(model, x):
    return model(x, x) if model.task == "discriminator" else model(x)


def test_registry_lists_and_builds():
    assert models.list_models() == sorted(SEPARATORS + DISCRIMINATORS + ["bs_roformer", "mel_reformer", "mel_roformer"])
    model = models.build("frame_transformer", "tiny", channels=3)
    assert model.config.channels == 3 and model.model_name == "frame_transformer"
    with pytest.raises(ConfigError, match="unknown model"):
        models.build("nope")
    with pytest.raises(ConfigError, match="no preset"):
        models.build("frame_transformer", "huge-typo")
    with pytest.raises(ConfigError, match="no field"):
        models.build("frame_transformer", "tiny", chanels=3)
    with pytest.raises(ConfigError, match="divisible"):
        models.build("frame_transformer", "tiny", num_bins=66)
    with pytest.raises(ConfigError, match="one per level"):
        models.build("frame_transformer", "tiny", attention_maps=(1, 2))


@pytest.mark.parametrize("frames", [1, 7, 16, 33])
@pytest.mark.parametrize("name,options", VARIANTS, ids=lambda v: str(v))
def test_mask_shape_and_range_for_any_length(name, options, frames):
    model = models.build(name, "tiny", **options)
    x = _input(model, frames)
    mask = model(x)
    assert mask.shape == x.shape and mask.dtype == x.real.dtype
    assert mask.min() >= 0 and mask.max() <= 1


@pytest.mark.parametrize("name,options", VARIANTS + [(d, {}) for d in DISCRIMINATORS], ids=lambda v: str(v))
def test_gradients_reach_every_parameter(name, options):
    torch.manual_seed(0)
    model = models.build(name, "tiny", **options)
    x = _input(model)
    _call(model, x).square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


def test_conv_unet_input_power_compresses_the_input_only():
    torch.manual_seed(0)
    compressed = models.build("conv_unet", "tiny", input_power=0.5).eval()
    torch.manual_seed(0)
    plain = models.build("conv_unet", "tiny").eval()
    x = torch.rand(2, 2, 64, 8)
    torch.testing.assert_close(compressed(x), plain(x.sqrt()))
    assert not torch.allclose(compressed(x), plain(x))
    with pytest.raises(ConfigError, match="input_power"):
        models.build("conv_unet", "tiny", input_power=0.0)


def test_conv_unet_max_bin_sees_the_low_bins_and_extends_their_top_mask():
    torch.manual_seed(0)
    model = models.build("conv_unet", "tiny", max_bin=32).eval()
    x = torch.rand(2, 2, 64, 8)
    mask = model(x)
    assert mask.shape == x.shape
    torch.testing.assert_close(mask[:, :, 32:], mask[:, :, 31:32].expand(-1, -1, 32, -1), rtol=0, atol=0)
    louder_top = x.clone()
    louder_top[:, :, 32:] *= 10
    torch.testing.assert_close(model(louder_top), mask, rtol=0, atol=0)  # the bins above are never read
    size = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert size(model) < size(models.build("conv_unet", "tiny"))  # per-bin weights of the bins seen only
    with pytest.raises(ConfigError, match="max_bin"):
        models.build("conv_unet", "tiny", max_bin=65)
    with pytest.raises(ConfigError, match="divisible"):
        models.build("conv_unet", "tiny", max_bin=30)


@pytest.mark.parametrize("name", ["conv_unet", "frame_transformer"])
def test_mid_side_models_see_how_the_channels_phases_agree(name):
    torch.manual_seed(0)
    model = models.build(name, "tiny", mid_side=True).eval()
    assert models.is_complex(model) and not models.has_complex_mask(model)
    magnitude = torch.rand(2, 1, 64, 8) + 0.1
    centre = torch.polar(magnitude.expand(-1, 2, -1, -1), torch.zeros(2, 2, 64, 8))
    opposite = centre * torch.tensor([1.0, -1.0]).view(1, 2, 1, 1)  # the same magnitudes, out of phase
    features = [mid_side_magnitudes(x) for x in (centre, opposite)]
    torch.testing.assert_close(features[0][:, 3], torch.zeros(2, 64, 8))  # a centred source has no side
    torch.testing.assert_close(features[1][:, 2], torch.zeros(2, 64, 8))
    torch.testing.assert_close(mid_side_magnitudes(centre.flip(1)), features[0])  # L/R swap keeps mid and side
    assert not torch.allclose(model(centre), model(opposite))
    with pytest.raises(ValueError, match="complex stereo STFT"):
        mid_side_magnitudes(centre[:, :1])
    with pytest.raises(ValueError, match="complex"):
        model(magnitude.expand(-1, 2, -1, -1))
    with pytest.raises(ConfigError, match="mid_side"):
        models.build(name, "tiny", mid_side=True, in_channels=1)


def test_discriminator_outputs():
    patch = models.build("patch_discriminator", "tiny")
    x = torch.rand(3, 2, 64, 20)
    assert patch(x, x).shape == (3, 1, 16, 5)
    activity = models.build("vocal_activity_discriminator", "tiny")
    assert activity(x, x).shape == (3, 4, 20)
    assert activity(x[..., :7], x[..., :7]).shape == (3, 4, 7)


@pytest.mark.parametrize("name", SEPARATORS + DISCRIMINATORS)
def test_deterministic_under_seed(name):
    outs = []
    for _ in range(2):
        torch.manual_seed(123)
        model = models.build(name, "tiny").eval()
        torch.manual_seed(7)
        outs.append(_call(model, _input(model, 10, 1)))
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)


@pytest.mark.parametrize("name,options", [v for v in VARIANTS if v[0] in ATTENTION and not v[1].get("residual_attention")],
                         ids=lambda v: str(v))
def test_fused_attention_model_equals_explicit(name, options):
    torch.manual_seed(0)
    model = models.build(name, "tiny", **options).eval()
    x = _input(model, 20, 1)
    with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):  # raises rather than fall back to the unfused math path
        fused = model(x)
    for module in model.modules():
        if hasattr(module, "force_explicit"):
            module.force_explicit = True
    torch.testing.assert_close(model(x), fused, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ATTENTION)
def test_training_with_block_dropout_keeps_the_fused_kernel(name):
    # the seeds' dropout sits on the sub-layer outputs, not on the attention weights; PyTorch's CPU
    # flash kernel has no dropout, so weight dropout would silently send training to the math path
    torch.manual_seed(0)
    model = models.build(name, "tiny", dropout=0.1).train()
    with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
        model(_input(model, 16)).mean().backward()


@pytest.mark.parametrize("name", ATTENTION)
def test_attention_dropout_reaches_the_attention_weights(name):
    outputs = {}
    for rate in (0.0, 0.5):
        torch.manual_seed(0)
        model = models.build(name, "tiny", dropout=0.0, attention_dropout=rate).train()
        x = _input(model, 16)
        outputs[rate] = [model(x) for _ in range(2)]
    torch.testing.assert_close(outputs[0.0][0], outputs[0.0][1], rtol=0, atol=0)
    assert not torch.allclose(outputs[0.5][0], outputs[0.5][1])


@pytest.mark.slow  # builds the 193 M-parameter preset
def test_presets_match_published_sizes():
    # the seed's frame_transformer_v4 at 32 channels: 192,699,428 parameters
    v4 = models.build("frame_transformer", "v4")
    assert abs(sum(p.numel() for p in v4.parameters()) / 192_699_428 - 1) < 0.10
    assert models.build("frame_transformer", "v8").config.residual_attention


def test_frame_primer_matches_the_published_size_with_its_position_tables():
    # FramePrimer2 (118 M published) learned a [heads, head_dim, cropsize=2048] position table per attention
    # layer, i.e. features x 2048 parameters; ftlib uses rotary embeddings instead (any length).
    from ftlib.layers import MultichannelMultiheadAttention, mid_side_magnitudes
    from ftlib.models.inspect import count_parameters

    model = models.build("frame_primer", "default")
    tables = sum(m.q.weight.shape[1] * 2048 for m in model.modules() if isinstance(m, MultichannelMultiheadAttention))
    assert abs((count_parameters("frame_primer") + tables) / 118e6 - 1) < 0.10


@pytest.mark.parametrize("name,options", [VARIANTS[5], VARIANTS[6], VARIANTS[8], VARIANTS[11], VARIANTS[13],
                                          ("patch_discriminator", {}), ("vocal_activity_discriminator", {})],
                         ids=lambda v: str(v))
def test_checkpoint_round_trip_for_every_family(name, options, tmp_path):
    torch.manual_seed(0)
    model = models.build(name, "tiny", **options).eval()
    rebuilt = checkpoint.load(checkpoint.save(model, tmp_path / "ckpt")).eval()
    assert type(rebuilt) is type(model) and rebuilt.config == model.config
    x = _input(model, 9, 1)
    torch.testing.assert_close(_call(rebuilt, x), _call(model, x), rtol=0, atol=0)


def test_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    model = models.build("frame_transformer", "tiny", channels=3, residual_attention=True).eval()
    path = checkpoint.save(model, tmp_path / "ckpt", step=5, nested={"a": [1, 2.5, None], 3: torch.arange(4)})
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "model.safetensors", "state.json", "state.safetensors"]
    rebuilt = checkpoint.load(path).eval()
    x = torch.rand(1, 2, 64, 9)
    torch.testing.assert_close(rebuilt(x), model(x), rtol=0, atol=0)
    state = checkpoint.load_state(path)
    assert state["step"] == 5 and state["nested"]["a"] == [1, 2.5, None]
    assert torch.equal(state["nested"][3], torch.arange(4))
    assert checkpoint.load(path / "model.safetensors").config == model.config


def test_checkpoint_errors(tmp_path):
    model = models.build("frame_transformer", "tiny")
    path = checkpoint.save(model, tmp_path / "ckpt")
    with pytest.raises(CheckpointError, match="expected 'temporal_unet'"):
        checkpoint.load(path, expect="temporal_unet")
    with pytest.raises(CheckpointError, match="not an ftlib checkpoint"):
        checkpoint.load(tmp_path)
    data = (path / "model.safetensors").read_bytes()
    (path / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt"):
        checkpoint.load(path)
    other = checkpoint.save(models.build("frame_transformer", "tiny", channels=5), tmp_path / "other")
    (path / "model.safetensors").write_bytes((other / "model.safetensors").read_bytes())
    with pytest.raises(CheckpointError, match="do not fit"):
        checkpoint.load(path)


def test_checkpoint_overwrite_is_atomic_and_leaves_no_temp(tmp_path):
    model = models.build("frame_transformer", "tiny")
    checkpoint.save(model, tmp_path / "ckpt", step=1)
    checkpoint.save(model, tmp_path / "ckpt", step=2)
    assert checkpoint.load_state(tmp_path / "ckpt")["step"] == 2
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]


def test_checkpoints_of_older_configs_still_load(tmp_path):
    import json

    model = models.build("frame_transformer", "tiny", attention_maps=(2,)).eval()
    path = checkpoint.save(model, tmp_path / "ckpt")
    header = json.loads((path / "config.json").read_text())
    header["config"]["attention_maps"] = 2  # saved when the field held one int
    header["config"]["retired_option"] = True  # a field that no longer exists
    (path / "config.json").write_text(json.dumps(header))
    with pytest.warns(UserWarning, match="retired_option"):
        rebuilt = checkpoint.load(path).eval()
    assert rebuilt.config.attention_maps == (2,)
    x = torch.rand(1, 2, 64, 5)
    torch.testing.assert_close(rebuilt(x), model(x), rtol=0, atol=0)
