"""Notebook hygiene, and the quickstart executed headless with its smoke parameters."""
import ast
import json
import math
from pathlib import Path

import nbformat
import pytest

from ftlib import cli

NOTEBOOKS = sorted((Path(__file__).parents[1] / "notebooks").glob("*.ipynb"))


def _parameters_cell(nb):
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged 'parameters'"
    return tagged[0]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_clean_and_parameterised(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, f"{path.name}: commit notebooks without outputs"
    body = ast.parse(_parameters_cell(nb).source).body
    assert all(isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) for node in body), \
        "the parameters cell holds literal assignments only"
    names = {node.targets[0].id for node in body}
    assert {"smoke", "seed", "run_dir"} <= names


def test_quickstart_smoke_run(tmp_path, capsys):
    notebook = next(p for p in NOTEBOOKS if p.name == "00_quickstart.ipynb")
    assert cli.main(["run", str(notebook), "-p", "smoke", "true", "--runs-dir", str(tmp_path / "runs")]) == 0
    (run,) = (tmp_path / "runs").iterdir()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["smoke"] is True and metrics["steps"] == 4
    assert all(math.isfinite(metrics[k]) for k in ("sdr_vocals", "input_sdr_vocals", "valid_loss"))
    assert {p.name for p in (run / "figures").iterdir()} == {"training_curves.png", "sdr.png", "spectrograms.png"}
    assert len(list((run / "audio").glob("*.wav"))) == 4
    assert (run / "metrics.jsonl").is_file() and (run / "config.json").is_file()
    assert (run / "checkpoints" / "best" / "model.safetensors").is_file()
    assert (run / "00_quickstart.ipynb").is_file()


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
    assert cli.main(["run", str(notebook), "-p", "smoke", "true", "--runs-dir", str(tmp_path / "runs")]) == 0
    (run,) = (tmp_path / "runs").iterdir()
    metrics = json.loads((run / "metrics.json").read_text())
    from ftlib import models
    from ftlib.layers import MultichannelMultiheadAttention
    from ftlib.models.inspect import preset_table

    layers = [m for m in models.build("frame_transformer", "small").modules() if isinstance(m, MultichannelMultiheadAttention)]
    assert metrics["presets"] == len(preset_table()) and metrics["attention_layers"] == len(layers) > 0
    assert {p.name for p in (run / "figures").iterdir()} == {"presets.png", "attention_maps.png"}
