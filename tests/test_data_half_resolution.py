"""The nearest-neighbour speed trick: HalfResolution around any separation model."""
import types

import pytest
import torch
from torch import nn

from ftlib import checkpoint, losses, models
from ftlib.data.voxaug import VoxAugConfig, VoxAugDataset
from ftlib.models.half_resolution import HalfResolution
from ftlib.train import TrainConfig, fit, latest_checkpoint


def _wrapped(seed=0):
    torch.manual_seed(seed)
    return HalfResolution(models.build("frame_transformer", "tiny", num_bins=32))


def test_forward_backward_at_full_resolution():
    model = _wrapped()
    x = torch.rand(2, 2, 64, 16, requires_grad=True)
    mask = model(x)
    assert mask.shape == x.shape and 0 <= float(mask.detach().min()) and float(mask.detach().max()) <= 1
    mask.mean().backward()
    assert all(p.grad is not None for p in model.inner.parameters())
    assert model.config is model.inner.config and model.model_name == "frame_transformer"
    with pytest.raises(ValueError, match="expects 64 bins"):
        model(torch.rand(1, 2, 32, 16))


def test_inner_model_sees_every_other_bin_and_tuples_pass_through():
    class Probe(nn.Module):
        config = types.SimpleNamespace(num_bins=4)

        def forward(self, x):
            self.seen = x
            return torch.full_like(x, 0.5), "extra"

    probe = Probe()
    x = torch.arange(8.0).reshape(1, 1, 8, 1).expand(1, 2, 8, 3)
    mask, extra = HalfResolution(probe)(x)
    assert torch.equal(probe.seen[0, 0, :, 0], torch.tensor([0.0, 2.0, 4.0, 6.0])) and extra == "extra"
    assert torch.allclose(mask, torch.full((1, 2, 8, 3), 0.5))


def test_checkpoints_hold_the_inner_model_and_training_resumes(tiny_dataset, tiny_cache, tmp_path):
    model = _wrapped()
    checkpoint.save(model, tmp_path / "ckpt")
    inner = checkpoint.load(tmp_path / "ckpt")
    assert type(inner) is type(model.inner) and inner.config.num_bins == 32
    again = _wrapped(seed=5)
    again.load_state_dict(inner.state_dict())
    x = torch.rand(1, 2, 64, 16)
    assert torch.allclose(again(x), model(x))
    data = VoxAugDataset(tiny_dataset, tiny_cache, VoxAugConfig(cropsize=16, items_per_epoch=4))
    cfg = TrainConfig(steps=2, batch_size=2, warmup_steps=1, log_every=1)
    fit(_wrapped(), losses.separation_l1, data, cfg, tmp_path / "run", stop_after=1)
    assert latest_checkpoint(tmp_path / "run").name == "step-0000001"
    trained = fit(_wrapped(seed=3), losses.separation_l1, data, cfg, tmp_path / "run")
    assert isinstance(trained, HalfResolution)
