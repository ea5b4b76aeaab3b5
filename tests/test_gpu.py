"""The same rules on a CUDA GPU (skipped without one): training with EMA and mixed precision, the
context-length study, diffusion sampling, separation precision, the fused attention kernel, float32
residual scores, no host synchronisation per step, and checkpoints moving between GPU and CPU."""
import json
import warnings

import numpy as np
import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from ftlib import checkpoint, diffusion, losses, models
from ftlib.data.voxaug import VoxAugConfig, VoxAugDataset
from ftlib.layers import MultichannelLinear, MultichannelMultiheadAttention
from ftlib.separation import Separator, predict_mask
from ftlib import recipes
from ftlib.recipes import diffusion_separation
from ftlib.train import TrainConfig, fit, latest_checkpoint

pytestmark = pytest.mark.gpu
CUDA = torch.device("cuda")


@pytest.fixture
def voxaug(tiny_dataset, tiny_cache):
    return VoxAugDataset(tiny_dataset, tiny_cache, VoxAugConfig(cropsize=16, items_per_epoch=12))


def _model(name="frame_transformer", **overrides):
    torch.manual_seed(0)
    return models.build(name, "tiny", **overrides)


@pytest.mark.parametrize("mode", ["auto", "bf16", "fp16"])
def test_training_with_ema_and_mixed_precision_stays_on_the_gpu_and_resumes_on_the_cpu(voxaug, tmp_path, mode):
    cfg = TrainConfig(steps=4, batch_size=2, warmup_steps=1, ema_decay=0.9, mixed_precision=mode, checkpoint_every=2)
    model = fit(_model(), losses.separation_l1, voxaug, cfg, tmp_path / "run", stop_after=2)
    assert next(model.parameters()).is_cuda
    log = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all(np.isfinite(r["loss"]) for r in log if "loss" in r)
    resumed = fit(_model(), losses.separation_l1, voxaug, cfg.replace(device="cpu"), tmp_path / "run")
    assert next(resumed.parameters()).device.type == "cpu"
    assert checkpoint.load_state(latest_checkpoint(tmp_path / "run"))["step"] == 4


def test_recipe_runs_its_context_study_on_the_gpu(tmp_path):
    cfg = recipes.separation.Config.preset("tiny", train={"mixed_precision": "bf16", "ema_decay": 0.9})
    model = recipes.run(cfg, tmp_path / "run")
    assert next(model.parameters()).is_cuda and (tmp_path / "run" / "context_length.json").is_file()


def test_steady_state_steps_do_not_synchronise(voxaug, tmp_path):
    counts = {}
    for steps in (3, 9):
        cfg = TrainConfig(steps=steps, batch_size=2, warmup_steps=1, log_every=steps, num_workers=0)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                fit(_model(), losses.separation_l1, voxaug, cfg, tmp_path / f"run{steps}")
            finally:
                torch.cuda.set_sync_debug_mode(0)
        counts[steps] = sum("synchroniz" in str(w.message) for w in caught)
    assert counts[9] == counts[3], counts  # syncs at start, log and checkpoint only, none per step


def test_diffusion_samples_on_the_gpu():
    denoiser = models.from_config("frame_transformer", diffusion.denoiser_config(
        models.lookup("frame_transformer")[0].preset("tiny"), 2)).to(CUDA)
    objective = diffusion_separation.SeparationDiffusion(diffusion.Diffusion(diffusion.DiffusionConfig.preset("tiny")))
    mask = objective.sample(denoiser, torch.rand(1, 2, 64, 8), sampler="ddim", steps=2)
    assert mask.device.type == "cpu" and torch.isfinite(mask).all()  # back on the mixture's device


@pytest.mark.parametrize("precision", ["auto", "fp32", "bf16", "fp16"])
def test_separation_precisions_give_finite_masks_close_to_float32(precision):
    model = _model().eval()
    magnitude = torch.rand(2, 64, 48)
    reference = predict_mask(model, magnitude, 16, 4, precision="fp32")
    sep = Separator(model, cropsize=16, padding=4, device="cuda", precision=precision)
    mask = predict_mask(sep.model, magnitude, 16, 4, precision=precision)
    assert torch.isfinite(mask).all()
    torch.testing.assert_close(mask, reference, atol=1e-3 if precision == "fp32" else 2e-2, rtol=1e-3)  # TF32 or half


@pytest.mark.parametrize("name", ["frame_transformer", "frame_primer", "temporal_unet"])
def test_fused_families_train_on_the_flash_kernel_alone(name):
    model = _model(name).to(CUDA).train()
    x = torch.rand(2, 2, 64, 32, device=CUDA)
    with sdpa_kernel([SDPBackend.FLASH_ATTENTION]), torch.autocast("cuda", dtype=torch.bfloat16):
        loss = (model(x) * x).mean()  # raises "No available kernel" if SDPA falls back to the math path
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_half_precision_activations_and_float32_residual_scores():
    layer = MultichannelLinear(2, 2, 32, 32).to(CUDA)
    attn = MultichannelMultiheadAttention(2, 32, 2).to(CUDA)
    x = torch.randn(2, 2, 32, 16, device=CUDA)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        assert layer(x).dtype == torch.bfloat16
        _, scores = attn(x, return_scores=True)
        _, chained = attn(x, prev_scores=scores, return_scores=True)
    assert scores.dtype == chained.dtype == torch.float32


def test_checkpoints_trained_on_the_gpu_load_on_the_cpu(tmp_path):
    model = _model().to(CUDA)
    loaded = checkpoint.load(checkpoint.save(model, tmp_path / "ckpt"))
    assert next(loaded.parameters()).device.type == "cpu"
    for (name, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a.cpu(), b), name
