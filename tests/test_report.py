"""ftlib.report (run folders -> tables, figures, HTML) and notebooks/60_report.ipynb in smoke mode."""
import base64
import json
import math
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from ftlib import checkpoint, models, plots, report, runs  # noqa: E402
from ftlib.separation import separate_with_mask  # noqa: E402
from ftlib.errors import DataError  # noqa: E402
from ftlib.recipes import separation  # noqa: E402



def _log(path: Path, losses) -> None:
    path.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"step": i, "loss": v, "lr": 1e-3}) for i, v in enumerate(losses)]
    (path / "metrics.jsonl").write_text("\n".join(lines + [json.dumps({"step": len(losses), "valid_loss": 0.5})]) + "\n")


@pytest.fixture
def root(tmp_path):
    """A runs folder: a training run with a context-length study, a two-model ensemble run, an empty run."""
    root = tmp_path / "runs"
    train = runs.Run(root / "20240101-100000-00_quickstart")
    _log(train.path, [1.0, 0.8, 0.6])
    train.save_metrics({"sdr_vocals": 5.0, "input_sdr_vocals": 1.0, "sdr_instrumental": 7.0, "steps": 3})
    separation.save_context_length(train.path, [{"cropsize": 64, "valid_loss": 0.3}, {"cropsize": 16, "valid_loss": 0.5}])
    sep = runs.Run(root / "20240102-100000-50_separate-x")
    for i, losses in enumerate(([0.9, 0.7], [0.95, 0.75])):
        _log(sep.path / "models" / f"model{i}", losses)
    sep.save_metrics({"sdr_vocals_single": 3.0, "sdr_vocals_ensemble": 4.0, "sdr_instrumental_single": 6.0,
                      "sdr_instrumental_ensemble": 6.5, "input_sdr_vocals": 0.5, "csdr_vocals_single": 2.0,
                      "rtf_single": 0.1})
    runs.Run(root / "20240103-100000-05_models")
    return root


def test_collect_reads_logs_metrics_and_context_length(root):
    records = report.collect(root)
    assert [r.label for r in records] == ["00_quickstart", "50_separate-x", "05_models"]
    quick, sep, empty = records
    assert quick.notebook == "00_quickstart" and quick.metrics["steps"] == 3
    assert [c["cropsize"] for c in quick.context_length[""]] == [16, 64]  # sorted
    assert set(sep.logs) == {"models/model0", "models/model1"} and not empty.logs
    logs = report.training_logs(records)
    assert list(logs) == ["00_quickstart", "50_separate-x/models/model0", "50_separate-x/models/model1"]
    assert [r["loss"] for r in logs["00_quickstart"] if "loss" in r] == [1.0, 0.8, 0.6]
    assert report.context_length_table(records) == [{"run": "00_quickstart", **row} for row in quick.context_length[""]]
    overview = {r["run"]: r for r in report.overview(records)}
    assert overview["50_separate-x"]["training logs"] == 2 and overview["00_quickstart"]["context length"] == "yes"


def test_find_runs_patterns_filters_and_errors(root, tmp_path):
    names = lambda paths: [p.name for p in paths]  # noqa: E731
    assert names(report.find_runs(root, "*-50_separate*, *-05_models")) == ["20240102-100000-50_separate-x",
                                                                            "20240103-100000-05_models"]
    assert names(report.find_runs(root, notebook="05_models")) == ["20240103-100000-05_models"]
    assert len(report.find_runs(root, exclude=[root / "20240103-100000-05_models"])) == 2
    assert [r.label for r in report.collect(root, max_runs=1)] == ["05_models"]
    with pytest.raises(DataError, match="'nothing-\\*' matched no folder"):
        report.find_runs(root, "nothing-*")
    with pytest.raises(DataError, match="runs folder not found"):
        report.find_runs(tmp_path / "missing")


def test_duplicate_labels_keep_the_timestamp(tmp_path):
    for stamp in ("20240101-100000", "20240101-110000"):
        runs.Run(tmp_path / f"{stamp}-00_quickstart")
    assert [r.label for r in report.collect(tmp_path)] == ["20240101-100000-00_quickstart",
                                                           "20240101-110000-00_quickstart"]


def test_bad_context_length_file_names_the_file(root):
    run = root / "20240101-100000-00_quickstart"
    (run / separation.CONTEXT_LENGTH_FILE).write_text(json.dumps([{"cropsize": "big", "valid_loss": 1}]))
    with pytest.raises(DataError, match="context_length.json: expected a JSON list"):
        report.load_run(run)


def test_sdr_table_rows_per_run_and_system(root):
    rows = report.sdr_table(report.collect(root))
    assert [(r["run"], r["system"]) for r in rows] == [("00_quickstart", ""), ("50_separate-x", "single"),
                                                       ("50_separate-x", "ensemble")]
    quick, single, ensemble = rows
    assert quick["gain_vocals"] == pytest.approx(4.0) and quick["sdr_instrumental"] == 7.0
    assert ensemble["sdr_vocals"] == 4.0 and ensemble["input_sdr_vocals"] == 0.5
    assert ensemble["gain_vocals"] == pytest.approx(3.5) and single["sdr_instrumental"] == 6.0
    assert single["input_sdr_instrumental"] is None
    fig = plots.sdr_bars(rows)
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["00_quickstart", "50_separate-x · single",
                                                                      "50_separate-x · ensemble"]
    plt.close(fig)


def test_song_evaluations_of_runs_that_scored_the_same_songs(tmp_path):
    root = tmp_path / "runs"

    def scored(name, folder, songs, sdr):
        path = root / name / folder
        path.mkdir(parents=True, exist_ok=True)
        fingerprint = {"sample_rate": 44100, "songs": [{"name": s, "samples": 10, "sha256": {"vocals": s}} for s in songs]}
        rows = [{"song": s, "sdr_vocals": v} for s, v in zip(songs, sdr)]
        (path / "metrics.json").write_text(json.dumps({"songs": rows, "fingerprint": fingerprint}))

    scored("20240101-100000-00_quickstart", "", ["a", "b"], [1.0, 2.0])
    scored("20240102-100000-20_voxaug_finetune", "scratch", ["a", "b"], [1.5, 2.5])
    scored("20240102-100000-20_voxaug_finetune", "finetuned", ["a", "b"], [2.0, 3.0])
    scored("20240103-100000-00_quickstart", "", ["c"], [4.0])  # other songs: left out
    (root / "20240104-100000-05_models").mkdir()
    evaluations = report.song_evaluations(report.collect(root))
    assert [e.system for e in evaluations] == ["20240101-100000-00_quickstart", "20_voxaug_finetune/finetuned",
                                               "20_voxaug_finetune/scratch"]  # two quickstart runs keep their stamps
    assert [e.rows[1]["sdr_vocals"] for e in evaluations] == [2.0, 3.0, 2.5]
    assert report.song_evaluations(report.collect(root, "*05_models*")) == []


def test_figures_from_records(root):
    records = report.collect(root)
    fig = plots.compare_training_curves(report.training_logs(records), step_range=(1, 2))
    ax_loss, ax_lr = fig.axes
    # 3 training curves; validation at step 2 for both separation models, at step 3 (out of range) for the other
    assert len(ax_loss.lines) == 3 + 2 and ax_loss.get_yscale() == "log"
    assert list(ax_loss.lines[0].get_xdata()) == [1, 2] and len(ax_lr.lines) == 3
    fig2 = plots.context_length_curves(report.context_length_table(records))
    assert list(fig2.axes[0].lines[0].get_xdata()) == [16, 64] and fig2.axes[0].get_xscale() == "log"
    assert len(fig2.axes) == 1  # no song scores: the loss panel only
    fig3 = plots.context_length_curves([{"run": "r", "cropsize": 16, "valid_loss": 0.5, "vocals_sdr": 3.0},
                                        {"run": "r", "cropsize": 64, "valid_loss": 0.3, "vocals_sdr": 2.0}])
    assert list(fig3.axes[1].lines[0].get_ydata()) == [3.0, 2.0]
    plt.close("all")


def test_context_length_rows_round_trip_sorted(tmp_path):
    rows = [{"cropsize": 32, "valid_loss": 0.25, "items": 3}, {"cropsize": 8, "valid_loss": 0.5, "items": 9}]
    separation.save_context_length(tmp_path, rows)
    assert separation.context_length(tmp_path) == [rows[1], rows[0]]


def test_models_songs_separation_and_attention(tmp_path):
    torch.manual_seed(0)
    model = models.build("frame_transformer", "tiny")
    run = runs.Run(tmp_path / "20240101-100000-train")
    checkpoint.save(model, run.checkpoints / "best")
    records = report.collect(tmp_path)
    loaded = report.load_models(records)
    assert list(loaded) == ["train"]
    song = report.example_song([], seconds=0.5, seed=3)
    assert song["mixture"].shape == song["vocals"].shape == (2, 22050)
    out = separate_with_mask(loaded["train"], song["mixture"], cropsize=8, padding=2)
    frames = 22050 // 64 + 1
    assert out["mask"].shape == out["magnitude"].shape == (2, 64, frames)
    assert 0 <= out["mask"].min() and out["mask"].max() <= 1
    np.testing.assert_allclose(out["instrumental"] + out["vocals"], song["mixture"], atol=1e-5)
    owner, maps = report.attention_of(loaded, {"train": out}, frames=16)
    assert owner == "train" and maps and all(m.shape[-1] == 16 for m in maps.values())
    fig = plots.mask_comparison(out["magnitude"], {"train": out["mask"]}, out["magnitude"])
    assert len(fig.axes) == 4 + 2  # 2x2 panels and 2 colour bars
    with pytest.raises(ValueError, match="mask of 'bad'"):
        plots.mask_comparison(out["magnitude"], {"bad": out["mask"][..., :3]})
    plt.close("all")


def test_train_schedule_from_config(tmp_path):
    runs.start("nb", run_dir=str(tmp_path / "a"), config={"model": "x"})
    runs.start("nb", run_dir=str(tmp_path / "b"), config={"recipe": "separation", "config": {
        "train": {"steps": 77, "lr": 0.01, "curriculum": [[0, 8, 2]]}}})
    config, stages = report.train_schedule(report.collect(tmp_path))
    assert config.steps == 77 and config.lr == 0.01 and stages == [[0, 8, 2]]
    assert report.train_schedule([]) == (None, [])


def test_html_export_embeds_images_tables_and_audio(tmp_path):
    run = runs.Run(tmp_path / "run")
    page = report.Report("A title", run)
    page.text("Some *text*.")
    fig, ax = plt.subplots()
    ax.plot([0, 1])
    assert page.figure("line", fig) is fig
    page.table([{"name": "a<b", "value": 1.23456}], digits=3)
    page.audio("tone", np.sin(np.linspace(0, 100, 4410, dtype=np.float32))[None].repeat(2, 0), 44100)
    path = page.export()
    text = path.read_text()
    assert path == run.path / "report.html" and (run.figures / "line.png").is_file() and (run.audio / "tone.wav").is_file()
    png = re.search(r'src="data:image/png;base64,([^"]+)"', text).group(1)
    assert base64.b64decode(png) == (run.figures / "line.png").read_bytes()
    assert re.search(r'<audio[^>]*>\s*<source src="data:audio/wav;base64,', text)
    assert "a&lt;b" in text and "1.235" in text and "A title" in text
    assert not re.search(r'<script[^>]+src="http', text), "no script fetched from the network"
    plt.close(fig)
