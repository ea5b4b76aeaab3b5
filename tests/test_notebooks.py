"""Every notebook follows the template and has its presets; the quickstart and models notebooks
executed headless with their smoke preset."""
import ast
import json
import math
import re
from pathlib import Path

import nbformat
import pytest
import yaml
from IPython.core.inputtransformer2 import TransformerManager

from ftlib import cli, runs

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
            same = type(value) is type(default) or (type(default) is float and type(value) is int)
            assert same, f"{available[name]}: {key}: {value!r} is a {type(value).__name__}, the notebook's " \
                         f"default {default!r} a {type(default).__name__}"
        assert values.get("smoke", False) is (name == "smoke"), f"{available[name]}: smoke must be {name == 'smoke'}"


def test_quickstart_smoke_run(tmp_path, capsys):
    notebook = next(p for p in NOTEBOOKS if p.name == "00_quickstart.ipynb")
    assert cli.main(["run", str(notebook), "--preset", "smoke", "--runs-dir", str(tmp_path / "runs")]) == 0
    (run,) = (tmp_path / "runs").iterdir()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["smoke"] is True and metrics["steps"] == 4
    assert all(math.isfinite(metrics[k]) for k in ("sdr_vocals", "input_sdr_vocals", "valid_loss"))
    assert {p.name for p in (run / "figures").iterdir()} == {"training_curves.png", "sdr.png", "spectrograms.png"}
    assert len(list((run / "audio").glob("*.wav"))) == 4
    assert (run / "metrics.jsonl").is_file() and (run / "config.json").is_file()
    assert (run / "checkpoints" / "best" / "model.safetensors").is_file()
    executed = nbformat.read(run / "00_quickstart.ipynb", as_version=4)
    images = [o for c in executed.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
    assert len(images) == 3, "figures are outputs of the executed notebook (inline backend in the kernel)"


def test_quickstart_runs_under_plain_papermill(tmp_path):
    import papermill

    notebook = next(p for p in NOTEBOOKS if p.name == "00_quickstart.ipynb")
    papermill.execute_notebook(str(notebook), str(tmp_path / "out.ipynb"), parameters={"smoke": True, "tag": "pm"},
                               cwd=str(notebook.parent), progress_bar=False)
    (run,) = (tmp_path / "runs").iterdir()  # FTLIB_RUNS points here (conftest); run_dir was left empty
    assert run.name.endswith("-00_quickstart-pm")
    assert json.loads((run / "metrics.json").read_text())["smoke"] is True


def test_models_notebook_smoke_run(tmp_path):
    notebook = next(p for p in NOTEBOOKS if p.name == "05_models.ipynb")
    assert cli.main(["run", str(notebook), "--preset", "smoke", "--runs-dir", str(tmp_path / "runs")]) == 0
    (run,) = (tmp_path / "runs").iterdir()
    metrics = json.loads((run / "metrics.json").read_text())
    from ftlib import models
    from ftlib.layers import MultichannelMultiheadAttention
    from ftlib.models.inspect import preset_table

    layers = [m for m in models.build("frame_transformer", "small").modules() if isinstance(m, MultichannelMultiheadAttention)]
    assert metrics["presets"] == len(preset_table()) and metrics["attention_layers"] == len(layers) > 0
    assert {p.name for p in (run / "figures").iterdir()} == {"presets.png", "attention_maps.png"}
