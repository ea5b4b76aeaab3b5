"""The training engine: one ``fit`` loop for every recipe, on Hugging Face Accelerate.

A recipe supplies a model, a training dataset, a ``loss_fn(model, batch) -> (loss, metrics)`` and
optionally a validation dataset. The engine owns the optimizer (AdamW), the warmup + polynomial
decay schedule, gradient accumulation and clipping, mixed precision, NaN-step skipping,
checkpoints with full resume state, ``metrics.jsonl``, wandb and the progress bar.

Run folder layout: ``<run_dir>/metrics.jsonl`` and ``<run_dir>/checkpoints/step-XXXXXXX/`` (plus
``best/`` when validating). ``fit`` resumes from the newest checkpoint found in the run folder.
"""
from __future__ import annotations

import dataclasses
import json
import math
import random
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from ftlib import checkpoint
from ftlib.config import Config
from ftlib.train.sampler import StepBatchSampler
from ftlib.train.schedule import warmup_poly

LossFn = Callable[[nn.Module, dict[str, torch.Tensor]], tuple[torch.Tensor, dict[str, float]]]


@dataclasses.dataclass
class TrainConfig(Config):
    """Args:
        steps: optimizer steps in the whole run.
        batch_size: items per micro-batch per process.
        grad_accum: micro-batches accumulated per optimizer step.
        lr: peak learning rate (AdamW).
        weight_decay: AdamW decoupled weight decay.
        betas: AdamW betas.
        warmup_steps: linear warmup length.
        decay_power: power of the polynomial decay after warmup (1 = linear).
        min_lr_ratio: floor of the decay as a fraction of ``lr``.
        grad_clip: clip the global gradient norm to this (0 disables).
        mixed_precision: "no", "bf16" or "fp16".
        log_every: steps between ``metrics.jsonl`` lines.
        eval_every: steps between validations (0: only at the end).
        checkpoint_every: steps between checkpoints (0: only at the end).
        keep_last: step checkpoints kept (older ones are deleted; ``best`` is kept apart).
        num_workers: DataLoader worker processes.
        seed: seed of the model init, data order and items.
        wandb: also log to Weights & Biases (offline unless WANDB_MODE says otherwise).
    """

    steps: int = 1000
    batch_size: int = 8
    grad_accum: int = 1
    lr: float = 1e-3
    weight_decay: float = 1e-2
    betas: tuple[float, float] = (0.9, 0.99)
    warmup_steps: int = 50
    decay_power: float = 1.0
    min_lr_ratio: float = 0.01
    grad_clip: float = 1.0
    mixed_precision: str = "no"
    log_every: int = 10
    eval_every: int = 0
    checkpoint_every: int = 0
    keep_last: int = 2
    num_workers: int = 0
    seed: int = 0
    wandb: bool = False

    PRESETS = {"tiny": dict(steps=6, batch_size=2, warmup_steps=2, log_every=1)}

    def validate(self) -> None:
        self.require(self.steps >= 1 and self.batch_size >= 1 and self.grad_accum >= 1,
                     "steps, batch_size and grad_accum must be >= 1")
        self.require(self.lr > 0, "lr must be > 0")
        self.require(0 <= self.min_lr_ratio <= 1, "min_lr_ratio must be in [0, 1]")
        self.require(self.mixed_precision in ("no", "bf16", "fp16"), "mixed_precision must be 'no', 'bf16' or 'fp16'")
        self.require(self.keep_last >= 1, "keep_last must be >= 1")

    def lr_at(self, step: int) -> float:
        return self.lr * warmup_poly(step, self.steps, self.warmup_steps, self.decay_power, self.min_lr_ratio)


class _EpochFree(Dataset):
    """Adapter letting a plain dataset take the sampler's ``(epoch, index)`` pairs."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item):
        return self.dataset[item[1]]


# ----------------------------------------------------------------------------- state helpers

def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    return {"torch": torch.get_rng_state(), "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)),
                                                      *np_state[2:]], "python": random.getstate()}


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest ``checkpoints/step-*`` folder with a training state, or None."""
    folders = sorted(Path(run_dir, "checkpoints").glob("step-*"))
    folders = [f for f in folders if (f / "state.json").is_file()]
    return folders[-1] if folders else None


def _to(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


# -------------------------------------------------------------------------------- validation

@torch.no_grad()
def evaluate(model: nn.Module, data: Dataset, loss_fn: LossFn, batch_size: int = 8,
             device: torch.device | str = "cpu") -> float:
    """Mean of ``loss_fn`` over ``data`` (weighted by batch size), in eval mode."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for batch in DataLoader(data, batch_size=batch_size):
        loss, _ = loss_fn(model, _to(batch, torch.device(device)))
        n = next(iter(batch.values())).shape[0]
        total, count = total + float(loss) * n, count + n
    model.train(was_training)
    return total / max(1, count)


# ----------------------------------------------------------------------------------- the loop

def fit(model: nn.Module, loss_fn: LossFn, train_data: Dataset, config: TrainConfig, run_dir: str | Path,
        valid_data: Dataset | None = None, resume: bool = True, stop_after: int | None = None) -> nn.Module:
    """Train ``model`` for ``config.steps`` optimizer steps, resuming from ``run_dir`` if it holds a
    checkpoint. ``stop_after`` ends the call early after that many steps (the run stays resumable).
    Returns the trained (unwrapped) model."""
    from accelerate import Accelerator

    run_dir = Path(run_dir)
    accel = Accelerator(mixed_precision=config.mixed_precision)
    main = accel.is_main_process
    seed_everything(config.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, betas=config.betas,
                                  weight_decay=config.weight_decay)
    step, best, skipped = 0, math.inf, 0
    found = latest_checkpoint(run_dir) if resume else None
    if found is not None:
        state = checkpoint.load_state(found)
        model.load_state_dict(checkpoint.load(found).state_dict())
        optimizer.load_state_dict(state["optimizer"])
        step, best, skipped = state["step"], state["best"], state["skipped_steps"]
    model, optimizer = accel.prepare(model, optimizer)
    if found is not None:
        if state.get("scaler") and accel.scaler is not None:
            accel.scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"])
    if not getattr(train_data, "epoch_aware", False):
        train_data = _EpochFree(train_data)
    sampler = StepBatchSampler(len(train_data), config.batch_size, config.seed, step * config.grad_accum,
                               accel.process_index, accel.num_processes)
    batches = iter(DataLoader(train_data, batch_sampler=sampler, num_workers=config.num_workers,
                              persistent_workers=config.num_workers > 0))

    log_path = run_dir / "metrics.jsonl"
    wandb_run = None
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        _truncate_log(log_path, step)
        wandb_run = _start_wandb(config, model, run_dir) if config.wandb else None

    def log(record: dict[str, Any]) -> None:
        if main:
            with open(log_path, "a") as f:
                f.write(json.dumps(record) + "\n")
            if wandb_run is not None:
                wandb_run.log(record, step=record["step"])

    def save(tag: str) -> None:
        accel.wait_for_everyone()
        if main:
            state = dict(optimizer=optimizer.state_dict(), step=step, best=best, skipped_steps=skipped,
                         rng=rng_state(), train_config=config.to_dict())
            if accel.scaler is not None:
                state["scaler"] = accel.scaler.state_dict()
            checkpoint.save(accel.unwrap_model(model), run_dir / "checkpoints" / tag, **state)
            _prune(run_dir / "checkpoints", config.keep_last)

    model.train()
    end = config.steps if stop_after is None else min(config.steps, step + stop_after)
    bar = tqdm(total=config.steps, initial=step, desc="training", disable=not main, dynamic_ncols=True)
    started, window = time.time(), []
    while step < end:
        for group in optimizer.param_groups:
            group["lr"] = config.lr_at(step)
        total, finite = 0.0, True
        for micro in range(config.grad_accum):
            batch = _to(next(batches), accel.device)
            with accel.autocast():
                loss, _ = loss_fn(model, batch)
            finite = finite and bool(torch.isfinite(loss.detach()))
            if finite:
                accel.backward(loss / config.grad_accum)
                total += float(loss.detach()) / config.grad_accum
        grad_norm = float("nan")
        if finite:
            if config.grad_clip > 0:
                grad_norm = float(accel.clip_grad_norm_(model.parameters(), config.grad_clip))
            optimizer.step()
        else:
            skipped += 1
        optimizer.zero_grad(set_to_none=True)
        step += 1
        window.append(total)
        bar.update(1)
        bar.set_postfix(loss=f"{total:.5f}")
        if step % config.log_every == 0 or step == end:
            log({"step": step, "loss": sum(window) / len(window), "lr": config.lr_at(step - 1),
                 "grad_norm": grad_norm, "skipped_steps": skipped, "elapsed": time.time() - started})
            window = []
        last = step == config.steps
        if valid_data is not None and ((config.eval_every and step % config.eval_every == 0) or last):
            valid_loss = evaluate(accel.unwrap_model(model), valid_data, loss_fn, config.batch_size, accel.device)
            log({"step": step, "valid_loss": valid_loss})
            if valid_loss < best:
                best = valid_loss
                save("best")
        if (config.checkpoint_every and step % config.checkpoint_every == 0) or step == end:
            save(f"step-{step:07d}")
    bar.close()
    if wandb_run is not None:
        wandb_run.finish()
    return accel.unwrap_model(model)


def _truncate_log(path: Path, step: int) -> None:
    """Drop log lines past ``step`` (written after the checkpoint a resume starts from)."""
    if not path.is_file():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line)["step"] <= step:
                keep.append(line)
        except (json.JSONDecodeError, KeyError):
            continue
    path.write_text("".join(line + "\n" for line in keep))


def _prune(folder: Path, keep_last: int) -> None:
    for old in sorted(folder.glob("step-*"))[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)


def _start_wandb(config: TrainConfig, model: nn.Module, run_dir: Path):
    import os

    import wandb

    unwrapped = checkpoint.unwrap(model)
    return wandb.init(project=os.environ.get("WANDB_PROJECT", "ftlib"), dir=str(run_dir), name=run_dir.name,
                      mode=os.environ.get("WANDB_MODE", "offline"),
                      config={"train": config.to_dict(), "model": unwrapped.model_name,
                              "model_config": unwrapped.config.to_dict()})
