"""The ``ftlib`` console script: ``run``, ``runs``, ``separate`` and ``evaluate`` sub-commands."""
from __future__ import annotations

import argparse
import contextlib
import csv
import json
import logging
import sys
from pathlib import Path
from typing import Any

import ftlib
from ftlib import paths, runs
from ftlib.errors import FtlibError


def parse_value(text: str) -> Any:
    """Interpret a ``-p`` value like papermill's CLI: bool, None, int, float, else the string."""
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _read_yaml(path: str) -> dict:
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise FtlibError(f"cannot read parameters file {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise FtlibError(f"parameters file {path} must hold a mapping of name: value, got {type(data).__name__}")
    return data


# ------------------------------------------------------------------------------- sub-commands

@contextlib.contextmanager
def _papermill_log():
    """Show papermill's progress and the cells' output (``log_output``) on stderr meanwhile."""
    logger = logging.getLogger("papermill")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def cmd_run(args: argparse.Namespace) -> int:
    """Execute a notebook with papermill into a new run folder."""
    notebook = Path(args.notebook)
    if not notebook.is_file():
        raise FtlibError(f"{notebook}: no such notebook file")
    try:
        import papermill
        from jupyter_client.kernelspec import NoSuchKernel
    except ImportError as exc:
        raise FtlibError(f"`ftlib run` needs papermill ({exc}); install it with pip install 'ftlib[notebooks]'") from exc
    parameters: dict[str, Any] = {}
    for path in args.file:
        parameters.update(_read_yaml(path))
    parameters.update({name: parse_value(value) for name, value in args.param})
    run_dir = runs.new_run_dir(notebook, args.tag, root=args.runs_dir).resolve()
    parameters["run_dir"] = str(run_dir)
    output = run_dir / notebook.name
    try:
        with _papermill_log():
            papermill.execute_notebook(
                str(notebook), str(output), parameters=parameters, kernel_name=args.kernel, language="python",
                cwd=str(notebook.resolve().parent), progress_bar=False, log_output=True,
            )
    except papermill.PapermillExecutionError as exc:
        print(
            f"error: notebook {notebook} failed in cell In [{exc.exec_count}] with {exc.ename}: {exc.evalue}. "
            f"The partly executed notebook (with the full traceback) is in the run folder {run_dir}",
            file=sys.stderr,
        )
        return 1
    except papermill.PapermillException as exc:
        raise FtlibError(f"cannot execute {notebook} (run folder {run_dir}): {exc}") from exc
    except NoSuchKernel as exc:
        raise FtlibError(
            f"no Jupyter kernel named {args.kernel!r}; pass --kernel NAME or install one with "
            f"`python -m ipykernel install --user --name {args.kernel}`"
        ) from exc
    print(run_dir)
    return 0


KEY_METRICS = ("sdr_vocals", "improvement_vocals", "valid_loss", "train_seconds")


def _format_cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def cmd_runs(args: argparse.Namespace) -> int:
    """List run folders with their status and a few metrics."""
    rows = runs.list_runs(args.runs_dir)
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
        return 0
    if not rows:
        print(f"no runs in {args.runs_dir or paths.runs_dir()}")
        return 0
    # key metrics first when runs report them, then the first other numeric ones, four at most
    metrics = [k for k in KEY_METRICS if any(k in row for row in rows)]
    for row in rows:
        for key, value in row.items():
            numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
            if numeric and key not in metrics:
                metrics.append(key)
    metrics = metrics[:4]
    columns = ["run", "status", *metrics]
    table = [columns] + [[_format_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(columns))]
    for line in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip())
    return 0


def _expand_inputs(inputs: list[str]) -> list[Path]:
    """Files as given; folders replaced by their audio files (sorted, non-recursive)."""
    from ftlib.audio import is_audio_file

    out: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            out.extend(sorted(p for p in item.iterdir() if p.is_file() and is_audio_file(p)))
        else:
            out.append(item)
    return out


def cmd_separate(args: argparse.Namespace) -> int:
    """Separate every input with a checkpoint; bad inputs are reported and skipped."""
    from ftlib.separate import Separator

    options = {k: getattr(args, k) for k in ("cropsize", "padding", "batch_size", "device") if getattr(args, k) is not None}
    sep = Separator.from_checkpoint(args.model, **options)
    files = _expand_inputs(args.inputs)
    if not files:
        raise FtlibError(f"no audio files found in {', '.join(args.inputs)}")
    failed = 0
    for path in files:
        try:
            written = sep.separate_file(path, args.output, fmt=args.format, vocals=not args.no_vocals)
        except FtlibError as exc:
            print(f"skipped {path}: {exc}", file=sys.stderr)
            failed += 1
            continue
        print(path)
        for stem, out in written.items():
            print(f"  {stem}: {out}")
    return 1 if failed else 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Score estimates (or a checkpoint's separations) against a folder of references."""
    from ftlib.evaluate import evaluate_folder, format_table

    if args.estimates:
        rows = evaluate_folder(args.folder, estimates=args.estimates)
    else:
        from ftlib.separate import Separator

        rows = evaluate_folder(args.folder, separator=Separator.from_checkpoint(args.model))
    print(format_table(rows))
    if args.csv:
        fields = list(dict.fromkeys(key for row in rows for key in row))
        with open(args.csv, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)
        print(f"wrote {args.csv}")
    return 0


# ------------------------------------------------------------------------------------- parser

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ftlib", description="Frame transformers for music source separation.")
    parser.add_argument("--version", action="version", version=f"ftlib {ftlib.__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="execute a notebook headless into a new run folder")
    p.add_argument("notebook", help="path to the .ipynb notebook")
    p.add_argument("-p", "--param", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                   help="notebook parameter (repeatable); values parse as bool/None/int/float/str")
    p.add_argument("-f", "--file", action="append", default=[], metavar="PARAMS.yaml",
                   help="YAML file of parameters (repeatable; -p overrides it)")
    p.add_argument("--tag", default="", help="suffix of the run folder name")
    p.add_argument("--runs-dir", type=Path, help="where run folders go (default: $FTLIB_RUNS or ./runs)")
    p.add_argument("--kernel", default="python3", help="Jupyter kernel name (default: python3)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("runs", help="list run folders")
    p.add_argument("--runs-dir", type=Path, help="run folder root (default: $FTLIB_RUNS or ./runs)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser("separate", help="split songs into instruments and vocals")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="audio files or folders of audio files")
    p.add_argument("-m", "--model", required=True, metavar="CHECKPOINT", help="model checkpoint")
    p.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="output folder")
    p.add_argument("--cropsize", type=int, help="frames per window")
    p.add_argument("--padding", type=int, help="context frames on each side of a window")
    p.add_argument("--batch-size", type=int, help="windows per forward pass")
    p.add_argument("--format", choices=("wav", "flac"), default="wav", help="output format (default: wav)")
    p.add_argument("--no-vocals", action="store_true", help="write the instrumental only")
    p.add_argument("--device", help="torch device, e.g. cpu or cuda:0 (default: best available)")
    p.set_defaults(func=cmd_separate)

    p = sub.add_parser("evaluate", help="SDR of separations against reference stems")
    p.add_argument("folder", help="dataset folder with reference stems")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("-e", "--estimates", metavar="ESTIMATES_DIR", help="folder of existing separations")
    source.add_argument("-m", "--model", metavar="CHECKPOINT", help="separate with this checkpoint first")
    p.add_argument("--csv", metavar="PATH", help="also write the per-song rows as CSV")
    p.set_defaults(func=cmd_evaluate)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``ftlib`` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except FtlibError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
