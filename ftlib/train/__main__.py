"""Train a recipe from the command line, on one process or many::

    python -m ftlib.train --config recipe.yaml --run-dir runs/my-run [--set train.steps=2000 ...]
    accelerate launch --num_processes 4 -m ftlib.train --config recipe.yaml --run-dir runs/my-run
    torchrun --nproc_per_node 2 -m ftlib.train --preset tiny --run-dir /tmp/run     # CPU, gloo

The config file (YAML or JSON) holds :class:`~ftlib.train.recipes.RecipeConfig` fields; ``--set``
overrides one field, dotted for the nested ones (``train.lr=3e-4``). Running the command again on
the same ``--run-dir`` resumes the run from its newest checkpoint.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ftlib.errors import FtlibError


def _parse_value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def overrides(pairs: list[str]) -> dict:
    """``["train.steps=10", "recipe=pretrain"]`` -> ``{"train": {"steps": 10}, "recipe": "pretrain"}``."""
    out: dict = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise FtlibError(f"--set {pair!r}: expected NAME=VALUE (e.g. train.steps=100)")
        *parents, leaf = key.split(".")
        node = out
        for name in parents:
            node = node.setdefault(name, {})
        node[leaf] = _parse_value(value)
    return out


def main(argv: list[str] | None = None) -> int:
    from ftlib import runs
    from ftlib.train import recipes

    parser = argparse.ArgumentParser(prog="python -m ftlib.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", help="YAML/JSON file of RecipeConfig fields")
    parser.add_argument("--preset", default="default", help="RecipeConfig preset the file and --set apply to")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="override a field")
    parser.add_argument("--run-dir", help="run folder (resumed when it holds checkpoints); default: a new one "
                                          "under runs/ (only with one process)")
    parser.add_argument("--tag", default="", help="suffix of a new run folder's name")
    parser.add_argument("--stop-after", type=int, metavar="STEPS",
                        help="stop (with a checkpoint) after this many more steps; run again to go on")
    args = parser.parse_args(argv)
    try:
        values = runs.read_parameters(args.config) if args.config else {}
        for key, value in overrides(args.set).items():
            values[key] = {**values.get(key, {}), **value} if isinstance(value, dict) else value
        config = recipes.RecipeConfig.preset(args.preset, **values)
        run_dir = Path(args.run_dir) if args.run_dir else _new_run_dir(args.tag, runs)
        recipes.run(config, run_dir, stop_after=args.stop_after)
    except FtlibError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def _new_run_dir(tag: str, runs) -> Path:
    import os

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise FtlibError("with several processes, name the run folder with --run-dir (all processes share it)")
    return runs.new_run_dir("train", tag)


if __name__ == "__main__":
    sys.exit(main())
