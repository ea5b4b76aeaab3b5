"""The ``ftlib`` console script: ``train``, ``run``, ``runs``, ``separate``, ``evaluate``, ``compare`` and
``import-msst``."""
from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from collections.abc import Callable
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


def parse_set(pairs: list[str]) -> dict:
    """``["train.steps=10", "seed=3"]`` -> ``{"train": {"steps": 10}, "seed": 3}``; values parse as JSON
    when they can (numbers, booleans, lists, objects), else stay strings."""
    out: dict = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise FtlibError(f"--set {pair!r}: expected NAME=VALUE (e.g. train.steps=100)")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        *parents, leaf = key.split(".")
        node = out
        for name in parents:
            node = node.setdefault(name, {})
        node[leaf] = value
    return out


# ------------------------------------------------------------------------------- sub-commands

def cmd_train(args: argparse.Namespace) -> int:
    """Train a recipe into a run folder (resuming it), evaluate it and write ``metrics.json``."""
    import os

    from ftlib import recipes
    from ftlib.config import merge

    if args.list:
        for name, module in recipes.RECIPES.items():
            summary = module.__doc__.strip().split("\n")[0]
            print(f"{name:<22}presets: {', '.join(recipes.presets(name))}\n{'':<22}{summary}")
        return 0
    module = recipes.get(args.recipe)
    values = runs.read_parameters(args.config) if args.config else {}
    if args.data_root is not None:
        values = merge(values, {"data": {"root": args.data_root}})
    config = module.Config.preset(args.preset, **merge(values, parse_set(args.set)))
    if args.run_dir:
        run_dir = Path(args.run_dir)
    elif int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise FtlibError("with several processes, name the run folder with --run-dir (all processes share it)")
    else:
        run_dir = runs.new_run_dir(args.recipe, args.tag)
    print(f"{module.NAME} ({args.preset}) -> {run_dir}", file=sys.stderr)
    recipes.run(config, run_dir, stop_after=args.stop_after)
    print(run_dir)
    return 0


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
    """Execute a notebook with papermill into a new run folder: preset, then -f files, then -p values."""
    parameters = runs.resolve_parameters(args.notebook, args.preset, args.file,
                                         {name: parse_value(value) for name, value in args.param})
    try:
        with _papermill_log():
            run_dir = runs.execute(args.notebook, parameters, tag=args.tag, root=args.runs_dir, kernel=args.kernel,
                                   log_output=True)
    except runs.NotebookFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(run_dir)
    return 0


KEY_METRICS = ("sdr_vocals", "improvement_vocals", "valid_loss", "train_seconds")


def _format_cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def cmd_runs(args: argparse.Namespace) -> int:
    """List run folders with their status and a few metrics."""
    rows = runs.list_runs(args.runs_dir, notebook=args.notebook)
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
        return 0
    if not rows:
        which = f" of {args.notebook}" if args.notebook else ""
        print(f"no runs{which} in {args.runs_dir or paths.runs_dir()}")
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


SEPARATOR_OPTIONS = ("cropsize", "padding", "batch_size", "device", "precision", "normalise", "ensemble", "weights",
                     "tta_shift", "tta_swap", "tta_cropsizes", "postprocess")


def _numbers(kind: type) -> Callable[[str], list]:
    """argparse type: a comma-separated list of ``kind``."""

    def parse(text: str) -> list:
        try:
            return [kind(item) for item in text.split(",") if item.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated {kind.__name__}s, got {text!r}") from None

    return parse


def _separator(args: argparse.Namespace, models: list[str] | None = None):
    """The Separator (one checkpoint or an ensemble) with the options given on the command line."""
    from ftlib.separation import Separator

    models = models or args.model
    given = {k: getattr(args, k, None) for k in SEPARATOR_OPTIONS}
    options = {k: v for k, v in given.items() if v is not None and v is not False}  # --padding 0 is given
    separator = Separator.from_checkpoint(models if len(models) > 1 else models[0], **options)
    print(f"separating with {separator.settings}", file=sys.stderr)
    return separator


def cmd_separate(args: argparse.Namespace) -> int:
    """Separate every input (files, folders, playlists); bad inputs are reported and skipped."""
    from ftlib.separation import separate_all

    report = separate_all(_separator(args), args.inputs, args.output, fmt=args.format, vocals=not args.no_vocals,
                                bit_depth=args.bit_depth, model_names=args.model_names, overwrite=args.overwrite,
                                progress=not args.quiet)
    print(f"{len(report.done)} separated or copied, {len(report.skipped)} already done, {len(report.failed)} failed",
          file=sys.stderr)
    return 1 if report.failed else 0


def _metrics(args: argparse.Namespace) -> list[str] | None:
    from ftlib.evaluate import METRICS

    unknown = [m for m in args.metrics or [] if m not in METRICS]
    if unknown:
        raise FtlibError(f"--metrics: unknown {', '.join(unknown)}; choose from {','.join(METRICS)}")
    return args.metrics


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Score estimates (or separations by checkpoints) against a folder of references."""
    from ftlib import evaluate

    separator = None if args.estimates else _separator(args)
    result = evaluate.run_evaluation(args.folder, estimates=args.estimates, separator=separator,
                                     progress=not args.quiet, metrics=_metrics(args))
    columns = evaluate.metric_columns(result.rows, ("estimate",))
    for stem in evaluate.STEMS:  # one table per stem keeps the lines short
        print(evaluate.format_table(result.rows, [c for c in columns if c.endswith("_" + stem)]) + "\n")
    notes = evaluate.format_notes(result.rows)
    if notes:
        print(notes + "\n")
    print(evaluate.format_summary(result.rows))
    if args.csv:
        print(f"wrote {evaluate.write_csv(result.rows, args.csv)}")
    if args.json:
        print(f"wrote {result.save(args.json)}")
    return 0


class _System(argparse.Action):
    """Collects ``-m``, ``-e`` and ``--json`` in command-line order as ``(kind, value)`` pairs."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, [*(getattr(namespace, self.dest, None) or []), (self.const, values)])


def _evaluation(args: argparse.Namespace, kind: str, value: str, metrics: list[str] | None):
    """One system of ``ftlib compare`` scored on DATA: a checkpoint (``kind="model"``) or an estimates folder."""
    from ftlib import evaluate
    from ftlib.separation.separator import checkpoint_name

    if args.folder is None:
        raise FtlibError(f"{'-m' if kind == 'model' else '-e'} {value}: give the DATA folder to score it on")
    if kind == "model":
        return evaluate.run_evaluation(args.folder, separator=_separator(args, [value]), progress=not args.quiet,
                                       metrics=metrics, name=checkpoint_name(value))
    return evaluate.run_evaluation(args.folder, estimates=value, progress=not args.quiet, metrics=metrics)


def cmd_compare(args: argparse.Namespace) -> int:
    """Compare systems on the same songs, each against the first: paired differences, intervals, tests."""
    from ftlib import compare, evaluate

    if len(args.systems) < 2:
        raise FtlibError("give two or more systems (-m CHECKPOINT, -e ESTIMATES_DIR, --json EVALUATION.json|RUN)")
    metrics = _metrics(args)
    saved = {value: evaluate.Evaluation.load(value) for kind, value in args.systems if kind == "json"}
    if args.folder is not None and saved:  # refuse evaluations of other songs before separating anything
        data = evaluate.Evaluation("DATA", [], evaluate.folder_fingerprint(args.folder))
        compare.check_same_songs([data, *saved.values()])
    evaluations = [saved[value] if kind == "json" else _evaluation(args, kind, value, metrics)
                   for kind, value in args.systems]
    result = compare.compare(evaluations)
    print(compare.format_comparison(result))
    if args.csv:
        print(f"wrote {result.save_csv(args.csv)}")
    if args.json_out:
        print(f"wrote {result.save(args.json_out)}")
    return 0


def cmd_import_msst(args: argparse.Namespace) -> int:
    """Convert an MSST BS-RoFormer / Mel-Band RoFormer checkpoint into an ftlib checkpoint folder."""
    from ftlib import msst

    path, model = msst.import_checkpoint(args.config, args.weights, args.output, model_type=args.model_type,
                                         stem=args.stem, overwrite=args.overwrite)
    cfg = model.config
    returns = cfg.target_stem or f"all stems [B, {cfg.num_stems}, C, F, T]"
    print(f"{model.model_name}: {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters, "
          f"stems {', '.join(cfg.stems)}, forward returns {returns}; STFT n_fft {cfg.stft_n_fft}, "
          f"hop {cfg.stft_hop_length} at {cfg.sample_rate} Hz", file=sys.stderr)
    print(path)
    return 0


# ------------------------------------------------------------------------------------- parser

def _add_separator_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("separation")
    g.add_argument("--cropsize", type=int, help="frames per chunk (default: the checkpoint's best or training crop "
                                                "size, else 256)")
    g.add_argument("--padding", type=int, help="real context frames on each side of a chunk (default: the "
                                               "checkpoint's, else a quarter of the crop size; 64 for old checkpoints)")
    g.add_argument("--batch-size", type=int, help="chunks per forward pass (default: 16 on GPUs, 1 on CPU)")
    g.add_argument("--device", help="torch device, e.g. cpu, cuda:0 or mps (default: best available)")
    g.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"),
                   help="autocast dtype (default auto: bf16 on GPUs with native bf16, fp16 on older GPUs and "
                        "MPS, float32 on the CPU); fp32 turns autocast off")
    g.add_argument("--normalise", choices=("song", "chunk"),
                   help="divide each chunk (default) or the whole song by its maximum")
    g.add_argument("--ensemble", choices=("average", "min", "max", "waveform"),
                   help="how several models combine (default: average)")
    g.add_argument("--weights", type=_numbers(float), metavar="W1,W2,...", help="per-model weights (average, waveform)")
    g.add_argument("--tta-shift", action="store_true", help="also run chunks shifted by half a chunk and average")
    g.add_argument("--tta-swap", action="store_true", help="also run with left and right swapped and average")
    g.add_argument("--tta-cropsizes", type=_numbers(int), metavar="C1,C2,...",
                   help="extra chunk sizes to average over (padding scales with them)")
    g.add_argument("--postprocess", action="store_true", help="raise the mask over long vocal-free stretches")
    g.add_argument("--quiet", action="store_true", help="no progress bars")


def _add_metrics_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--metrics", type=_names, metavar="M1,M2,...",
                   help="metrics to compute: sdr, csdr, sisdr, fullness, bleedless, l1_freq, log_wmse (default: all)")


def _names(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ftlib", description="Frame transformers for music source separation.")
    parser.add_argument("--version", action="version", version=f"ftlib {ftlib.__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("train", help="train a recipe into a run folder (resumed when it holds checkpoints)",
                       description="Train a recipe (see --list) with a preset, a config file and overrides, in "
                                   "this order; under torchrun or accelerate launch every process runs this command.")
    p.add_argument("recipe", nargs="?", default="separation", help="recipe name (default: separation)")
    p.add_argument("--list", action="store_true", help="list the recipes and their presets")
    p.add_argument("--preset", default="default", help="recipe preset, e.g. tiny, cpu or gpu (default: the defaults)")
    p.add_argument("--config", metavar="FILE", help="YAML/JSON file of config fields (nested sections as mappings)")
    p.add_argument("--data-root", metavar="DIR", help="dataset folder (sets data.root)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a field, dotted for sections: train.steps=2000, model.preset=small")
    p.add_argument("--run-dir", metavar="RUN", help="run folder (resumed when it holds checkpoints); default: a "
                                                    "new one under runs/ (one process only)")
    p.add_argument("--tag", default="", help="suffix of a new run folder's name")
    p.add_argument("--stop-after", type=int, metavar="STEPS",
                   help="stop (with a checkpoint) after this many more steps; run again to go on")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("run", help="execute a notebook headless into a new run folder")
    p.add_argument("notebook", help="path to the .ipynb notebook")
    p.add_argument("-p", "--param", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                   help="notebook parameter (repeatable); values parse as bool/None/int/float/str")
    p.add_argument("--preset", default="", metavar="NAME",
                   help="parameters from notebooks/params/<notebook>/NAME.yaml: smoke (CI check), cpu "
                        "(minutes on a CPU) or gpu (full size); -f and -p override it")
    p.add_argument("-f", "--file", action="append", default=[], metavar="PARAMS.yaml",
                   help="YAML file of parameters (repeatable; overrides --preset, -p overrides it)")
    p.add_argument("--tag", default="", help="suffix of the run folder name")
    p.add_argument("--runs-dir", type=Path, help="where run folders go (default: $FTLIB_RUNS or ./runs)")
    p.add_argument("--kernel", default="python3", help="Jupyter kernel name (default: python3)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("runs", help="list run folders")
    p.add_argument("--runs-dir", type=Path, help="run folder root (default: $FTLIB_RUNS or ./runs)")
    p.add_argument("--notebook", default="", metavar="STEM", help="only runs of this notebook, e.g. 00_quickstart")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser("separate", help="split songs into instruments and vocals")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="audio files, folders of audio files or JSON playlists")
    p.add_argument("-m", "--model", required=True, action="append", metavar="CHECKPOINT",
                   help="model checkpoint folder; repeat for an ensemble")
    p.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="output folder")
    p.add_argument("--format", choices=("wav", "flac"), default="wav", help="output format (default: wav)")
    p.add_argument("--bit-depth", type=int, choices=(16, 24, 32),
                   help="bits per sample; 32 is float (wav only); default: 32-bit float wav, 24-bit flac")
    p.add_argument("--no-vocals", action="store_true", help="write the instrumental only")
    p.add_argument("--model-names", action="store_true", help="append the model names to output file names")
    p.add_argument("--overwrite", action="store_true", help="redo songs whose outputs exist (default: skip them)")
    _add_separator_options(p)
    p.set_defaults(func=cmd_separate)

    p = sub.add_parser("evaluate", help="SDR, cSDR, SI-SDR, fullness, bleedless, L1-freq and log-WMSE of separations",
                       description="Score separations against reference stems: a per-song table, notes on "
                                   "conversions and undefined values, and a summary with bootstrap intervals.")
    p.add_argument("folder", help="dataset folder: <song>/{mixture,vocals[,instrumental]}.wav (MUSDB18-HQ layout)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("-e", "--estimates", metavar="ESTIMATES_DIR",
                        help="folder of existing separations <song>_Instruments[_<models>].<ext>")
    source.add_argument("-m", "--model", action="append", metavar="CHECKPOINT",
                        help="separate with this checkpoint first; repeat for an ensemble")
    p.add_argument("--csv", metavar="PATH", help="write one row per song with every metric and note")
    p.add_argument("--json", metavar="PATH", help="write songs, summaries with intervals and the songs' fingerprint "
                                                  "(what ftlib compare --json reads)")
    _add_metrics_option(p)
    _add_separator_options(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("compare", help="compare systems on the same songs (paired differences, intervals, tests)",
                       description="Score two or more systems on the same songs and compare each with the first: "
                                   "per-song differences, their mean and median with bootstrap intervals, wins, "
                                   "and a Wilcoxon signed-rank test, for every metric. Systems keep their "
                                   "command-line order; evaluations of different songs are refused.")
    p.add_argument("folder", nargs="?", metavar="DATA", help="dataset folder the -m and -e systems are scored on "
                                                             "(with --json alone: checked against their songs)")
    p.add_argument("-m", "--model", dest="systems", action=_System, const="model", default=[], metavar="CHECKPOINT",
                   help="a system: separate DATA with this checkpoint")
    p.add_argument("-e", "--estimates", dest="systems", action=_System, const="estimates", metavar="ESTIMATES_DIR",
                   help="a system: existing separations <song>_Instruments[_<models>].<ext> of DATA")
    p.add_argument("--json", dest="systems", action=_System, const="json", metavar="EVALUATION.json",
                   help="a system: an evaluation saved by ftlib evaluate --json, or a training run folder (the "
                        "per-song scores of its metrics.json)")
    p.add_argument("--csv", metavar="PATH", help="write the comparison table (one row per metric and system)")
    p.add_argument("--json-out", metavar="PATH", help="write everything: per-song values and differences, "
                                                      "summaries, tests, the songs' fingerprint")
    _add_metrics_option(p)
    _add_separator_options(p)
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("import-msst", help="convert a Music-Source-Separation-Training BS-RoFormer or Mel-Band "
                                           "RoFormer checkpoint into an ftlib checkpoint",
                       description="Convert an MSST checkpoint (its YAML config and its .ckpt state dict) into an "
                                   "ftlib checkpoint folder (bs_roformer or mel_roformer). The weights are loaded "
                                   "with torch.load(weights_only=True): pickled code is refused, never run.")
    p.add_argument("config", metavar="CONFIG.yaml", help="the MSST config the checkpoint was trained with")
    p.add_argument("weights", metavar="WEIGHTS.ckpt", help="the MSST state dict (.ckpt/.pth/.safetensors)")
    p.add_argument("output", metavar="OUT", help="the ftlib checkpoint folder to write")
    p.add_argument("--model-type", choices=("bs_roformer", "mel_band_roformer"),
                   help="MSST's model type (default: from the config's freqs_per_bands or num_bands)")
    p.add_argument("--stem", help="the stem the model returns; 'all' returns every stem (default: vocals when the "
                                  "model has them, else its only stem, else all)")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    p.set_defaults(func=cmd_import_msst)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``ftlib`` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except FtlibError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
