"""The training engine: schedule, loss decrease, exact resume, checkpoints, NaN steps."""
import json

import pytest
import torch

from ftlib import checkpoint, losses, models
from ftlib.data.voxaug import VoxAugConfig, VoxAugDataset
from ftlib.train import TrainConfig, fit, latest_checkpoint, warmup_poly


def _model(seed=0):
    torch.manual_seed(seed)
    return models.build("frame_transformer", "tiny")


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


def test_checkpoints_keep_last_and_best(voxaug, tiny_dataset, tiny_cache, tmp_path):
    from ftlib.data.voxaug import ValidationCrops

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
