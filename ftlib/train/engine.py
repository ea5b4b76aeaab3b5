"""The training engine: one ``fit`` loop for every recipe, on Hugging Face Accelerate.

A recipe supplies a model, a training dataset, a ``loss_fn(model, batch) -> (loss, metrics)`` and
optionally a validation dataset. The engine owns the optimizer (AdamW), the warmup + polynomial
decay schedule, the crop-size curriculum, gradient accumulation and clipping, mixed precision with
loss scaling, EMA weights, NaN-step skipping, checkpoints with full resume state,
``metrics.jsonl``, wandb and the progress bar.

Hooks a recipe may use:

- ``loss_fn.begin_step(step)`` (optional method) is called before every optimizer step, e.g. to
  alternate generator and discriminator steps.
- A model with an ``export()`` method (e.g. a generator + discriminator pair) saves ``export()``
  as the checkpoint's model and keeps its own full weights in the training state.
- A model with ``find_unused_parameters = True`` gets DDP's unused-parameter detection.

Run folder layout: ``<run_dir>/metrics.jsonl`` and ``<run_dir>/checkpoints/step-XXXXXXX/`` (plus
``best/`` when validating and ``ema/`` with EMA). ``fit`` resumes from the newest checkpoint found
in the run folder: weights, optimizer, scaler, EMA, step, RNG states and data position, so the
resumed run is the uninterrupted one (exactly, on CPU).
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import math
import random
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from ftlib import checkpoint
from ftlib.config import Config
from ftlib.errors import DataError
from ftlib.train import curriculum
from ftlib.train.ema import EMA
from ftlib.train.precision import Precision
from ftlib.train.sampler import StepBatchSampler
from ftlib.train.schedule import warmup_poly

LossFn = Callable[[nn.Module, dict[str, torch.Tensor]], tuple[torch.Tensor, dict[str, float]]]
TrainData = Dataset | Callable[[int], Dataset]


@dataclasses.dataclass
class TrainConfig(Config):
    """Args:
        steps: optimizer steps in the whole run.
        batch_size: items per micro-batch per process (without a curriculum).
        grad_accum: micro-batches accumulated per optimizer step (without a curriculum).
        lr: peak learning rate (AdamW).
        weight_decay: AdamW decoupled weight decay.
        betas: AdamW betas.
        warmup_steps: linear warmup length.
        decay_power: power of the polynomial decay after warmup (1 = linear).
        min_lr_ratio: floor of the decay as a fraction of ``lr``; never crossed.
        grad_clip: clip the global gradient norm to this (0 disables).
        mixed_precision: "no", "bf16" or "fp16" (fp16 with a dynamic loss scaler; on CPU too).
        ema_decay: keep an exponential moving average of the weights with this decay (0 disables);
            validation, ``best/`` and ``ema/`` use the averaged weights.
        curriculum: progressive crop sizes, stages ``(start_step, cropsize, batch_size[, grad_accum])``
            starting at step 0 (or text ``"0:256:8, 1000:512:4:2"``); the training data is then a
            function ``cropsize -> Dataset``.
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
    ema_decay: float = 0.0
    curriculum: tuple[tuple[int, ...], ...] = ()
    log_every: int = 10
    eval_every: int = 0
    checkpoint_every: int = 0
    keep_last: int = 2
    num_workers: int = 0
    seed: int = 0
    wandb: bool = False

    PRESETS = {"tiny": dict(steps=6, batch_size=2, warmup_steps=2, log_every=1)}

    def __post_init__(self) -> None:
        if isinstance(self.curriculum, str):  # "0:256:8, 1000:512:4:2"
            try:
                self.curriculum = tuple(tuple(stage) for stage in curriculum.parse(self.curriculum))
            except ValueError as exc:
                self.require(False, str(exc))
        super().__post_init__()

    def validate(self) -> None:
        self.require(self.steps >= 1 and self.batch_size >= 1 and self.grad_accum >= 1,
                     "steps, batch_size and grad_accum must be >= 1")
        self.require(self.lr > 0, "lr must be > 0")
        self.require(0 <= self.min_lr_ratio <= 1, "min_lr_ratio must be in [0, 1]")
        self.require(self.mixed_precision in ("no", "bf16", "fp16"), "mixed_precision must be 'no', 'bf16' or 'fp16'")
        self.require(0 <= self.ema_decay < 1, "ema_decay must be in [0, 1)")
        self.require(self.keep_last >= 1, "keep_last must be >= 1")
        try:
            curriculum.parse(self.curriculum)
        except ValueError as exc:
            self.require(False, str(exc))

    def lr_at(self, step: int) -> float:
        return self.lr * warmup_poly(step, self.steps, self.warmup_steps, self.decay_power, self.min_lr_ratio)

    def stages(self) -> tuple[curriculum.Stage, ...]:
        """The curriculum stages; without a curriculum, one stage of ``batch_size`` x ``grad_accum``."""
        return curriculum.parse(self.curriculum) or (curriculum.Stage(0, 0, self.batch_size, self.grad_accum),)


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


def context_length_study(model: nn.Module, valid_at: Callable[[int], Dataset], loss_fn: LossFn,
                         cropsizes: Sequence[int] = (256, 512, 1024, 2048), batch_size: int = 1,
                         device: torch.device | str = "cpu") -> list[dict[str, float]]:
    """Validation loss of one model at several crop sizes (the seed project's context-length study).

    ``valid_at(cropsize)`` returns the validation set cut at that size (e.g. ``ValidationCrops.at``);
    crop sizes it cannot serve (longer than every song: DataError or ValueError) are left out. Returns
    ``[{"cropsize", "valid_loss", "items"}]``, ready for ``context_length.json``.
    """
    rows = []
    for cropsize in cropsizes:
        try:
            data = valid_at(cropsize)
        except (DataError, ValueError):
            continue
        if len(data):
            rows.append({"cropsize": int(cropsize), "valid_loss": evaluate(model, data, loss_fn, batch_size, device),
                         "items": len(data)})
    return rows


# ------------------------------------------------------------------------------ data by stage

class _StageBatches:
    """Micro-batches for optimizer step ``step``: a StepBatchSampler per curriculum stage, started at
    the stage's micro-batch position, so the data position is a function of the step alone."""

    def __init__(self, train_data: TrainData, config: TrainConfig, rank: int, world_size: int):
        self.data, self.config, self.rank, self.world_size = train_data, config, rank, world_size
        self.stages, self.current, self.batches = config.stages(), -1, None

    def stage(self, step: int) -> curriculum.Stage:
        return self.stages[curriculum.stage_at(self.stages, step)]

    def _dataset(self, stage: curriculum.Stage) -> Dataset:
        if self.config.curriculum:
            if not callable(self.data) or isinstance(self.data, Dataset):
                raise TypeError("with a curriculum, the training data must be a function cropsize -> Dataset")
            data = self.data(stage.cropsize)
        else:
            data = self.data
        return data if getattr(data, "epoch_aware", False) else _EpochFree(data)

    def next(self, step: int) -> dict[str, torch.Tensor]:
        index = curriculum.stage_at(self.stages, step)
        if index != self.current:
            stage, cfg = self.stages[index], self.config
            data = self._dataset(stage)
            sampler = StepBatchSampler(len(data), stage.batch_size, cfg.seed, (step - stage.start) * stage.grad_accum,
                                       self.rank, self.world_size)
            self.batches = iter(DataLoader(data, batch_sampler=sampler, num_workers=cfg.num_workers,
                                           persistent_workers=cfg.num_workers > 0))
            self.current = index
        return next(self.batches)


# ----------------------------------------------------------------------------------- the loop

def process_state():
    """Accelerate's per-process state. Without GPUs, processes launched together (torchrun,
    ``accelerate launch``) join over gloo; Accelerate would otherwise run each one alone."""
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def _accelerator(config: TrainConfig, model: nn.Module):
    from accelerate import Accelerator, DistributedDataParallelKwargs
    from accelerate.state import AcceleratorState

    process_state()
    AcceleratorState._reset_state()  # each fit may ask for another precision; the process group stays
    handlers = [DistributedDataParallelKwargs(find_unused_parameters=True)] \
        if getattr(model, "find_unused_parameters", False) else []
    # precision is the engine's own (ftlib.train.precision), the same on CPU and GPU
    return Accelerator(mixed_precision="no", kwargs_handlers=handlers, cpu=not torch.cuda.is_available())


def fit(model: nn.Module, loss_fn: LossFn, train_data: TrainData, config: TrainConfig, run_dir: str | Path,
        valid_data: Dataset | None = None, resume: bool = True, stop_after: int | None = None,
        param_groups: list[dict] | None = None, valid_loss_fn: LossFn | None = None) -> nn.Module:
    """Train ``model`` for ``config.steps`` optimizer steps, resuming from ``run_dir`` if it holds a
    checkpoint. ``stop_after`` ends the call early after that many steps (the run stays resumable).

    ``param_groups`` (e.g. from :func:`ftlib.train.finetune.param_groups`) are AdamW groups whose
    ``lr_scale`` multiplies the schedule; by default every parameter that requires a gradient.
    ``valid_loss_fn`` (default ``loss_fn``) scores ``valid_data``. Returns the trained, unwrapped
    model (with EMA: the averaged weights).
    """
    run_dir = Path(run_dir)
    accel = _accelerator(config, model)
    main = accel.is_main_process
    seed_everything(config.seed)
    groups = param_groups or [{"params": [p for p in model.parameters() if p.requires_grad], "lr_scale": 1.0}]
    optimizer = torch.optim.AdamW([{k: v for k, v in g.items() if k != "name"} for g in groups], lr=config.lr,
                                  betas=config.betas, weight_decay=config.weight_decay)
    step, best, skipped, state = 0, math.inf, 0, {}
    found = latest_checkpoint(run_dir) if resume else None
    if found is not None:
        state = checkpoint.load_state(found)
        weights = state.get("trained_weights") or checkpoint.load(found).state_dict()
        model.load_state_dict(weights)
        optimizer.load_state_dict(state["optimizer"])
        step, best, skipped = state["step"], state["best"], state["skipped_steps"]
    ema = EMA(model, config.ema_decay) if config.ema_decay else None
    if ema is not None and "ema" in state:
        ema.load_state_dict(state["ema"])
    model, optimizer = accel.prepare(model, optimizer)
    bare = accel.unwrap_model(model)
    precision = Precision(config.mixed_precision, accel.device)
    if found is not None:
        precision.load_state_dict(state.get("scaler"))
        set_rng_state(state["rng"])
    data = _StageBatches(train_data, config, accel.process_index, accel.num_processes)
    valid_loss_fn = valid_loss_fn or loss_fn
    begin_step = getattr(loss_fn, "begin_step", None)

    log_path = run_dir / "metrics.jsonl"
    wandb_run = None
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        _truncate_log(log_path, step)
        wandb_run = _start_wandb(config, bare, run_dir) if config.wandb else None

    def log(record: dict[str, Any]) -> None:
        if main:
            with open(log_path, "a") as f:
                f.write(json.dumps(record) + "\n")
            if wandb_run is not None:
                wandb_run.log(record, step=record["step"])

    def averaged() -> nn.Module:
        return ema.copy_to(copy.deepcopy(bare)) if ema is not None else bare

    def save(tag: str, weights: nn.Module | None = None, with_state: bool = True) -> None:
        accel.wait_for_everyone()
        if not main:
            return
        weights = bare if weights is None else weights
        extra = {}
        if with_state:
            extra = dict(optimizer=optimizer.state_dict(), step=step, best=best, skipped_steps=skipped,
                         rng=rng_state(), train_config=config.to_dict())
            if precision.scaler is not None:
                extra["scaler"] = precision.state_dict()
            if ema is not None:
                extra["ema"] = ema.state_dict()
        exported = weights.export() if hasattr(weights, "export") else weights
        if with_state and exported is not weights:
            extra["trained_weights"] = weights.state_dict()
        checkpoint.save(exported, run_dir / "checkpoints" / tag, **extra)
        _prune(run_dir / "checkpoints", config.keep_last)

    def all_finite(loss: torch.Tensor) -> bool:
        flag = torch.isfinite(loss.detach()).all().float().reshape(1)
        return bool(accel.gather(flag).min() > 0) if accel.num_processes > 1 else bool(flag)

    def mean_over_processes(value: float) -> float:
        if accel.num_processes == 1:
            return value
        return float(accel.gather(torch.tensor([value], device=accel.device)).mean())

    model.train()
    end = config.steps if stop_after is None else min(config.steps, step + stop_after)
    bar = tqdm(total=config.steps, initial=step, desc="training", disable=not main, dynamic_ncols=True)
    started, window, extras = time.time(), [], {}
    while step < end:
        stage = data.stage(step)
        if begin_step is not None:
            begin_step(step)
        for group, spec in zip(optimizer.param_groups, groups):
            group["lr"] = config.lr_at(step) * spec.get("lr_scale", 1.0)
        total, finite = 0.0, True
        for micro in range(stage.grad_accum):
            batch = _to(data.next(step), accel.device)
            syncing = micro == stage.grad_accum - 1
            with accel.no_sync(model) if not syncing else contextlib.nullcontext():
                with precision.autocast():
                    loss, metrics = loss_fn(model, batch)
                finite = finite and all_finite(loss)
                if finite:
                    accel.backward(precision.scale(loss / stage.grad_accum))
                    total += float(loss.detach()) / stage.grad_accum
                    for k, v in metrics.items():
                        extras.setdefault(k, []).append(float(v))
        grad_norm = float("nan")
        if finite:
            precision.unscale(optimizer)
            if config.grad_clip > 0:
                grad_norm = float(accel.clip_grad_norm_(model.parameters(), config.grad_clip))
            if not precision.step(optimizer):  # the fp16 loss scaler found inf/NaN gradients
                skipped += 1
            elif ema is not None:
                ema.update(bare)
        else:
            skipped += 1
        optimizer.zero_grad(set_to_none=True)
        step += 1
        window.append(total)
        bar.update(1)
        bar.set_postfix(loss=f"{total:.5f}")
        if step % config.log_every == 0 or step == end:
            record = {"step": step, "loss": mean_over_processes(sum(window) / len(window)),
                      "lr": config.lr_at(step - 1),
                      "grad_norm": grad_norm, "skipped_steps": skipped, "elapsed": time.time() - started,
                      "batch": stage.batch_size * stage.grad_accum * accel.num_processes}
            if config.curriculum:
                record["cropsize"] = stage.cropsize
            log({**record, **{k: sum(v) / len(v) for k, v in extras.items()}})
            window, extras = [], {}
        last = step == config.steps
        if valid_data is not None and ((config.eval_every and step % config.eval_every == 0) or last):
            scored = averaged()
            valid_loss = evaluate(scored, valid_data, valid_loss_fn, config.batch_size, accel.device)
            log({"step": step, "valid_loss": valid_loss})
            if valid_loss < best:
                best = valid_loss
                save("best", scored)
        if (config.checkpoint_every and step % config.checkpoint_every == 0) or step == end:
            save(f"step-{step:07d}")
            if ema is not None:
                save("ema", averaged(), with_state=False)
    bar.close()
    if wandb_run is not None:
        wandb_run.finish()
    return averaged()


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
