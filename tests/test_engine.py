"""The training engine: schedule, loss decrease, exact resume, checkpoints, NaN steps, curriculum, EMA,
mixed precision and the context-length study."""
import json

import pytest
import torch

from ftlib import checkpoint, losses, models
from ftlib.data.validation import ValidationCrops
from ftlib.data.voxaug import VoxAugConfig, VoxAugDataset
from ftlib.train import TrainConfig, context_length_study, fit, latest_checkpoint, warmup_poly
from ftlib.train.ema import EMA


def _model(seed=0, **overrides):
    torch.manual_seed(seed)
    return models.build("frame_transformer", "tiny", **overrides)


@pytest.fixture
def voxaug(tiny_dataset, tiny_cache):
    return VoxAugDataset(tiny_dataset, tiny_cache, VoxAugConfig(cropsize=16, items_per_epoch=12))


def _log(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_schedule_warms_up_then_decays_to_floor():
    values = [warmup_poly(s, 100, 10, power=2.0, floor=0.05) for s in range(130)]
    assert values[0] == pytest.approx(0.1) and values[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(values[10:], values[11:])), "monotone decay after warmup"
    assert min(values) == pytest.approx(0.05) and values[100] == values[129] == pytest.approx(0.05)


def test_short_training_run_lowers_the_loss(voxaug, tmp_path):
    cfg = TrainConfig(steps=40, batch_size=4, lr=3e-3, warmup_steps=4, log_every=5)
    fit(_model(), losses.separation_l1, voxaug, cfg, tmp_path / "run")
    log = [r["loss"] for r in _log(tmp_path / "run") if "loss" in r]
    assert len(log) == 8
    assert log[-1] < 0.8 * log[0], log


def test_resume_reproduces_the_uninterrupted_run(voxaug, tmp_path):
    cfg = TrainConfig(steps=8, batch_size=2, lr=1e-3, warmup_steps=2, log_every=1, checkpoint_every=3)
    straight = fit(_model(), losses.separation_l1, voxaug, cfg, tmp_path / "a")
    fit(_model(), losses.separation_l1, voxaug, cfg, tmp_path / "b", stop_after=5)
    assert latest_checkpoint(tmp_path / "b").name == "step-0000005"
    resumed = fit(_model(seed=99), losses.separation_l1, voxaug, cfg, tmp_path / "b")
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    assert _log(tmp_path / "a") == [
        {**r, "elapsed": x["elapsed"]} for r, x in zip(_log(tmp_path / "b"), _log(tmp_path / "a"))
    ]


@pytest.mark.slow
def test_checkpoints_keep_last_and_best(voxaug, tiny_dataset, tiny_cache, tmp_path):
    from ftlib.data.validation import ValidationCrops

    valid = ValidationCrops(tiny_dataset / "valid", tiny_cache, cropsize=16)
    cfg = TrainConfig(steps=6, batch_size=2, checkpoint_every=1, eval_every=2, keep_last=2, log_every=1)
    fit(_model(), losses.separation_l1, voxaug, cfg, tmp_path / "run", valid_data=valid)
    names = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert names == ["best", "step-0000005", "step-0000006"]
    best = min(r["valid_loss"] for r in _log(tmp_path / "run") if "valid_loss" in r)
    assert checkpoint.load_state(tmp_path / "run" / "checkpoints" / "best")["best"] == best
    assert "module." not in "".join(checkpoint.load(tmp_path / "run" / "checkpoints" / "best").state_dict())


def test_non_finite_steps_are_skipped_and_counted(voxaug, tmp_path):
    calls = {"n": 0}

    def flaky_loss(model, batch):
        calls["n"] += 1
        loss, metrics = losses.separation_l1(model, batch)
        return (loss * float("nan") if calls["n"] == 2 else loss), metrics

    model = fit(_model(), flaky_loss, voxaug, TrainConfig(steps=4, batch_size=2, log_every=1), tmp_path / "run")
    assert _log(tmp_path / "run")[-1]["skipped_steps"] == 1
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_wandb_logs_offline_into_the_run_folder(voxaug, tmp_path):
    fit(_model(), losses.separation_l1, voxaug, TrainConfig(steps=2, batch_size=2, wandb=True), tmp_path / "run")
    assert list((tmp_path / "run" / "wandb").glob("offline-run-*"))


# ------------------------------------------------------------------- curriculum, EMA, precision

def test_curriculum_switches_crop_size_and_batch_and_resumes_across_stages(tiny_dataset, tiny_cache, tmp_path):
    def data(cropsize):
        return VoxAugDataset(tiny_dataset, tiny_cache, VoxAugConfig(cropsize=cropsize, items_per_epoch=12))

    cfg = TrainConfig(steps=6, lr=1e-3, warmup_steps=1, log_every=1, checkpoint_every=1,
                      curriculum=((0, 16, 2), (3, 32, 1, 2)))
    straight = fit(_model(), losses.separation_l1, data, cfg, tmp_path / "a")
    log = [r for r in _log(tmp_path / "a") if "loss" in r]
    assert [(r["cropsize"], r["batch"]) for r in log] == [(16, 2)] * 3 + [(32, 2)] * 3
    fit(_model(), losses.separation_l1, data, cfg, tmp_path / "b", stop_after=4)
    resumed = fit(_model(seed=5), losses.separation_l1, data, cfg, tmp_path / "b")
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name


def test_curriculum_is_validated():
    with pytest.raises(ValueError, match="start at step 0"):
        TrainConfig(curriculum=((5, 16, 2),))
    with pytest.raises(ValueError, match="cropsize >= 1"):
        TrainConfig(curriculum=((0, 0, 2),))


def test_ema_averages_and_resumes_exactly(voxaug, tmp_path):
    model = torch.nn.Linear(2, 2)
    ema = EMA(model, decay=0.5)
    with torch.no_grad():
        model.weight.add_(1.0)
    start = ema.shadow["weight"].clone()
    ema.update(model)
    d = min(0.5, 2 / 11)
    assert torch.allclose(ema.shadow["weight"], d * start + (1 - d) * model.weight)

    cfg = TrainConfig(steps=6, batch_size=2, lr=1e-2, warmup_steps=1, ema_decay=0.9, checkpoint_every=2)
    straight = fit(_model(), losses.separation_l1, voxaug, cfg, tmp_path / "a")
    raw = checkpoint.load(latest_checkpoint(tmp_path / "a"))
    assert not all(torch.equal(a, b) for a, b in zip(straight.state_dict().values(), raw.state_dict().values()))
    ema_saved = checkpoint.load(tmp_path / "a" / "checkpoints" / "ema")
    assert all(torch.equal(a, b) for a, b in zip(straight.state_dict().values(), ema_saved.state_dict().values()))
    fit(_model(), losses.separation_l1, voxaug, cfg, tmp_path / "b", stop_after=3)
    resumed = fit(_model(), losses.separation_l1, voxaug, cfg, tmp_path / "b")
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name


class _InfGradient(torch.autograd.Function):
    """Identity forward; backward sends an infinite gradient (a finite loss that overflows)."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * float("inf")


class _OverflowAt:
    """Separation L1 whose gradient overflows at one step (None: never); records the autocast dtypes."""

    def __init__(self, step):
        self.overflow_step, self.step, self.autocast = step, -1, set()

    def begin_step(self, step):
        self.step = step

    def __call__(self, model, batch):
        self.autocast.add(torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None)
        loss, metrics = losses.separation_l1(model, batch)
        return (_InfGradient.apply(loss) if self.step == self.overflow_step else loss), metrics


def test_fp16_scales_the_loss_skips_overflowing_steps_and_resumes_the_scaler(voxaug, tmp_path):
    cfg = TrainConfig(steps=4, batch_size=2, warmup_steps=1, log_every=1, mixed_precision="fp16",
                      checkpoint_every=1, keep_last=4)
    loss_fn = _OverflowAt(1)
    straight = fit(_model(), loss_fn, voxaug, cfg, tmp_path / "a")
    assert loss_fn.autocast == {torch.float16}
    assert [r["skipped_steps"] for r in _log(tmp_path / "a")] == [0, 1, 1, 1]
    checkpoints = tmp_path / "a" / "checkpoints"
    assert checkpoint.load_state(checkpoints / "step-0000004")["scaler"]["scale"] == 2.0 ** 15  # halved once
    before, after = (checkpoint.load(checkpoints / f"step-000000{i}") for i in (1, 2))
    assert all(torch.equal(a, b) for a, b in zip(before.state_dict().values(), after.state_dict().values()))
    fit(_model(), _OverflowAt(1), voxaug, cfg, tmp_path / "b", stop_after=2)
    resumed = fit(_model(), _OverflowAt(1), voxaug, cfg, tmp_path / "b")
    assert checkpoint.load_state(tmp_path / "b" / "checkpoints" / "step-0000004")["scaler"]["scale"] == 2.0 ** 15
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name


def test_bf16_mixed_precision_trains_with_finite_losses(voxaug, tmp_path):
    cfg = TrainConfig(steps=3, batch_size=2, warmup_steps=1, log_every=1, mixed_precision="bf16")
    loss_fn = _OverflowAt(None)
    model = fit(_model(), loss_fn, voxaug, cfg, tmp_path / "run")
    assert loss_fn.autocast == {torch.bfloat16}
    assert all(r["skipped_steps"] == 0 and r["loss"] == r["loss"] for r in _log(tmp_path / "run"))
    assert all(p.dtype == torch.float32 for p in model.parameters())  # weights stay float32


def test_context_length_study_scores_each_crop_size(tiny_dataset, tiny_cache):
    valid = ValidationCrops(tiny_dataset / "valid", tiny_cache, cropsize=16)
    rows = context_length_study(_model(), valid.at, losses.separation_l1, cropsizes=(16, 64, 10**6))
    assert [r["cropsize"] for r in rows] == [16, 64]  # a crop longer than every song is left out
    assert rows[0]["items"] > rows[1]["items"] > 0 and all(r["valid_loss"] > 0 for r in rows)


def test_a_run_saved_before_per_step_seeds_resumes(voxaug, tmp_path):
    """Training states written by earlier versions carry RNG states and no process count: still resumable."""
    cfg = TrainConfig(steps=4, batch_size=2, checkpoint_every=2, device="cpu")
    fit(_model(), losses.separation_l1, voxaug, cfg, tmp_path / "run", stop_after=2)
    folder = latest_checkpoint(tmp_path / "run")
    state = checkpoint.load_state(folder)
    state.pop("num_processes")
    state["rng"] = {"torch": torch.get_rng_state(), "python": [3, [1, 2], None]}
    checkpoint.save(checkpoint.load(folder), folder, **state)
    fit(_model(), losses.separation_l1, voxaug, cfg, tmp_path / "run")
    assert checkpoint.load_state(latest_checkpoint(tmp_path / "run"))["step"] == 4


def test_prefetching_thread_stacks_batches_like_torch():
    from torch.utils.data import default_collate

    from ftlib.train.engine import _stack_in_numpy

    torch.manual_seed(0)
    items = [{"mixture": torch.randn(2, 8, 4, dtype=torch.complex64), "target": torch.rand(2, 4, 8).transpose(1, 2),
              "activity": torch.rand(4) > 0.5} for _ in range(3)]
    batch, reference = _stack_in_numpy(items), default_collate(items)
    assert batch.keys() == reference.keys()
    for key in batch:
        assert batch[key].dtype == reference[key].dtype
        torch.testing.assert_close(batch[key], reference[key], rtol=0, atol=0)
    mixed = [{"mixture": torch.zeros(2), "index": i} for i in range(3)]
    assert _stack_in_numpy(mixed)["index"].tolist() == [0, 1, 2]
