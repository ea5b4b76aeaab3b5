"""ftlib.widgets driven programmatically: changing a control redraws the figure and the status line."""
import json
import subprocess
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from ftlib import evaluate, models, widgets  # noqa: E402
from ftlib.train import TrainConfig  # noqa: E402

STAGES = [{"step": 0, "cropsize": 64, "batch_size": 8}, {"step": 60, "cropsize": 256, "batch_size": 2, "grad_accum": 4}]


def _png(panel) -> bytes:
    return bytes(panel.image.value)


@pytest.mark.slow
def test_import_is_harmless_headless():
    code = "import ftlib.widgets, matplotlib.pyplot as plt; print(len(plt.get_fignums()))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"MPLBACKEND": "Agg", "PATH": ""}, timeout=120)
    assert out.stdout.strip() == "0"


def test_schedule_previewer_follows_its_controls():
    panel = widgets.SchedulePreviewer(TrainConfig(steps=100, warmup_steps=10, lr=1e-3), STAGES)
    assert panel.redraws == 1 and "peak lr 0.001 at step 9" in panel.status and "2 curriculum stages" in panel.status
    first = _png(panel)
    panel.warmup.value = 40
    assert panel.redraws == 2 and "at step 39" in panel.status and _png(panel) != first
    lr_line = panel.figure.axes[0].lines[0]
    expected = TrainConfig(steps=100, warmup_steps=40, lr=1e-3)
    np.testing.assert_allclose(lr_line.get_ydata(), [expected.lr_at(s) for s in range(100)])
    crop_line = panel.figure.axes[1].lines[0]
    assert list(crop_line.get_ydata()) == [64, 256, 256]
    panel.steps.value = 20
    assert panel.warmup.max == 40 and len(panel.figure.axes[0].lines[0].get_xdata()) == 20
    panel.stages.value = "[{\"step\": 5, \"cropsize\": 1, \"batch_size\": 1}]"
    assert "curriculum not understood" in panel.status and "step 0" in panel.status
    assert not plt.get_fignums(), "panel figures never linger as open pyplot figures"


def test_curve_comparer_selects_runs_and_steps():
    logs = {name: [{"step": s, "loss": scale / (s + 1), "lr": 1e-3} for s in range(10)]
            for name, scale in (("a", 1.0), ("b", 2.0))}
    panel = widgets.CurveComparer(logs)
    assert len(panel.figure.axes[0].lines) == 2 and "a: 0.1" in panel.status and "b: 0.2" in panel.status
    panel.runs.value = ("b",)
    assert len(panel.figure.axes[0].lines) == 1 and "a:" not in panel.status
    panel.steps.value = (0, 4)
    assert list(panel.figure.axes[0].lines[0].get_xdata()) == [0, 1, 2, 3, 4] and "b: 0.4" in panel.status
    panel.log_scale.value = False
    assert panel.figure.axes[0].get_yscale() == "linear" and panel.redraws == 4
    with pytest.raises(ValueError, match="at least one training log"):
        widgets.CurveComparer({})


@pytest.fixture(scope="module")
def tiny_models():
    torch.manual_seed(0)
    return {"m0": models.build("frame_transformer", "tiny"), "m1": models.build("frame_transformer", "tiny")}


def test_mask_explorer_time_range_and_model(tiny_models):
    rng = np.random.default_rng(0)
    songs = {"s": rng.standard_normal((2, 44100)).astype(np.float32) * 0.1}
    panel = widgets.MaskExplorer(songs, tiny_models, {"s": songs["s"] * 0.5}, cropsize=8, padding=2)
    full = panel.figure.axes[0].get_images()[0].get_array().shape
    assert full == (64, 44100 // 64 + 1) and "0.0-1.0 s" in panel.status
    panel.time.value = (0.2, 0.5)
    image = panel.figure.axes[0].get_images()[0]
    start, stop = int(0.2 * 44100 / 64), int(0.5 * 44100 / 64) + 1
    assert image.get_array().shape[1] == stop - start
    assert image.get_extent()[0] == pytest.approx(start * 64 / 44100) and "0.2-0.5 s" in panel.status
    before = panel.status
    panel.model.value = "m1"
    assert "m1" in panel.status and panel.status != before and set(panel._cache) == {("s", "m0"), ("s", "m1")}
    mask = panel.separation("s", "m1")["mask"]
    assert f"{float(mask[..., start:stop].mean()):.3f}" in panel.status


def test_ab_player_switches_audio_and_shows_sdr():
    rng = np.random.default_rng(1)
    reference = rng.standard_normal((2, 22050)).astype(np.float32) * 0.1
    candidates = {"A": reference + 0.01 * rng.standard_normal(reference.shape).astype(np.float32),
                  "B": reference * 0.5}
    panel = widgets.ABPlayer(candidates, reference)
    sdr_a, sdr_b = (evaluate.sdr(reference, candidates[k]) for k in "AB")
    assert panel.status.startswith(f"A · SDR {sdr_a:.2f} dB") and f"B · SDR {sdr_b:.2f} dB" in panel.status
    first_audio, first_png = bytes(panel.player.value), _png(panel)
    assert first_audio[:4] == b"RIFF"
    panel.choice.value = "B"
    assert panel.status.startswith(f"B · SDR {sdr_b:.2f} dB") and bytes(panel.player.value) != first_audio
    assert _png(panel) != first_png and panel.figure.axes[0].get_title().startswith("B · SDR")


def test_panel_displays_as_its_widget():
    panel = widgets.SchedulePreviewer()
    bundle = panel._repr_mimebundle_()
    model = bundle["application/vnd.jupyter.widget-view+json"]
    assert model["model_id"] == panel.widget.model_id and json.dumps(bundle["text/plain"])
