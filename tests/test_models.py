"""Model registry and the frame transformer: shapes, gradients, determinism, save/load."""
import pytest
import torch

from ftlib import checkpoint, models
from ftlib.errors import CheckpointError, ConfigError


def test_registry_lists_and_builds():
    assert "frame_transformer" in models.list_models()
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


@pytest.mark.parametrize("frames", [1, 7, 16, 33])
@pytest.mark.parametrize("options", [{}, {"residual_attention": True}, {"transformer_from_level": 1},
                                     {"in_channels": 1, "activation": "relu2", "attention_scale": "features"}])
def test_mask_shape_and_range_for_any_length(frames, options):
    model = models.build("frame_transformer", "tiny", **options)
    x = torch.rand(2, model.config.in_channels, model.config.num_bins, frames)
    mask = model(x)
    assert mask.shape == x.shape
    assert mask.min() >= 0 and mask.max() <= 1


@pytest.mark.parametrize("residual", [False, True])
def test_gradients_reach_every_parameter(residual):
    torch.manual_seed(0)
    model = models.build("frame_transformer", "tiny", residual_attention=residual)
    x = torch.rand(2, 2, 64, 12)
    (model(x) * x).sub(x * 0.5).abs().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


def test_deterministic_under_seed():
    outs = []
    for _ in range(2):
        torch.manual_seed(123)
        model = models.build("frame_transformer", "tiny")
        torch.manual_seed(7)
        outs.append(model(torch.rand(1, 2, 64, 10)))
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)


def test_fused_attention_model_equals_explicit():
    torch.manual_seed(0)
    model = models.build("frame_transformer", "tiny").eval()
    x = torch.rand(1, 2, 64, 20)
    fused = model(x)
    for module in model.modules():
        if hasattr(module, "force_explicit"):
            module.force_explicit = True
    torch.testing.assert_close(model(x), fused, rtol=1e-5, atol=1e-6)


def test_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    model = models.build("frame_transformer", "tiny", channels=3, residual_attention=True).eval()
    path = checkpoint.save(model, tmp_path / "ckpt", step=5, nested={"a": [1, 2.5, None], 3: torch.arange(4)})
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "model.safetensors", "state.json", "state.safetensors"]
    rebuilt = checkpoint.load(path).eval()
    assert rebuilt.config == model.config
    x = torch.rand(1, 2, 64, 9)
    torch.testing.assert_close(rebuilt(x), model(x), rtol=0, atol=0)
    state = checkpoint.load_state(path)
    assert state["step"] == 5 and state["nested"]["a"] == [1, 2.5, None]
    assert torch.equal(state["nested"][3], torch.arange(4))
    assert checkpoint.load(path / "model.safetensors").config == model.config


def test_checkpoint_errors(tmp_path):
    model = models.build("frame_transformer", "tiny")
    path = checkpoint.save(model, tmp_path / "ckpt")
    with pytest.raises(CheckpointError, match="expected 'other'"):
        checkpoint.load(path, expect="other")
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
