"""What a training step costs beyond the model's own forward and backward pass.

    python bench/train_step.py                    # the separation recipe's cpu preset, synthetic songs
    python bench/train_step.py --preset tiny --steps 12
    python bench/train_step.py --set voxaug.eq_prob=0.5 --set voxaug.mixup_prob=0.2

Baseline: the model alone, a forward pass, the loss, the backward pass and the optimizer step on one
fixed batch already in memory. Measured: steady-state steps of the engine (``fit``) building its
batches from the dataset, without validation or checkpoints in between (the time between two log
lines). The baseline is timed before and after the engine, in the same process, and averaged, so a
drift of the machine's speed hits both alike. Prints both and their ratio.
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from ftlib import recipes
from ftlib.cli import parse_set
from ftlib.config import merge
from ftlib.train import fit


def model_alone(parts, config, steps: int) -> float:
    """Median seconds of forward + loss + backward + optimizer step on one fixed batch."""
    data = parts.train_data
    batch = {k: torch.stack([data[(0, i)][k] for i in range(config.train.batch_size)]) for k in data[(0, 0)]}
    optimizer = torch.optim.AdamW(parts.model.parameters(), lr=1e-4, fused=True)
    times = []
    for _ in range(steps + 2):
        started = time.perf_counter()
        loss, _ = parts.loss_fn(parts.model, batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times[2:])


def engine(parts, config, steps: int, run_dir: Path) -> float:
    """Seconds per steady-state engine step: between the log lines at step 2 and at the last step."""
    train = config.train.replace(steps=steps, log_every=2, eval_every=0, checkpoint_every=steps, warmup_steps=1)
    fit(parts.model, parts.loss_fn, parts.train_data, train, run_dir)
    log = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    first, last = log[0], log[-1]
    return (last["elapsed"] - first["elapsed"]) / (last["step"] - first["step"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="cpu", help="separation recipe preset (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=30, help="timed steps of each (default: %(default)s)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="recipe config override")
    args = parser.parse_args()
    config = recipes.separation.Config.preset(args.preset, **merge({"evaluation": {"context_cropsizes": []}},
                                                                     parse_set(args.set)))
    parts = recipes.separation.build(config)
    with tempfile.TemporaryDirectory() as folder:
        before = model_alone(parts, config, args.steps // 2)
        step = engine(parts, config, args.steps, Path(folder) / "run")
        after = model_alone(parts, config, args.steps // 2)
    alone = (before + after) / 2
    print(f"separation/{args.preset}: {config.model.name}/{config.model.preset}, batch {config.train.batch_size} x "
          f"{config.voxaug.cropsize} frames, {torch.get_num_threads()} threads")
    print(f"{'model alone':>22}: {alone:.3f} s/step (before {before:.3f}, after {after:.3f})")
    print(f"{'engine, data included':>22}: {step:.3f} s/step")
    print(f"{'ratio':>22}: {step / alone:.3f}x")


if __name__ == "__main__":
    main()
