"""Reports from run folders alone: collecting runs, reading their logs, metrics and checkpoints,
the context-length study, and a self-contained HTML export of figures, tables and audio.

A run folder (see :mod:`ftlib.runs`) may hold ``metrics.jsonl`` training logs (also in nested
training folders such as ``models/model0/``), ``metrics.json``, ``checkpoints/best`` models and
``context_length.json``: a list of ``{"cropsize": int, "valid_loss": float}`` rows.
"""
from __future__ import annotations

import base64
import dataclasses
import glob
import html
import json
import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ftlib import audio, paths, recipes, runs
from ftlib.data import synth
from ftlib.data.sources import scan_songs
from ftlib.errors import CheckpointError, DataError, FtlibError
from ftlib.evaluate import Evaluation
from ftlib.models.inspect import attention_maps
from ftlib.recipes import separation
from ftlib.separation import load_model
from ftlib.train import TrainConfig

log = logging.getLogger(__name__)

# nbconvert's "lab" page without the require.js and MathJax scripts it would fetch from a CDN
_OFFLINE_TEMPLATE = ("{%- extends 'lab/index.html.j2' -%}"
                     "{%- block html_head_js -%}{%- endblock html_head_js -%}"
                     "{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}")
_SDR_KEY = re.compile(r"^sdr_(vocals|instrumental)(?:_(.+))?$")  # sdr_<stem>[_<system>] in metrics.json


# ------------------------------------------------------------------------------- run folders

@dataclasses.dataclass
class RunRecord:
    """What a report reads from one run folder.

    ``logs``: training folder (``""`` for the run itself, else e.g. ``"models/model0"``) -> its
    ``metrics.jsonl`` records; ``checkpoints``: the same keys -> ``checkpoints/best`` folders;
    ``context_length``: the same keys -> context-length study rows; ``scores``: the same keys ->
    ``metrics.json`` of the folders whose file has per-song scores and the songs' fingerprint (the
    separation recipe's ``songs`` and ``fingerprint``).
    """

    path: Path
    label: str
    notebook: str
    config: dict
    metrics: dict
    logs: dict[str, list[dict]]
    checkpoints: dict[str, Path]
    context_length: dict[str, list[dict]]
    scores: dict[str, dict] = dataclasses.field(default_factory=dict)

    def name_of(self, folder: str) -> str:
        """Label of a training folder of this run (the run's label, plus the folder when nested)."""
        return f"{self.label}/{folder}" if folder else self.label


def _read_json(path: Path, default: Any) -> Any:
    if not path.is_file():
        return default
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON ({exc}); fix or delete the file") from exc


def load_run(path: str | Path, label: str = "") -> RunRecord:
    """Read a run folder: config, summary metrics, training logs, best checkpoints, context-length rows."""
    path = Path(path)
    if not path.is_dir():
        raise DataError(f"{path}: run folder not found")
    logs = {}
    for file in sorted(path.rglob("metrics.jsonl")):
        folder = file.parent.relative_to(path).as_posix()
        logs["" if folder == "." else folder] = runs.read_log(file.parent)
    context = {}
    for file in sorted(path.rglob(separation.CONTEXT_LENGTH_FILE)):
        folder = file.parent.relative_to(path).as_posix()
        context["" if folder == "." else folder] = separation.context_length(file.parent)
    checkpoints = {}
    for best in sorted(path.rglob("checkpoints/best")):
        if (best / "model.safetensors").is_file():
            folder = best.parent.parent.relative_to(path).as_posix()
            checkpoints["" if folder == "." else folder] = best
    scores = {}
    for file in sorted(path.rglob(recipes.METRICS_FILE)):
        metrics = _read_json(file, {})
        if isinstance(metrics.get("songs"), list) and isinstance(metrics.get("fingerprint"), dict):
            folder = file.parent.relative_to(path).as_posix()
            scores["" if folder == "." else folder] = metrics
    return RunRecord(path=path, label=label or runs.strip_stamp(path.name), notebook=runs.notebook_of(path),
                     config=_read_json(path / "config.json", {}), metrics=_read_json(path / "metrics.json", {}),
                     logs=logs, checkpoints=checkpoints, context_length=context, scores=scores)


def find_runs(root: str | Path | None = None, patterns: str | Sequence[str] = "", notebook: str = "",
              exclude: Sequence[str | Path] = ()) -> list[Path]:
    """Run folders, sorted by name (oldest first).

    ``patterns``: comma-separated (or a list of) run folders or glob patterns, relative to ``root``
    unless absolute; empty: every folder in ``root`` (default :func:`ftlib.paths.runs_dir`).
    ``notebook`` keeps the runs of that notebook stem; ``exclude`` drops folders (e.g. the report's own).
    """
    root = Path(root) if root else paths.runs_dir()
    if isinstance(patterns, str):
        patterns = [p.strip() for p in patterns.split(",") if p.strip()]
    if patterns:
        found = []
        for pattern in patterns:
            matches = [Path(m) for m in sorted(glob.glob(str(root / pattern)))]
            folders = [m for m in matches if m.is_dir()]
            if not folders:
                raise DataError(f"run folder pattern {pattern!r} matched no folder in {root}")
            found += folders
    elif root.is_dir():
        found = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    else:
        raise DataError(f"{root}: runs folder not found; pass runs_root or run folders")
    skip = {Path(p).resolve() for p in exclude}
    found = [p for p in dict.fromkeys(found) if p.resolve() not in skip]
    if notebook:
        found = [p for p in found if runs.notebook_of(p) == Path(notebook).stem]
    return sorted(found, key=lambda p: p.name)


# the runs a smoke report reads: the quickstart with two seeds (something to pair) and the model zoo
SMOKE_INPUTS = (("00_quickstart", {}), ("00_quickstart", {"seed": 1}), ("05_models", {}))


def make_smoke_runs(root: str | Path | None = None) -> list[Path]:
    """Execute :data:`SMOKE_INPUTS` (notebooks of the working folder, smoke presets) into ``root``
    (empty: the default runs folder); return their run folders."""
    return [runs.execute(f"{name}.ipynb", {**runs.resolve_parameters(f"{name}.ipynb", "smoke"), **changes}, root=root)
            for name, changes in SMOKE_INPUTS]


def collect(root: str | Path | None = None, patterns: str | Sequence[str] = "", notebook: str = "",
            max_runs: int = 0, exclude: Sequence[str | Path] = ()) -> list[RunRecord]:
    """The newest ``max_runs`` (0: all) runs of :func:`find_runs`, loaded; labels are the folder names
    without their timestamp unless two runs would share one."""
    folders = find_runs(root, patterns, notebook, exclude)
    folders = folders[-max_runs:] if max_runs > 0 else folders
    short = [runs.strip_stamp(p.name) for p in folders]
    return [load_run(p, s if short.count(s) == 1 else p.name) for p, s in zip(folders, short)]


# ----------------------------------------------------------------------------------- tables

def overview(records: Sequence[RunRecord]) -> list[dict]:
    """One row per run: what a report can draw from it."""
    return [{"run": r.label, "notebook": r.notebook, "training logs": len(r.logs), "models": len(r.checkpoints),
             "context length": "yes" if r.context_length else "", "metrics": len(r.metrics)} for r in records]


def training_logs(records: Sequence[RunRecord]) -> dict[str, list[dict]]:
    """Every training log with at least one loss record: label -> ``metrics.jsonl`` records."""
    return {r.name_of(folder): entries for r in records for folder, entries in r.logs.items()
            if any("loss" in e for e in entries)}


def context_length_table(records: Sequence[RunRecord]) -> list[dict]:
    """``{"run", "cropsize", "valid_loss"}`` rows of every run that has a ``context_length.json``."""
    return [{"run": r.name_of(folder), **row} for r in records for folder, rows in r.context_length.items()
            for row in rows]


def song_evaluations(records: Sequence[RunRecord]) -> list[Evaluation]:
    """The per-song scores of every run (and training folder) that has them, named like its training
    curves, as evaluations for :func:`ftlib.compare.compare`: those of the songs most of them share
    (same names, lengths and reference hashes), so they compare; empty when none has scores."""
    groups: dict[str, list[Evaluation]] = {}
    for r in records:
        for folder, metrics in r.scores.items():
            key = json.dumps(metrics["fingerprint"].get("songs"), sort_keys=True)
            groups.setdefault(key, []).append(Evaluation(r.name_of(folder), metrics["songs"], metrics["fingerprint"]))
    return max(groups.values(), key=len, default=[])


def sdr_table(records: Sequence[RunRecord]) -> list[dict]:
    """One row per (run, system) from each run's ``metrics.json``: whole-track SDR of vocals and
    instrumental beside the input SDR and the vocal gain.

    ``sdr_vocals`` gives system ``""``; ``sdr_vocals_<system>`` (e.g. ``single``, ``ensemble``) one row each.
    """
    rows = []
    for r in records:
        systems = [m.group(2) or "" for m in map(_SDR_KEY.match, r.metrics) if m]
        for system in dict.fromkeys(systems):
            suffix = f"_{system}" if system else ""
            row = {"run": r.label, "system": system}
            for stem in ("vocals", "instrumental"):
                row[f"sdr_{stem}"] = r.metrics.get(f"sdr_{stem}{suffix}")
                row[f"input_sdr_{stem}"] = r.metrics.get(f"input_sdr_{stem}")
            both = row["sdr_vocals"] is not None and row["input_sdr_vocals"] is not None
            row["gain_vocals"] = row["sdr_vocals"] - row["input_sdr_vocals"] if both else None
            rows.append(row)
    return rows


def html_table(rows: Sequence[dict], columns: Sequence[str] | None = None, digits: int = 2) -> str:
    """An HTML table of ``rows`` (floats rounded to ``digits``, missing values blank)."""
    columns = list(columns or dict.fromkeys(k for r in rows for k in r))

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.{digits}f}"
        return "" if value is None else html.escape(str(value))

    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{cell(r.get(c))}</td>" for c in columns) + "</tr>" for r in rows)
    return f'<table class="ftlib-table"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


# ------------------------------------------------------------------------- models and songs

def load_models(records: Sequence[RunRecord], limit: int = 0) -> dict[str, nn.Module]:
    """The separation models of the runs' ``checkpoints/best`` folders (the first ``limit``; 0: all),
    by label; checkpoints of other tasks are skipped with a log message."""
    found = {}
    for r in records:
        for folder, path in r.checkpoints.items():
            if limit and len(found) >= limit:
                return found
            try:
                found[r.name_of(folder)] = load_model(path)
            except CheckpointError as exc:
                log.info("skipping %s: %s", path, exc)
    return found


def validation_folder(records: Sequence[RunRecord]) -> Path | None:
    """The validation songs of the first recipe run (regenerated into the cache when synthetic),
    else of the first run whose config holds a ``synth`` section, else None."""
    for r in records:
        for folder in (r.path, *sorted(p.parent for p in r.path.glob("*/config.json"))):
            try:
                config = recipes.config_from_run(folder)
            except FtlibError:
                continue
            if hasattr(config.data, "valid_folder"):
                return config.data.dataset_root() / config.data.valid_folder
        if isinstance(r.config.get("synth"), dict):
            config = synth.SynthConfig.from_dict(r.config["synth"])
            return synth.generate(synth.dataset_dir(config), config) / "valid"
    return None


def validation_songs(records: Sequence[RunRecord], folder: str | Path = "") -> list[dict[str, Path]]:
    """Aligned songs (``{"name", "mixture", "vocals", ...}``) of ``folder``, else of
    :func:`validation_folder`; ``[]`` when there are none."""
    folder = folder or validation_folder(records)
    return scan_songs(folder) if folder else []


def example_song(songs: Sequence[dict[str, Path]], seconds: float, sample_rate: int = 44100,
                 seed: int = 0) -> dict[str, Any]:
    """The first ``seconds`` of the first song (``{"name", "mixture", "vocals"}`` float32 ``[2, S]``),
    or a synthetic song (:func:`ftlib.data.synth.make_song`) when ``songs`` is empty."""
    samples = int(seconds * sample_rate)
    if songs:
        song = songs[0]
        return {"name": song["name"], **{k: audio.load(song[k], sample_rate)[:, :samples] for k in ("mixture", "vocals")}}
    made = synth.make_song(np.random.default_rng(seed), seconds, sample_rate)
    return {"name": f"synthetic (seed {seed})", "mixture": made["mixture"], "vocals": made["vocals"]}


def attention_of(models: dict[str, nn.Module], separations: dict[str, dict[str, np.ndarray]],
                 frames: int) -> tuple[str, dict[str, torch.Tensor]]:
    """Attention maps (see :func:`ftlib.models.inspect.attention_maps`) of the first model that has
    attention layers, on the first ``frames`` frames of its separation's magnitude; ``("", {})`` if none."""
    for name, model in models.items():
        magnitude = torch.from_numpy(separations[name]["magnitude"][..., :frames])[None]
        magnitude = (magnitude / magnitude.max().clamp_min(1e-8)).to(next(model.parameters()).device)
        maps = attention_maps(model, magnitude)
        if maps:
            return name, maps
    return "", {}


def train_schedule(records: Sequence[RunRecord]):
    """``(TrainConfig, curriculum stages)`` of the first run whose config has a ``train`` section
    (a recipe run's, or a notebook's), else ``(None, [])``."""
    for r in records:
        config = r.config.get("config", r.config) if "recipe" in r.config else r.config
        train = config.get("train")
        if isinstance(train, dict):
            return TrainConfig.from_dict(train, strict=False), list(train.get("curriculum") or [])
    return None, []


# -------------------------------------------------------------------------------- HTML export

class Report:
    """Markdown, figures, tables and audio collected in order and exported as one HTML page with
    every image and sound embedded (base64), through nbconvert's HTMLExporter.

    With a ``run``, figures are also saved to ``figures/<name>.png`` and audio to ``audio/<name>.wav``.
    Each method returns something the notebook can display.
    """

    def __init__(self, title: str, run: runs.Run | None = None):
        import nbformat

        self.run = run
        self.notebook = nbformat.v4.new_notebook()
        self.text(f"# {title}")

    def _output(self, data: dict[str, str]) -> None:
        import nbformat

        cell = nbformat.v4.new_code_cell("")
        cell.outputs = [nbformat.v4.new_output("display_data", data=data)]
        self.notebook.cells.append(cell)

    def text(self, markdown: str):
        """A markdown paragraph."""
        import nbformat
        from IPython.display import Markdown

        self.notebook.cells.append(nbformat.v4.new_markdown_cell(markdown))
        return Markdown(markdown)

    def section(self, title: str) -> None:
        """A section heading."""
        self.text(f"## {title}")

    def figure(self, name: str, fig):
        """A matplotlib figure (left open, to be shown by the notebook)."""
        import io

        if self.run is not None:
            png = self.run.save_figure(name, fig).read_bytes()
        else:
            buffer = io.BytesIO()
            fig.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
            png = buffer.getvalue()
        self._output({"image/png": base64.b64encode(png).decode("ascii"), "text/plain": f"<figure {name}>"})
        return fig

    def table(self, rows: Sequence[dict], columns: Sequence[str] | None = None, digits: int = 2):
        """A table (see :func:`html_table`)."""
        from IPython.display import HTML

        markup = html_table(rows, columns, digits)
        self._output({"text/html": markup, "text/plain": f"<table of {len(rows)} rows>"})
        return HTML(markup)

    def audio(self, name: str, wave: np.ndarray, sample_rate: int = 44100, caption: str = ""):
        """An audio player for ``[C, S]`` audio, its WAV embedded as a base64 data URI."""
        from IPython.display import Audio

        if self.run is not None:
            self.run.save_audio(name, wave, sample_rate)
        player = Audio(np.asarray(wave), rate=sample_rate)
        label = f"<p>{html.escape(caption or name)}</p>"
        self._output({"text/html": label + player._repr_html_(), "text/plain": f"<audio {name}>"})
        return player

    def to_html(self) -> str:
        """The page: JupyterLab's look, inputs and prompts hidden, no script loaded from the network."""
        import jinja2
        from nbconvert import HTMLExporter

        exporter = HTMLExporter(extra_loaders=[jinja2.DictLoader({"ftlib_report.html.j2": _OFFLINE_TEMPLATE})],
                                template_file="ftlib_report.html.j2", exclude_input=True)
        body, _ = exporter.from_notebook_node(self.notebook)
        return body

    def export(self, path: str | Path | None = None) -> Path:
        """Write the page to ``path`` (default: ``<run>/report.html``)."""
        if path is None:
            if self.run is None:
                raise ValueError("give a path, or a run to write report.html into")
            path = self.run.path / "report.html"
        path = Path(path)
        path.write_text(self.to_html(), encoding="utf-8")
        return path
