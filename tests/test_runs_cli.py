"""Run folders (ftlib.runs) and the ftlib console script (ftlib.cli)."""
import json
import math
import re
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from ftlib import cli, runs
from ftlib.errors import AudioError, FtlibError

REPO = Path(__file__).parents[1]


@pytest.fixture(autouse=True)
def isolated_runs(tmp_path, monkeypatch):
    root = tmp_path / "runs"
    monkeypatch.setenv("FTLIB_RUNS", str(root))
    return root


# ------------------------------------------------------------------------------------ runs.py

def test_new_run_dir_naming_uniqueness_and_tag(isolated_runs):
    first = runs.new_run_dir("notebooks/00_quickstart.ipynb", tag="lr=1e-3 big!")
    second = runs.new_run_dir("00_quickstart", tag="lr=1e-3 big!")
    assert first.parent == isolated_runs and first.is_dir() and second.is_dir()
    assert re.fullmatch(r"\d{8}-\d{6}-00_quickstart-lr_1e-3_big(-\d+)?", first.name)
    assert first != second
    plain = runs.new_run_dir("02_train", root=isolated_runs / "other")
    assert re.fullmatch(r"\d{8}-\d{6}-02_train", plain.name)
    assert runs.new_run_dir("03_x", root="").parent == isolated_runs  # an empty notebook parameter: the default


def test_new_run_dir_same_second_gets_suffix(tmp_path, monkeypatch):
    monkeypatch.setattr(runs.time, "strftime", lambda fmt: "20240101-120000")
    names = [runs.new_run_dir("nb", root=tmp_path).name for _ in range(3)]
    assert names == ["20240101-120000-nb", "20240101-120000-nb-2", "20240101-120000-nb-3"]


def test_run_artefacts_round_trip(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import soundfile as sf

    run = runs.Run(tmp_path / "r")
    assert all((run.path / d).is_dir() for d in ("figures", "audio", "checkpoints"))
    fig, ax = plt.subplots()
    ax.plot([0, 1])
    png = run.save_figure("loss", fig)
    assert png == run.path / "figures" / "loss.png" and png.stat().st_size > 0
    assert plt.fignum_exists(fig.number)  # left open for the notebook to display
    plt.close(fig)

    wav = run.save_audio("mix", np.zeros((2, 441), np.float32), sample_rate=44100)
    assert wav == run.path / "audio" / "mix.wav" and sf.info(str(wav)).channels == 2

    assert run.load_metrics() == {}
    run.save_metrics({"sdr": np.float32(5.5), "steps": np.int64(3), "bad": float("nan"), "name": "x"})
    metrics = run.load_metrics()
    assert metrics == {"sdr": 5.5, "steps": 3, "bad": None, "name": "x"}
    assert "NaN" not in (run.path / "metrics.json").read_text()

    run.save_config({"channels": 4, "kernel": (3, 3)})
    assert json.loads((run.path / "config.json").read_text()) == {"channels": 4, "kernel": [3, 3]}


def test_save_metrics_torch_scalar(tmp_path):
    torch = pytest.importorskip("torch")
    run = runs.Run(tmp_path / "r")
    run.save_metrics({"loss": torch.tensor(0.25), "inf": torch.tensor(math.inf)})
    assert run.load_metrics() == {"loss": 0.25, "inf": None}


def test_read_log_skips_truncated_last_line(tmp_path):
    run = runs.Run(tmp_path / "r")
    assert run.read_log() == []
    (run.path / "metrics.jsonl").write_text('{"step": 1, "loss": 0.5}\n{"step": 2, "loss": 0.4}\n{"step": 3, "lo')
    assert run.read_log() == [{"step": 1, "loss": 0.5}, {"step": 2, "loss": 0.4}]


def test_start_uses_given_dir_and_saves_config(tmp_path, isolated_runs):
    given = runs.start("01_data", run_dir=str(tmp_path / "given"), config={"a": 1})
    assert given.path == (tmp_path / "given").resolve()
    assert json.loads((given.path / "config.json").read_text()) == {"a": 1}
    fresh = runs.start("01_data", run_dir="", tag="t")
    assert fresh.path.parent == isolated_runs.resolve() and fresh.path.name.endswith("-01_data-t")


def test_list_runs_status_and_metrics(isolated_runs):
    done = runs.start("02_train", tag="a")
    done.save_metrics({"sdr": 4.25, "curve": [1, 2], "steps": 10})
    runs.start("03_eval")
    (isolated_runs / "README.md").write_text("runs\n")
    rows = runs.list_runs()
    assert [r["run"] for r in rows] == sorted(p.name for p in isolated_runs.iterdir() if p.is_dir())
    by_nb = {r["notebook"]: r for r in rows}
    assert by_nb["02_train"]["status"] == "done" and by_nb["02_train"]["sdr"] == 4.25
    assert "curve" not in by_nb["02_train"] and by_nb["02_train"]["steps"] == 10
    assert by_nb["03_eval"]["status"] == "incomplete"
    assert runs.list_runs(isolated_runs / "missing") == []


# ------------------------------------------------------------------------------------- cli.py

def test_parse_value():
    assert [cli.parse_value(v) for v in ("true", "False", "None", "null", "21", "1e-3", "abc")] == [
        True, False, None, None, 21, 1e-3, "abc"
    ]


def test_cli_runs_table_and_json(isolated_runs, capsys):
    run = runs.start("02_train")
    run.save_metrics({"sdr": 4.25})
    runs.start("03_eval")
    assert cli.main(["runs", "--runs-dir", str(isolated_runs)]) == 0
    out = capsys.readouterr().out
    for row in runs.list_runs():
        assert row["run"] in out
    assert "sdr" in out and "4.25" in out and "incomplete" in out
    assert cli.main(["runs", "--json"]) == 0
    assert [r["status"] for r in json.loads(capsys.readouterr().out)] == ["done", "incomplete"]


def test_cli_runs_notebook_filter(isolated_runs, capsys):
    runs.start("02_train").save_metrics({"sdr": 4.25})
    runs.start("03_eval", tag="x")
    assert [r["notebook"] for r in runs.list_runs(notebook="03_eval.ipynb")] == ["03_eval"]
    assert cli.main(["runs", "--notebook", "02_train"]) == 0
    out = capsys.readouterr().out
    assert "02_train" in out and "03_eval" not in out
    assert cli.main(["runs", "--notebook", "99_none"]) == 0
    assert "no runs of 99_none" in capsys.readouterr().out


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--version"])
    assert exit_info.value.code == 0 and "0." in capsys.readouterr().out


def _notebook(path: Path, body: str, extra_parameters: str = "") -> Path:
    import nbformat

    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('x = 1\nrun_dir = ""\n' + extra_parameters)
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(path))
    return path


@pytest.fixture
def kernel_env(monkeypatch):
    pytest.importorskip("papermill")
    monkeypatch.setenv("PYTHONPATH", str(REPO))


def _presets(notebook: Path, **presets: str) -> None:
    folder = notebook.parent / "params" / notebook.stem
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in presets.items():
        (folder / f"{name}.yaml").write_text(text)


def test_cli_run_notebook(tmp_path, isolated_runs, kernel_env, capsys):
    nb = _notebook(tmp_path / "tiny.ipynb", (
        "import json, pathlib\n"
        "pathlib.Path(run_dir, 'metrics.json').write_text(json.dumps({'value': x * 2, 'y': y}))"
    ), "y = 0")
    _presets(nb, smoke="x: 1\ny: 3\n")  # x overridden by -f, then by -p
    params = tmp_path / "params.yaml"
    params.write_text("x: 5\n")
    assert cli.main(["run", str(nb), "--preset", "smoke", "-f", str(params), "-p", "x", "21", "--tag", "t"]) == 0
    [run_dir] = list(isolated_runs.iterdir())
    assert str(run_dir) in capsys.readouterr().out
    assert run_dir.name.endswith("-tiny-t") and (run_dir / "tiny.ipynb").is_file()
    assert json.loads((run_dir / "metrics.json").read_text()) == {"value": 42, "y": 3}


def test_resolve_parameters_order(tmp_path):
    nb = _notebook(tmp_path / "nb.ipynb", "pass")
    _presets(nb, smoke="a: 1\nb: 1\nc: 1\n", gpu="a: 9\n")
    first, second = tmp_path / "1.yaml", tmp_path / "2.yaml"
    first.write_text("b: 2\nc: 2\n")
    second.write_text("c: 3\n")
    assert runs.presets(nb) == {"gpu": nb.parent / "params" / "nb" / "gpu.yaml",
                                "smoke": nb.parent / "params" / "nb" / "smoke.yaml"}
    assert runs.resolve_parameters(nb, "smoke", [first, second], {"d": 4}) == {"a": 1, "b": 2, "c": 3, "d": 4}
    assert runs.resolve_parameters(nb, "", [second]) == {"c": 3}
    (tmp_path / "bad.yaml").write_text("- a list\n")
    with pytest.raises(FtlibError, match="bad.yaml must hold a mapping"):
        runs.resolve_parameters(nb, files=[tmp_path / "bad.yaml"])


def test_cli_run_missing_preset_lists_the_available_ones(tmp_path, capsys):
    nb = _notebook(tmp_path / "nb.ipynb", "pass")
    assert cli.main(["run", str(nb), "--preset", "smoke"]) == 2
    err = capsys.readouterr().err
    assert "no preset 'smoke'" in err and "available: none" in err
    _presets(nb, cpu="a: 1\n", gpu="a: 2\n")
    assert cli.main(["run", str(nb), "--preset", "smoke"]) == 2
    err = capsys.readouterr().err
    assert "no preset 'smoke'" in err and "params/nb/smoke.yaml" in err and "available: cpu, gpu" in err


def test_execute_raises_notebook_failed(tmp_path, isolated_runs, kernel_env):
    nb = _notebook(tmp_path / "bad.ipynb", "raise ValueError('boom')")
    with pytest.raises(runs.NotebookFailed, match="ValueError: boom") as info:
        runs.execute(nb, {"x": 2}, root=tmp_path / "out")
    assert info.value.run_dir.parent == tmp_path / "out" and (info.value.run_dir / "bad.ipynb").is_file()


def test_cli_run_failing_notebook(tmp_path, isolated_runs, kernel_env, capsys):
    nb = _notebook(tmp_path / "bad.ipynb", "raise ValueError('boom')")
    assert cli.main(["run", str(nb), "--runs-dir", str(isolated_runs)]) == 1
    err = capsys.readouterr().err
    [run_dir] = list(isolated_runs.iterdir())
    assert str(run_dir) in err and "ValueError" in err and "boom" in err
    assert "Traceback" not in err


def test_cli_run_missing_notebook_or_kernel(tmp_path, kernel_env, capsys):
    assert cli.main(["run", str(tmp_path / "nope.ipynb")]) == 2
    assert "nope.ipynb" in capsys.readouterr().err
    nb = _notebook(tmp_path / "ok.ipynb", "pass")
    assert cli.main(["run", str(nb), "--kernel", "no-such-kernel"]) == 2
    assert "error: no Jupyter kernel named 'no-such-kernel'" in capsys.readouterr().err


# ---------------------------------------------------------------- separate / evaluate (fakes)

class FakeSeparator:
    created = []

    def __init__(self, checkpoint, options):
        self.checkpoint, self.options = checkpoint, options
        self.settings = "cropsize 256 (the default), padding 64"

    @classmethod
    def from_checkpoint(cls, checkpoint, **options):
        if not Path(checkpoint).exists():
            raise FtlibError(f"{checkpoint}: no such checkpoint")
        sep = cls(checkpoint, options)
        cls.created.append(sep)
        return sep

    def separate_file(self, path, outdir, fmt="wav", vocals=True, **options):
        if Path(path).stem == "broken":
            raise AudioError(f"{path}: cannot decode audio")
        stems = ["instruments", "vocals"] if vocals else ["instruments"]
        return {s: str(Path(outdir) / f"{Path(path).stem}_{s}.{fmt}") for s in stems}


@pytest.fixture
def fake_modules(monkeypatch):
    """The CLI's Separator and folder evaluation replaced by fakes (no model, no audio)."""
    import ftlib.evaluate
    import ftlib.separation

    FakeSeparator.created = []
    calls = []

    def evaluate_folder(folder, estimates=None, separator=None, **options):
        calls.append((folder, estimates, separator))
        return [{"song": "a", "sdr": 5.0}, {"song": "b", "sdr": 3.0, "extra": 1}]

    def run_evaluation(folder, estimates=None, separator=None, **options):
        rows = evaluate_folder(folder, estimates, separator)
        return ftlib.evaluate.Evaluation(options.get("name") or "fake", rows, {"songs": []})

    monkeypatch.setattr(ftlib.separation, "Separator", FakeSeparator)
    monkeypatch.setattr(ftlib.evaluate, "evaluate_folder", evaluate_folder)
    monkeypatch.setattr(ftlib.evaluate, "run_evaluation", run_evaluation)
    monkeypatch.setattr(ftlib.evaluate, "format_table", lambda rows, columns=None: "TABLE " + " ".join(r["song"] for r in rows))
    monkeypatch.setattr(ftlib.evaluate, "format_summary", lambda rows: "SUMMARY")
    return types.SimpleNamespace(calls=calls)


def test_cli_separate_skips_bad_input(tmp_path, fake_modules, capsys):
    ckpt = tmp_path / "model.safetensors"
    ckpt.write_text("x")
    songs = tmp_path / "songs"
    songs.mkdir()
    for name in ("b_song.wav", "broken.flac", "notes.txt"):
        (songs / name).write_text("x")
    single = tmp_path / "a_song.wav"
    single.write_text("x")
    code = cli.main(["separate", str(single), str(songs), "-m", str(ckpt), "-o", str(tmp_path / "out"),
                     "--batch-size", "2", "--format", "flac", "--no-vocals"])
    assert code == 1
    out, err = capsys.readouterr()
    assert "a_song_instruments.flac" in out and "b_song_instruments.flac" in out and "vocals" not in out
    assert "skipped" in err and "broken.flac" in err and "notes.txt" not in out + err
    assert FakeSeparator.created[0].options == {"batch_size": 2}


def test_cli_separate_all_ok_and_bad_checkpoint(tmp_path, fake_modules, capsys):
    ckpt = tmp_path / "model.safetensors"
    ckpt.write_text("x")
    song = tmp_path / "song.wav"
    assert cli.main(["separate", str(song), "-m", str(ckpt), "-o", str(tmp_path), "--cropsize", "64"]) == 0
    assert "song_vocals.wav" in capsys.readouterr().out
    assert FakeSeparator.created[0].options == {"cropsize": 64}
    assert cli.main(["separate", str(song), "-m", str(tmp_path / "missing"), "-o", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("error: ")


def test_cli_evaluate(tmp_path, fake_modules, capsys):
    csv_path = tmp_path / "scores.csv"
    assert cli.main(["evaluate", "data", "-e", "est", "--csv", str(csv_path)]) == 0
    assert "TABLE a b" in capsys.readouterr().out
    assert fake_modules.calls[-1] == ("data", "est", None)
    lines = csv_path.read_text().splitlines()
    assert lines[0] == "song,sdr,extra" and lines[1] == "a,5.0," and len(lines) == 3
    json_path = tmp_path / "scores.json"
    assert cli.main(["evaluate", "data", "-e", "est", "--json", str(json_path)]) == 0
    saved = json.loads(json_path.read_text())
    assert saved["system"] == "fake" and [r["song"] for r in saved["songs"]] == ["a", "b"]
    assert cli.main(["evaluate", "data", "-e", "est", "--metrics", "sdr,nope"]) == 2
    assert "unknown nope" in capsys.readouterr().err

    ckpt = tmp_path / "m.safetensors"
    ckpt.write_text("x")
    assert cli.main(["evaluate", "data", "-m", str(ckpt)]) == 0
    assert isinstance(fake_modules.calls[-1][2], FakeSeparator)
    with pytest.raises(SystemExit):
        cli.main(["evaluate", "data"])  # one of -e/-m is required


def test_cli_compare_keeps_the_order_of_systems(tmp_path, fake_modules, capsys):
    a, b = tmp_path / "model_a", tmp_path / "model_b"  # checkpoint folders: systems are named after them
    a.mkdir()
    b.mkdir()
    assert cli.main(["compare", "data", "-m", str(a), "-e", "est", "-m", str(b), "--cropsize", "64"]) == 0
    assert [(c[0], c[1]) for c in fake_modules.calls] == [("data", None), ("data", "est"), ("data", None)]
    assert [s.checkpoint for s in FakeSeparator.created] == [str(a), str(b)]  # one separator per -m, not an ensemble
    assert FakeSeparator.created[1].options == {"cropsize": 64}
    assert "ties against model_a" in capsys.readouterr().out  # the first system is the baseline
