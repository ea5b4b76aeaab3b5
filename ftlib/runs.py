"""Run folders: one per executed notebook or training job.

A run lives in ``runs/<YYYYmmdd-HHMMSS>-<notebook>-<tag>/`` and holds ``config.json``,
``metrics.jsonl`` (one JSON object per logged step, written by the trainer), ``metrics.json`` (final
summary), ``checkpoints/``, ``figures/*.png``, ``audio/*.wav`` and the executed notebook. Notebooks
begin with::

    run = ftlib.runs.start("00_quickstart", run_dir=run_dir, config=config.to_dict())

Parameter presets live beside the notebooks in ``params/<notebook stem>/<preset>.yaml`` (``smoke``:
the CI check, ``cpu``: minutes on a laptop CPU, ``gpu``: full size); :func:`execute` runs a notebook
with one of them into a new run folder.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ftlib import atomic, paths
from ftlib.errors import FtlibError

log = logging.getLogger(__name__)

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
_STAMP = re.compile(r"^\d{8}-\d{6}-")


def _sanitise(text: str) -> str:
    """Replace every run of characters outside ``[A-Za-z0-9_.-]`` by ``_``."""
    return _UNSAFE.sub("_", text).strip("_.-")


def _with_suffix(name: str, suffix: str) -> str:
    return name if name.lower().endswith(suffix) else name + suffix


class Run:
    """A run folder; creates ``figures/``, ``audio/`` and ``checkpoints/`` inside it."""

    def __init__(self, path: str | Path):
        self.path = Path(path).resolve()
        for sub in ("figures", "audio", "checkpoints"):
            (self.path / sub).mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r})"

    def __fspath__(self) -> str:
        return str(self.path)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def figures(self) -> Path:
        return self.path / "figures"

    @property
    def audio(self) -> Path:
        return self.path / "audio"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    def save_config(self, config: dict | Any) -> Path:
        """Write ``config.json``; a Config object is converted with ``to_dict()``."""
        if hasattr(config, "to_dict"):
            config = config.to_dict()
        return atomic.write_json(self.path / "config.json", config)

    def save_figure(self, name: str, fig) -> Path:
        """Save a matplotlib figure to ``figures/<name>.png``; the figure stays open for display."""
        path = self.figures / _with_suffix(name, ".png")
        fig.savefig(path, dpi=120, bbox_inches="tight")
        return path

    def save_audio(self, name: str, audio, sample_rate: int = 44100) -> Path:
        """Write ``[C, S]`` (or ``[S]``) audio to ``audio/<name>.wav``."""
        from ftlib import audio as ftaudio

        return ftaudio.save(self.audio / _with_suffix(name, ".wav"), audio, sample_rate)

    def save_metrics(self, metrics: dict) -> Path:
        """Write the final summary ``metrics.json`` (NaN is stored as null)."""
        return atomic.write_json(self.path / "metrics.json", metrics)

    def load_metrics(self) -> dict:
        """The ``metrics.json`` summary, or ``{}`` when the run has none yet."""
        return read_metrics(self.path)

    def read_log(self) -> list[dict]:
        """Every step logged to this run's ``metrics.jsonl`` (see :func:`read_log`)."""
        return read_log(self.path)


def read_log(folder: str | Path) -> list[dict]:
    """Every record of ``<folder>/metrics.jsonl`` (``[]`` without one; also for nested training
    folders, which are not Run folders); a last line cut short by a crash is skipped."""
    path = Path(folder) / "metrics.jsonl"
    if not path.is_file():
        return []
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    records = []
    for i, line in enumerate(lines):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if i != len(lines) - 1:
                log.warning("%s: skipping malformed line %d", path, i + 1)
    return records


def read_metrics(folder: str | Path) -> dict:
    """The ``metrics.json`` summary of a run or training folder, or ``{}`` when it has none yet."""
    path = Path(folder) / "metrics.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def validation_losses(records: list[dict]) -> list[tuple[int, float]]:
    """``(step, valid_loss)`` pairs of a log (:func:`read_log`) in step order."""
    return [(r["step"], r["valid_loss"]) for r in records if "valid_loss" in r]


def last(records: list[dict], key: str) -> float | None:
    """The last logged value of ``key`` (``"loss"``, ``"valid_loss"``, ...), or None."""
    return next((r[key] for r in reversed(records) if key in r), None)


def steps_to_reach(records: list[dict], loss: float) -> int | None:
    """The first step whose validation loss is at most ``loss``, or None if it never gets there."""
    return next((step for step, value in validation_losses(records) if value <= loss), None)


def new_run_dir(notebook: str | Path, tag: str = "", root: str | Path | None = None) -> Path:
    """Create and return a fresh ``<root>/<YYYYmmdd-HHMMSS>-<notebook stem>[-<tag>]`` folder.

    ``root`` (empty or None: :func:`ftlib.paths.runs_dir`). A folder made in the same second gets a
    ``-2``, ``-3``... suffix.
    """
    root = Path(root) if root else paths.runs_dir()
    root.mkdir(parents=True, exist_ok=True)
    parts = [time.strftime("%Y%m%d-%H%M%S"), _sanitise(Path(notebook).stem) or "run", _sanitise(tag)]
    base = "-".join(p for p in parts if p)
    for n in range(1, 10_000):
        path = root / (base if n == 1 else f"{base}-{n}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise RuntimeError(f"cannot create a unique run folder for {base} in {root}")


def start(notebook: str | Path, run_dir: str | Path | None = None, tag: str = "", config: dict | None = None) -> Run:
    """Open the run a notebook writes into: ``run_dir`` when given (papermill/``ftlib run`` pass it),
    else a new folder from :func:`new_run_dir`; ``config`` is saved to ``config.json`` when given."""
    run = Run(run_dir if run_dir else new_run_dir(notebook, tag))
    if config is not None:
        run.save_config(config)
    return run


def strip_stamp(name: str) -> str:
    """A run folder's name without its leading ``YYYYmmdd-HHMMSS-`` timestamp."""
    return _STAMP.sub("", name)


def notebook_of(folder: str | Path) -> str:
    """The executed notebook's stem, else the part of the folder name after the timestamp."""
    notebooks = sorted(Path(folder).glob("*.ipynb"))
    if notebooks:
        return notebooks[0].stem
    return strip_stamp(Path(folder).name).split("-")[0]


def list_runs(root: str | Path | None = None, notebook: str = "") -> list[dict]:
    """One dict per run folder, sorted by name: run, path, notebook, status and scalar metrics.

    ``notebook``: keep only the runs of this notebook (its stem, e.g. ``00_quickstart``).
    """
    root = Path(root) if root is not None else paths.runs_dir()
    if not root.is_dir():
        return []
    rows = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if notebook and notebook_of(folder) != Path(notebook).stem:
            continue
        metrics_path = folder / "metrics.json"
        try:
            metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
        except json.JSONDecodeError:
            log.warning("%s: unreadable metrics.json", folder)
            metrics = {}
        scalars = {k: v for k, v in metrics.items() if isinstance(v, (int, float, str, bool)) or v is None}
        status = "done" if metrics_path.is_file() else "incomplete"
        rows.append({**scalars, "run": folder.name, "path": folder, "notebook": notebook_of(folder), "status": status})
    return rows


# ------------------------------------------------------------------------- executing notebooks

class NotebookFailed(FtlibError):
    """A cell of an executed notebook raised; the partly executed notebook is in ``run_dir``."""

    def __init__(self, message: str, run_dir: Path):
        super().__init__(message)
        self.run_dir = run_dir


def presets(notebook: str | Path) -> dict[str, Path]:
    """The parameter presets of ``notebook``: name -> ``params/<stem>/<name>.yaml`` beside it."""
    folder = Path(notebook).parent / "params" / Path(notebook).stem
    return {p.stem: p for p in sorted(folder.glob("*.yaml"))}


def preset_file(notebook: str | Path, name: str) -> Path:
    """The YAML file of preset ``name`` of ``notebook``; raises FtlibError listing the presets there are."""
    if not Path(notebook).is_file():
        raise FtlibError(f"{notebook}: no such notebook file")
    available = presets(notebook)
    if name not in available:
        folder = Path(notebook).parent / "params" / Path(notebook).stem
        raise FtlibError(f"{notebook}: no preset {name!r} ({folder / (name + '.yaml')} does not exist); "
                         f"available: {', '.join(available) or 'none'}")
    return available[name]


def read_parameters(path: str | Path) -> dict:
    """The ``name: value`` mapping of a YAML parameters file."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise FtlibError(f"cannot read parameters file {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise FtlibError(f"parameters file {path} must hold a mapping of name: value, got {type(data).__name__}")
    return data


def resolve_parameters(notebook: str | Path, preset: str = "", files: Sequence[str | Path] = (),
                       overrides: dict | None = None) -> dict:
    """Notebook parameters from a preset, then YAML ``files``, then ``overrides`` (later ones win)."""
    parameters = read_parameters(preset_file(notebook, preset)) if preset else {}
    for path in files:
        parameters.update(read_parameters(path))
    parameters.update(overrides or {})
    return parameters


# figures drawn in the kernel become outputs of the executed notebook (MPLBACKEND=Agg, as set for
# headless scripts and CI, would leave them out)
INLINE_BACKEND = "module://matplotlib_inline.backend_inline"


@contextlib.contextmanager
def _kernel_env(**variables: str):
    """Set environment variables for a kernel started meanwhile (it inherits them), then restore them."""
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def execute(notebook: str | Path, parameters: dict | None = None, tag: str = "", root: str | Path | None = None,
            kernel: str = "python3", log_output: bool = False) -> Path:
    """Execute ``notebook`` with papermill into a new run folder (see :func:`new_run_dir`) and return it.

    The notebook runs in its own folder and gets ``run_dir``; the executed copy is saved in the run
    folder. Raises :class:`NotebookFailed` when a cell raises, FtlibError when it cannot start.
    """
    notebook = Path(notebook)
    if not notebook.is_file():
        raise FtlibError(f"{notebook}: no such notebook file")
    try:
        import papermill
        from jupyter_client.kernelspec import NoSuchKernel
    except ImportError as exc:
        raise FtlibError(f"executing notebooks needs papermill ({exc}); install it with pip install 'ftlib[notebooks]'") from exc
    run_dir = new_run_dir(notebook, tag, root=root).resolve()
    try:
        progress = {"FTLIB_PROGRESS": "lines"} if log_output else {}  # plain lines in the streamed log
        with _kernel_env(MPLBACKEND=INLINE_BACKEND, **progress):
            papermill.execute_notebook(
                str(notebook), str(run_dir / notebook.name), parameters={**(parameters or {}), "run_dir": str(run_dir)},
                kernel_name=kernel, language="python", cwd=str(notebook.resolve().parent), progress_bar=False,
                log_output=log_output,
            )
    except papermill.PapermillExecutionError as exc:
        raise NotebookFailed(f"notebook {notebook} failed in cell In [{exc.exec_count}] with {exc.ename}: {exc.evalue}. "
                             f"The partly executed notebook (with the full traceback) is in the run folder {run_dir}",
                             run_dir) from None
    except papermill.PapermillException as exc:
        raise FtlibError(f"cannot execute {notebook} (run folder {run_dir}): {exc}") from exc
    except NoSuchKernel as exc:
        raise FtlibError(f"no Jupyter kernel named {kernel!r}; pass --kernel NAME or install one with "
                         f"`python -m ipykernel install --user --name {kernel}`") from exc
    return run_dir
