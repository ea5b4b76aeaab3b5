"""Every notebook follows the template and has its presets; every notebook executed headless with its
smoke preset (marked ``notebooks``), with the figures, players and metrics it promises."""
import ast
import json
import math
import re
from pathlib import Path

import nbformat
import pytest
import yaml
from IPython.core.inputtransformer2 import TransformerManager

from ftlib import checkpoint, cli, runs

NOTEBOOKS = sorted((Path(__file__).parents[1] / "notebooks").glob("*.ipynb"))
PRESETS = ("smoke", "cpu", "gpu")
MAX_FUNCTION_LINES = 5


def _parameters_cell(nb):
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged 'parameters'"
    return tagged[0]


def _parameters(nb) -> dict:
    """name -> default value of the parameters cell (literal assignments only)."""
    body = ast.parse(_parameters_cell(nb).source).body
    assert all(isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
               and isinstance(node.value, ast.Constant) for node in body), \
        "the parameters cell holds literal assignments only"
    return {node.targets[0].id: node.value.value for node in body}


def _code(cell) -> ast.Module:
    return ast.parse(TransformerManager().transform_cell(cell.source))  # IPython magics -> Python


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_clean_and_parameterised(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, f"{path.name}: commit notebooks without outputs"
    assert {"smoke", "seed", "run_dir", "tag"} <= set(_parameters(nb))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_follows_the_template(path):
    nb = nbformat.read(path, as_version=4)
    title = nb.cells[0]
    assert title.cell_type == "markdown" and title.source.startswith("# "), "the first cell is a markdown title"
    assert f"ftlib run notebooks/{path.name}" in title.source, "the title cell shows the command that runs it"

    index = nb.cells.index(_parameters_cell(nb))
    derived = nb.cells[index + 1]
    assert derived.cell_type == "code" and "runs.start(" in derived.source, \
        "the cell after the parameters derives the config and calls runs.start("

    headings = [line for c in nb.cells if c.cell_type == "markdown" for line in c.source.splitlines()
                if line.startswith("## ")]
    numbers = [re.match(r"## (\d+)\. \S", h) for h in headings]
    assert headings and all(numbers), f"sections are numbered '## 1. Title': {headings}"
    assert [int(m.group(1)) for m in numbers] == list(range(1, len(headings) + 1)), headings

    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    assert "run.save_metrics(" in code_cells[-1].source, "the last code cell writes metrics.json"
    for cell in code_cells:
        for node in ast.walk(_code(cell)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                lines = node.end_lineno - node.lineno + 1
                assert lines <= MAX_FUNCTION_LINES, \
                    f"{path.name}: {node.name} is {lines} lines; move logic longer than {MAX_FUNCTION_LINES} lines into ftlib"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_presets_name_its_parameters(path):
    defaults = _parameters(nbformat.read(path, as_version=4))
    available = runs.presets(path)
    assert set(PRESETS) <= set(available), f"{path.name}: presets {sorted(available)}; need {PRESETS} in params/{path.stem}/"
    for name in PRESETS:
        values = yaml.safe_load(available[name].read_text()) or {}
        unknown = set(values) - set(defaults)
        assert not unknown, f"{available[name]}: {sorted(unknown)} are not parameters of {path.name}"
        for key, value in values.items():
            default = defaults[key]
            same = default is None or type(value) is type(default) or (type(default) is float and type(value) is int)
            assert same, f"{available[name]}: {key}: {value!r} is a {type(value).__name__}, the notebook's " \
                         f"default {default!r} a {type(default).__name__}"
        assert values.get("smoke", False) is (name == "smoke"), f"{available[name]}: smoke must be {name == 'smoke'}"


def test_derived_cells_never_reassign_a_parameter():
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        names = set(_parameters(nb))
        start = nb.cells.index(_parameters_cell(nb))
        for cell in nb.cells[start + 1:]:
            if cell.cell_type != "code":
                continue
            for node in ast.walk(_code(cell)):
                targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
                assigned = {t.id for t in targets if isinstance(t, ast.Name)}
                assert not assigned & names, f"{path.name} reassigns the parameter(s) {assigned & names}"


# ------------------------------------------------------------------------------- smoke runs

# notebook -> (figures, audio files, finite metrics)
SMOKE = {
    "00_quickstart": ({"training_curves", "sdr", "spectrograms"}, 4, ("sdr_vocals", "input_sdr_vocals", "valid_loss")),
    "05_models": ({"presets", "attention_maps"}, 0, ("parameters",)),
    "10_pretrain": ({"training_curves", "reconstruction"}, 0, ("valid_masked_l1", "best_valid_masked_l1")),
    "30_diffusion_separation": ({"losses", "denoising", "crop", "sdr_vs_steps", "sdr_intervals"}, 4,
                                ("sdr_vocals_ddim_2", "sdr_vocals_mask_model", "input_sdr_vocals", "denoiser_valid_loss")),
    "31_diffusion_idea": ({"losses", "denoising", "samples"}, 2, ("final_loss", "valid_loss")),
    "40_mel_expansion": ({"training_curves", "reconstructions", "generations", "fold_sweep"}, 3,
                         ("final_loss", "valid_l1", "free_running_l1", "length_error")),
    "50_separate": ({"scores", "spectrograms", "paired_sdr", "metric_intervals", "sdr_vs_fullness"}, 4, ("sdr_vocals_single", "sdr_vocals_ensemble", "input_sdr_vocals",
                                                    "rtf_single", "rtf_ensemble")),
    "60_report": ({"training_curves", "context_length", "sdr", "paired_songs", "metric_intervals",
                   "metric_scatter", "masks", "attention_maps", "schedule"}, 3,
                  ("best_sdr_vocals", "paired_systems")),
}


def _run(name, runs_dir, *args):
    assert cli.main(["run", str(NOTEBOOKS[0].parent / f"{name}.ipynb"), *args, "--runs-dir", str(runs_dir)]) == 0
    run = max(p for p in runs_dir.iterdir() if p.name.split("-", 2)[2].startswith(name))  # the newest
    return run, json.loads((run / "metrics.json").read_text())


@pytest.mark.notebooks
@pytest.mark.parametrize("name", list(SMOKE))
def test_smoke_run_makes_its_figures_audio_and_metrics(name, tmp_path):
    figures, audio, finite = SMOKE[name]
    run, metrics = _run(name, tmp_path / "runs", "--preset", "smoke")
    assert metrics["smoke"] is True
    assert all(math.isfinite(metrics[k]) for k in finite), {k: metrics.get(k) for k in finite}
    assert {p.stem for p in (run / "figures").iterdir()} == figures
    assert len(list((run / "audio").glob("*.wav"))) == audio
    executed = nbformat.read(run / f"{name}.ipynb", as_version=4)
    images = [o for c in executed.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
    assert images, "figures are outputs of the executed notebook (inline backend in the kernel)"


@pytest.mark.notebooks
def test_the_reports_smoke_inputs_go_where_runs_root_says(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    run, metrics = _run("60_report", tmp_path / "runs", "--preset", "smoke", "-p", "runs_root", str(elsewhere),
                        "-p", "max_runs", "2")
    made = sorted(runs.notebook_of(p) for p in elsewhere.iterdir())
    assert made == ["00_quickstart", "00_quickstart", "05_models"] and metrics["smoke_runs_made"] == 3
    assert metrics["runs"] == 2


@pytest.mark.notebooks
def test_a_parameter_always_wins_over_the_smoke_preset(tmp_path):
    run, metrics = _run("00_quickstart", tmp_path / "runs", "-p", "smoke", "true", "-p", "steps", "7")
    assert metrics["steps"] == 7 and [r["step"] for r in runs.read_log(run) if "loss" in r][-1] == 7
    assert json.loads((run / "config.json").read_text())["recipe"] == "separation"


@pytest.mark.notebooks
def test_quickstart_runs_under_plain_papermill(tmp_path):
    import papermill

    notebook = NOTEBOOKS[0].parent / "00_quickstart.ipynb"
    papermill.execute_notebook(str(notebook), str(tmp_path / "out.ipynb"), parameters={"smoke": True, "tag": "pm"},
                               cwd=str(notebook.parent), progress_bar=False)
    (run,) = (tmp_path / "runs").iterdir()  # FTLIB_RUNS points here (conftest); run_dir was left empty
    assert run.name.endswith("-00_quickstart-pm")
    assert json.loads((run / "metrics.json").read_text())["smoke"] is True


@pytest.mark.notebooks
def test_finetuning_notebook_starts_from_the_pretraining_notebooks_checkpoint(tmp_path):
    pre, _ = _run("10_pretrain", tmp_path / "runs", "--preset", "smoke")
    best = pre / "checkpoints" / "best"
    assert checkpoint.read_header(best)["model"] == "frame_transformer"
    run, metrics = _run("20_voxaug_finetune", tmp_path / "runs", "--preset", "smoke", "-p", "pretrained", str(best),
                        "-p", "finetune_method", "llrd")
    assert metrics["pretrained"] == str(best) and not (run / "pretrain").exists()
    for name in ("finetuned", "scratch"):
        assert math.isfinite(metrics[f"valid_loss_{name}"]) and math.isfinite(metrics[f"sdr_vocals_{name}"])
        assert json.loads((run / name / "context_length.json").read_text())[0]["cropsize"] == 16
    finetuned = json.loads((run / "finetuned" / "config.json").read_text())["config"]
    assert finetuned["model"]["init_from"] == str(best) and finetuned["finetune"]["method"] == "llrd"
    assert {p.stem for p in (run / "figures").iterdir()} == {"training_curves", "context_length", "sdr", "paired_sdr"}
    assert metrics["sdr_vocals_finetuned_minus_scratch"] == pytest.approx(
        metrics["sdr_vocals_finetuned"] - metrics["sdr_vocals_scratch"])  # one song: the paired mean is the difference
    # another finetuning method later, against the same from-scratch curve, without retraining it
    other, metrics = _run("20_voxaug_finetune", tmp_path / "runs", "--preset", "smoke", "-p", "pretrained", str(best),
                          "-p", "compare_scratch", "false", "-p", "scratch_run", str(run))
    assert not (other / "scratch").exists() and "sdr_vocals_scratch" not in metrics
    reference = runs.last(runs.read_log(run / "scratch"), "valid_loss")
    assert metrics["valid_loss_scratch"] == reference
    assert metrics["steps_to_scratch_loss_finetuned"] == runs.steps_to_reach(runs.read_log(other / "finetuned"), reference)
