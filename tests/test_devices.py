"""Device and precision rules that can be checked without a GPU: where tensors are created (the
meta device stands in for an accelerator), which precision "auto" picks, float32 residual scores
under autocast, per-step seeds, and refusals when processes or devices disagree."""
import json

import pytest
import torch
from torch import nn

from ftlib import checkpoint, diffusion, losses, models
from ftlib.recipes import diffusion_separation
from ftlib.separation import separator as separate
from ftlib.data.voxaug import VoxAugConfig, VoxAugDataset
from ftlib.errors import CheckpointError, ConfigError, SeparationError
from ftlib.layers import MultichannelLinear, MultichannelMultiheadAttention, residual_links
from ftlib.models import inspect
from ftlib.train import TrainConfig, context_length_study, fit, latest_checkpoint, precision, validation_loss
from ftlib.train.ema import EMA
from ftlib.train.engine import step_seed


class _Reached(Exception):
    """Raised by a probe with the device its input arrived on."""


class _Probe(nn.Module):
    """A module whose parameter lives on ``device``; raises _Reached(device of its input)."""

    def __init__(self, device="meta"):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(1, device=device))
        self.config = models.lookup("frame_transformer")[0].preset("tiny")

    def forward(self, x, *args, **kwargs):
        raise _Reached(x.device)


def _batches(n=2):
    return [{"mixture": torch.rand(2, 64, 8), "target": torch.rand(2, 64, 8)} for _ in range(n)]


# ------------------------------------------------------------------------ tensors follow the model

def test_ema_shadows_live_on_the_model_device_and_loaded_state_moves_there():
    model = nn.Linear(3, 2, device="meta")
    ema = EMA(model, 0.9)
    assert {v.device.type for v in ema.shadow.values()} == {"meta"}
    ema.update(model, keep=torch.tensor(True, device="meta"))
    ema.load_state_dict({"updates": 3, "shadow": {k: torch.zeros(v.shape) for k, v in ema.shadow.items()}})
    assert {v.device.type for v in ema.shadow.values()} == {"meta"} and ema.updates == 3


def test_ema_update_is_gated_by_a_device_flag():
    model = nn.Linear(2, 2)
    ema = EMA(model, 0.5)
    start = {k: v.clone() for k, v in ema.shadow.items()}
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model, keep=torch.tensor(False))
    assert all(torch.equal(start[k], ema.shadow[k]) for k in start)
    ema.update(model, keep=torch.tensor(True))
    assert not torch.equal(start["weight"], ema.shadow["weight"])


def test_validation_and_context_study_run_on_the_model_device():
    with pytest.raises(_Reached) as seen:
        validation_loss(_Probe(), _batches(), losses.separation_l1, batch_size=1)
    assert seen.value.args[0].type == "meta"
    with pytest.raises(_Reached) as seen:
        context_length_study(_Probe(), lambda cropsize: _batches(), losses.separation_l1, [8])
    assert seen.value.args[0].type == "meta"


def test_diffusion_samples_on_the_denoiser_device_with_float32_tables():
    process = diffusion.Diffusion(diffusion.DiffusionConfig.preset("tiny"))
    with pytest.raises(_Reached) as seen:
        process.sample(_Probe(), (1, 2, 64, 4), condition=torch.rand(1, 2, 64, 4))
    assert seen.value.args[0].type == "meta"  # the CPU condition went along to the denoiser's device
    table = process.table("sqrt_ab", torch.device("meta"))
    assert table.dtype == torch.float32 and table.device.type == "meta"  # MPS has no float64
    objective = diffusion_separation.SeparationDiffusion(process)
    with pytest.raises(_Reached) as seen:
        objective.sample(_Probe(), torch.rand(1, 2, 64, 4))
    assert seen.value.args[0].type == "meta"


# ----------------------------------------------------------------------------------- precision

def test_auto_precision_follows_the_hardware(monkeypatch):
    assert precision.resolve("auto", "cpu") == "no" and precision.resolve("fp16", "cpu") == "fp16"
    assert separate.inference_dtype("auto", torch.device("cpu")) is None
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    for capability, mode, dtype in (((7, 5), "fp16", torch.float16), ((8, 0), "bf16", torch.bfloat16)):
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None, c=capability: c)
        assert precision.resolve("auto", "cuda") == mode  # T4/V100 only emulate bf16
        assert separate.inference_dtype("auto", torch.device("cuda")) == dtype
    assert separate.inference_dtype("fp32", torch.device("cuda")) is None
    with pytest.raises(ConfigError):
        separate.inference_dtype("fp8", torch.device("cpu"))


def test_multichannel_linear_keeps_the_autocast_dtype_and_matches_matmul():
    layer = MultichannelLinear(2, 3, 16, 8)
    x = torch.randn(4, 2, 16, 5)
    reference = torch.matmul(layer.weight, torch.einsum("oc,bcft->boft", layer.mix, x)) + layer.bias
    torch.testing.assert_close(layer(x), reference)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert layer(x).dtype == torch.bfloat16  # a float32 bias would promote it back


def test_residual_scores_are_float32_under_autocast_and_match_the_float32_path():
    torch.manual_seed(0)
    attn = MultichannelMultiheadAttention(2, 32, 2)
    x = torch.randn(2, 2, 32, 12)
    _, prev = attn(x, return_scores=True)
    out32, scores32 = attn(x, prev_scores=prev, return_scores=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out16, scores16 = attn(x, prev_scores=prev, return_scores=True)
    assert scores16.dtype == torch.float32
    torch.testing.assert_close(scores16, scores32, atol=0.1, rtol=0.05)  # bf16 q/k, float32 logits


def test_residual_chains_link_neighbours_of_equal_shape_only():
    assert residual_links(True, ["a", "a", "b", "c", "c", "c"]) == (
        [False, True, False, False, True, True], [True, False, False, True, True, False])
    assert residual_links(False, ["a", "a"]) == ([False, False], [False, False])
    # temporal U-Net levels all have their own frame count: no chain, no explicit path, no score maps
    assert inspect.score_memory("temporal_unet", "tiny", residual_attention=True, batch_size=2, frames=32) == 0
    assert inspect.score_memory("frame_transformer", "tiny", residual_attention=True, batch_size=2, frames=32) > 0


def test_score_memory_counts_the_saved_attention_weights():
    torch.manual_seed(0)
    model = models.build("frame_transformer", "tiny", residual_attention=True).train()
    x = torch.rand(2, 2, 64, 24)  # 24 frames: no weight matrix is 24 x 24
    saved = {}

    def pack(t):
        if t.shape[-2:] == (24, 24):
            saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), torch.autocast("cpu", dtype=torch.bfloat16):
        model(x)
    assert sum(saved.values()) == inspect.score_memory("frame_transformer", "tiny", batch_size=2, frames=24,
                                                       residual_attention=True)


# ------------------------------------------------------------------------------- separation

class _Fragile(nn.Module):
    """A mask model that overflows under autocast (``broken``: always) and counts its calls."""

    def __init__(self, broken=False):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))
        self.config = models.lookup("frame_transformer")[0].preset("tiny")
        self.broken, self.calls = broken, []

    def forward(self, x):
        half = torch.is_autocast_enabled(x.device.type)
        self.calls.append(half)
        if half or self.broken:
            return x * float("nan")
        return torch.sigmoid(x * self.scale)


def test_separation_recomputes_a_non_finite_batch_in_float32_and_refuses_a_broken_model():
    wave = torch.randn(2, 64 * 40).numpy() * 0.1
    model = _Fragile()
    sep = separate.Separator(model, cropsize=16, padding=4, device="cpu", precision="bf16")
    stems = sep.separate(wave)
    assert all(torch.isfinite(torch.from_numpy(s)).all() for s in stems.values())
    assert model.calls[:2] == [True, False]  # autocast, then float32 for the same batch
    with pytest.raises(SeparationError, match="NaN or infinite"):
        separate.Separator(_Fragile(broken=True), cropsize=16, padding=4, device="cpu").separate(wave)
    with pytest.raises(ConfigError):
        separate.Separator(model, device="cpu", precision="half")


# --------------------------------------------------------------------------- seeds and resume

def test_step_seeds_differ_per_process_and_step_and_repeat():
    seeds = {step_seed(0, rank, step) for rank in range(4) for step in range(100)}
    assert len(seeds) == 400 and step_seed(0, 1, 7) == step_seed(0, 1, 7) != step_seed(1, 1, 7)


@pytest.fixture
def voxaug(tiny_dataset, tiny_cache):
    return VoxAugDataset(tiny_dataset, tiny_cache, VoxAugConfig(cropsize=16, items_per_epoch=12))


def test_every_step_draws_from_its_own_seed(voxaug, tmp_path):
    draws = []

    def loss_fn(model, batch):
        draws.append(float(torch.rand(())))
        return losses.separation_l1(model, batch)

    torch.manual_seed(0)
    fit(models.build("frame_transformer", "tiny"), loss_fn, voxaug, TrainConfig(steps=3, batch_size=2, device="cpu"),
        tmp_path / "run")
    expected = [float(torch.rand((), generator=torch.Generator().manual_seed(step_seed(0, 0, s)))) for s in range(3)]
    assert draws == expected


def test_dropout_runs_resume_exactly(voxaug, tmp_path):
    cfg = TrainConfig(steps=5, batch_size=2, warmup_steps=1, checkpoint_every=1, device="cpu")

    def model():
        torch.manual_seed(0)
        return models.build("frame_transformer", "tiny", dropout=0.2)

    straight = fit(model(), losses.separation_l1, voxaug, cfg, tmp_path / "a")
    fit(model(), losses.separation_l1, voxaug, cfg, tmp_path / "b", stop_after=2)
    resumed = fit(model(), losses.separation_l1, voxaug, cfg, tmp_path / "b")
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name


def test_resuming_with_another_number_of_processes_is_refused(voxaug, tmp_path):
    torch.manual_seed(0)
    cfg = TrainConfig(steps=4, batch_size=2, checkpoint_every=2, device="cpu")
    fit(models.build("frame_transformer", "tiny"), losses.separation_l1, voxaug, cfg, tmp_path / "run", stop_after=2)
    state = latest_checkpoint(tmp_path / "run") / "state.json"
    skeleton = json.loads(state.read_text())
    for pair in skeleton["__dict__"]:
        if pair[0] == "num_processes":
            pair[1] = 2
    state.write_text(json.dumps(skeleton))
    with pytest.raises(CheckpointError, match="trained with 2 process"):
        fit(models.build("frame_transformer", "tiny"), losses.separation_l1, voxaug, cfg, tmp_path / "run")


def test_activity_head_asks_ddp_to_find_unused_parameters():
    assert models.build("asym_unet_mct", "tiny", activity_head=True).find_unused_parameters
    assert not models.build("asym_unet_mct", "tiny").find_unused_parameters


def test_checkpoints_hold_cpu_tensors(tmp_path):
    model = models.build("frame_transformer", "tiny")
    path = checkpoint.save(model, tmp_path / "ckpt")
    assert {t.device.type for t in checkpoint.load_weights(path).values()} == {"cpu"}
    assert {p.device.type for p in checkpoint.load(path).parameters()} == {"cpu"}
