"""The training engine: one ``fit`` loop for every recipe, on Hugging Face Accelerate.

A recipe supplies a model, a training dataset, a ``loss_fn(model, batch) -> (loss, metrics)`` and
optionally a validation dataset. The engine owns the optimizer (fused AdamW), the warmup +
polynomial decay schedule, the crop-size curriculum, gradient accumulation and clipping, mixed
precision with loss scaling, EMA weights, non-finite-step skipping, checkpoints with full resume
state, ``metrics.jsonl``, wandb and the progress bar.

Hooks a recipe may use:

- ``loss_fn.begin_step(step)`` (optional method) is called before every optimizer step, e.g. to
  alternate generator and discriminator steps.
- A model with an ``export()`` method (e.g. a generator + discriminator pair) saves ``export()``
  as the checkpoint's model and keeps its own full weights in the training state.
- A model with ``find_unused_parameters = True`` gets DDP's unused-parameter detection.
- Metric values may be tensors: they are averaged on the device and read at logging time only.

Devices and processes: the model trains on the process's GPU (``device="cpu"`` forces the CPU);
under ``torchrun``/``accelerate launch`` every process takes its slice of each global batch. The
steady-state step never waits for the GPU: losses and metrics stay on the device until a log line,
and a step with non-finite gradients is skipped on the device. Random numbers (dropout, diffusion
noise) are seeded per step and process from ``(seed, rank, step)``, so processes draw different
numbers and a resumed run draws the ones the uninterrupted run would have.

Run folder layout: ``<run_dir>/metrics.jsonl`` and ``<run_dir>/checkpoints/step-XXXXXXX/`` (plus
``best/`` when validating and ``ema/`` with EMA). ``fit`` resumes from the newest checkpoint found
in the run folder: weights, optimizer, scaler, EMA, step and data position, so the resumed run is
the uninterrupted one (exactly, on CPU).
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import datetime
import json
import math
import os
import queue
import random
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, default_collate

from ftlib import checkpoint
from ftlib.config import Config
from ftlib.errors import CheckpointError, DataError, FtlibError
from ftlib.train import curriculum
from ftlib.train.ema import EMA
from ftlib.train.precision import MODES, Precision
from ftlib.train.progress import Progress
from ftlib.train.sampler import StepBatchSampler
from ftlib.train.schedule import warmup_poly

LossFn = Callable[[nn.Module, dict[str, torch.Tensor]], tuple[torch.Tensor, dict[str, Any]]]
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
        mixed_precision: "auto" (bf16 on GPUs with native bf16, fp16 with a loss scaler on older
            GPUs, fp32 on the CPU), "no", "bf16" or "fp16" (with a dynamic loss scaler; on CPU too).
        ema_decay: keep an exponential moving average of the weights with this decay (0 disables);
            validation, ``best/`` and ``ema/`` use the averaged weights.
        curriculum: progressive crop sizes, stages ``(start_step, cropsize, batch_size[, grad_accum])``
            starting at step 0 (or text ``"0:256:8, 1000:512:4:2"``); the training data is then a
            function ``cropsize -> Dataset``.
        log_every: steps between ``metrics.jsonl`` lines.
        eval_every: steps between validations (0: only at the end).
        checkpoint_every: steps between checkpoints (0: only at the end).
        keep_last: step checkpoints kept (older ones are deleted; ``best`` is kept apart).
        num_workers: DataLoader worker processes (-1: up to 8 per GPU on CUDA, none on the CPU).
        device: "auto" (the process's GPU when there is one) or "cpu".
        timeout_minutes: how long processes wait for each other (a first cache build on the main
            process, a checkpoint written to a slow disk) before the process group gives up.
        seed: seed of the data order, the items and the per-step random numbers.
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
    mixed_precision: str = "auto"
    ema_decay: float = 0.0
    curriculum: tuple[tuple[int, ...], ...] = ()
    log_every: int = 10
    eval_every: int = 0
    checkpoint_every: int = 0
    keep_last: int = 2
    num_workers: int = -1
    device: str = "auto"
    timeout_minutes: int = 120
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
        self.require(self.mixed_precision in MODES, f"mixed_precision must be one of {MODES}")
        self.require(0 <= self.ema_decay < 1, "ema_decay must be in [0, 1)")
        self.require(self.keep_last >= 1, "keep_last must be >= 1")
        self.require(self.num_workers >= -1, "num_workers must be >= 0 (or -1: automatic)")
        self.require(self.device in ("auto", "cpu"), f"device must be 'auto' or 'cpu', got {self.device!r}")
        self.require(self.timeout_minutes >= 1, "timeout_minutes must be >= 1")
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

def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (every device) with ``seed``."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def step_seed(seed: int, rank: int, step: int) -> int:
    """The seed of optimizer step ``step`` on process ``rank``: independent streams per process and
    step, the same ones whenever the step is run (uninterrupted or resumed)."""
    return int(np.random.SeedSequence([seed, rank, step]).generate_state(1)[0])


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest ``checkpoints/step-*`` folder with a training state, or None."""
    folders = sorted(Path(run_dir, "checkpoints").glob("step-*"))
    folders = [f for f in folders if (f / "state.json").is_file()]
    return folders[-1] if folders else None


def model_device(model: nn.Module) -> torch.device:
    """The device of a model's first parameter (the CPU for a model without parameters)."""
    return next((p.device for p in model.parameters()), torch.device("cpu"))


def _to(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


# -------------------------------------------------------------------------------- validation

@torch.no_grad()
def validation_loss(model: nn.Module, data: Dataset, loss_fn: LossFn, batch_size: int = 8,
                    device: torch.device | str | None = None) -> float:
    """Mean of ``loss_fn`` over ``data`` (weighted by batch size), in eval mode, on ``device``
    (default: the model's)."""
    device = torch.device(device) if device is not None else model_device(model)
    was_training = model.training
    model.eval()
    total, count = torch.zeros((), dtype=torch.float64, device=device), 0
    for batch in DataLoader(data, batch_size=batch_size):
        loss, _ = loss_fn(model, _to(batch, device))
        n = next(iter(batch.values())).shape[0]
        total, count = total + loss.detach().double() * n, count + n
    model.train(was_training)
    return float(total) / max(1, count)


def context_length_study(model: nn.Module, valid_at: Callable[[int], Dataset], loss_fn: LossFn,
                         cropsizes: Sequence[int] = (256, 512, 1024, 2048), batch_size: int = 1,
                         device: torch.device | str | None = None) -> list[dict[str, float]]:
    """Validation loss of one model at several crop sizes (the seed project's context-length study).

    ``valid_at(cropsize)`` returns the validation set cut at that size (e.g. ``ValidationCrops.at``);
    crop sizes it cannot serve (longer than every song: DataError or ValueError) are left out. Runs
    on ``device`` (default: the model's). Returns ``[{"cropsize", "valid_loss", "items"}]``, ready
    for ``context_length.json``.
    """
    rows = []
    for cropsize in cropsizes:
        try:
            data = valid_at(cropsize)
        except (DataError, ValueError):
            continue
        if len(data):
            rows.append({"cropsize": int(cropsize), "valid_loss": validation_loss(model, data, loss_fn, batch_size, device),
                         "items": len(data)})
    return rows


# ------------------------------------------------------------------------------ data by stage

def _workers(requested: int, device: torch.device, processes: int) -> int:
    """DataLoader workers: ``requested``, or with -1 up to 8 per GPU process (none on the CPU,
    where a worker competes with the model's threads)."""
    if requested >= 0:
        return requested
    if device.type != "cuda":
        return 0
    local = int(os.environ.get("LOCAL_WORLD_SIZE", processes))
    return max(1, min(8, (os.cpu_count() or 1) // max(1, local)))


def _stack_in_numpy(items: list[dict]) -> dict:
    """Collate items into a batch by stacking their tensors with numpy: a copy made by torch in the
    prefetching thread would start a second OpenMP team there, which competes with the model's
    threads for the cores."""
    if not all(isinstance(v, torch.Tensor) and v.device.type == "cpu" for v in items[0].values()):
        return default_collate(items)
    return {k: torch.from_numpy(np.stack([item[k].numpy() for item in items])) for k in items[0]}


class _Prefetch:
    """Batches of ``iterator`` built by a background thread, ``depth`` ahead of the training loop: the
    next batch is assembled (numpy and the cache's memory maps release the GIL) while the model runs."""

    def __init__(self, iterator, depth: int = 2):
        self.queue, self.stop = queue.Queue(depth), threading.Event()
        self.thread = threading.Thread(target=self._fill, args=(iterator,), daemon=True)
        self.thread.start()

    def _fill(self, iterator) -> None:
        while not self.stop.is_set():
            try:
                item = next(iterator)
            except BaseException as exc:  # handed to the training loop, which raises it
                item = exc
            while not self.stop.is_set():
                try:
                    self.queue.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if isinstance(item, BaseException):
                return

    def __next__(self):
        item = self.queue.get()
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        self.stop.set()
        self.thread.join()


class _StageBatches:
    """Micro-batches for optimizer step ``step``: a StepBatchSampler per curriculum stage, started at
    the stage's micro-batch position, so the data position is a function of the step alone. Without
    worker processes (the CPU default) a background thread builds the next batches meanwhile."""

    def __init__(self, train_data: TrainData, config: TrainConfig, rank: int, world_size: int,
                 device: torch.device):
        self.data, self.config, self.rank, self.world_size = train_data, config, rank, world_size
        self.workers = _workers(config.num_workers, device, world_size)
        self.pin = device.type == "cuda"
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
            # the loader's own generator: starting its iterator must not draw from the per-step streams
            batches = iter(DataLoader(data, batch_sampler=sampler, num_workers=self.workers, pin_memory=self.pin,
                                      collate_fn=None if self.workers else _stack_in_numpy,
                                      persistent_workers=self.workers > 0, prefetch_factor=4 if self.workers else None,
                                      generator=torch.Generator().manual_seed(cfg.seed)))
            self.close()
            self.batches = batches if self.workers else _Prefetch(batches)
            self.current = index
        return next(self.batches)

    def close(self) -> None:
        """Stop the prefetching thread, if any."""
        if isinstance(self.batches, _Prefetch):
            self.batches.close()


# ------------------------------------------------------------------------------- processes

def process_state(timeout_minutes: int = 120, cpu: bool | None = None):
    """Accelerate's per-process state, joining the process group (NCCL on GPUs, gloo on the CPU:
    processes launched together by torchrun or ``accelerate launch`` join it; Accelerate would
    otherwise run each CPU process alone) with a ``timeout_minutes`` collective timeout."""
    from accelerate import PartialState

    cpu = not torch.cuda.is_available() if cpu is None else cpu
    timeout = datetime.timedelta(minutes=timeout_minutes)
    state = PartialState(cpu=cpu, timeout=timeout)
    if state.num_processes == 1 and (state.device.type == "cpu") != cpu:  # one process: switch devices freely
        PartialState._reset_state()
        state = PartialState(cpu=cpu, timeout=timeout)
    return state


def _accelerator(config: TrainConfig, model: nn.Module):
    from accelerate import Accelerator, DistributedDataParallelKwargs
    from accelerate.state import AcceleratorState

    cpu = config.device == "cpu" or not torch.cuda.is_available()
    process_state(config.timeout_minutes, cpu)
    AcceleratorState._reset_state()  # each fit may ask for another device; the process group stays
    # rotary and timestep tables are non-persistent buffers computed alike on every process
    ddp = DistributedDataParallelKwargs(find_unused_parameters=bool(getattr(model, "find_unused_parameters", False)),
                                        broadcast_buffers=False)
    # precision is the engine's own (ftlib.train.precision), the same on CPU and GPU
    return Accelerator(mixed_precision="no", kwargs_handlers=[ddp], cpu=cpu)


def _agree_on_run(accel, run_dir: Path, step: int) -> None:
    """With several processes: raise on every process (never hang) unless all of them see the run
    folder the main process writes and resume from the same step."""
    if accel.num_processes == 1:
        return
    from accelerate.utils import broadcast_object_list

    marker = run_dir / f".processes-{broadcast_object_list([uuid.uuid4().hex])[0]}"
    if accel.is_main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
        marker.touch()
    accel.wait_for_everyone()
    rows = accel.gather(torch.tensor([[float(marker.is_file()), float(step)]], device=accel.device)).cpu()
    accel.wait_for_everyone()
    if accel.is_main_process:
        marker.unlink(missing_ok=True)
    blind = [rank for rank, row in enumerate(rows) if not row[0]]
    if blind:
        raise FtlibError(f"processes {blind} cannot see the run folder {run_dir} that process 0 writes: "
                         "every process must share it (put it on a disk all nodes mount)")
    steps = sorted({int(row[1]) for row in rows})
    if len(steps) > 1:
        raise FtlibError(f"processes would resume {run_dir} from different steps {steps}; "
                         "every process must see the same checkpoints")


def _check_resumable(state: dict, accel, found: Path) -> None:
    """A run resumes with the number of processes it was trained with (the global batch and each
    process's slice of it depend on it)."""
    trained = state.get("num_processes", 1)
    if trained != accel.num_processes:
        raise CheckpointError(f"{found} was trained with {trained} process(es) and this run has "
                              f"{accel.num_processes}: resume with {trained}, or start a new run folder "
                              f"initialised from {found}")


# ----------------------------------------------------------------------------------- the loop

class _Window:
    """Losses and metrics of the steps since the last log line, kept on the device."""

    def __init__(self, device: torch.device):
        self.device, self.losses, self.metrics = device, [], {}

    def add(self, metrics: dict[str, Any], loss: torch.Tensor | None = None) -> None:
        """Metrics of one micro-batch and, once per step, the step's loss."""
        if loss is not None:
            self.losses.append(loss)
        for key, value in metrics.items():
            self.metrics.setdefault(key, []).append(torch.as_tensor(value, dtype=torch.float32, device=self.device))

    def flush(self, accel) -> dict[str, float]:
        """Window means (over processes too), read once; the window is emptied."""
        names = ["loss", *self.metrics]
        means = torch.stack([torch.stack(self.losses).float().mean()]
                            + [torch.stack(v).mean() for v in self.metrics.values()])
        if accel.num_processes > 1:
            means = accel.gather(means[None]).mean(0)
        self.losses, self.metrics = [], {}
        return dict(zip(names, means.tolist()))


def fit(model: nn.Module, loss_fn: LossFn, train_data: TrainData, config: TrainConfig, run_dir: str | Path,
        valid_data: Dataset | None = None, resume: bool = True, stop_after: int | None = None,
        param_groups: list[dict] | None = None, valid_loss_fn: LossFn | None = None) -> nn.Module:
    """Train ``model`` for ``config.steps`` optimizer steps, resuming from ``run_dir`` if it holds a
    checkpoint. ``stop_after`` ends the call early after that many steps (the run stays resumable).

    ``param_groups`` (e.g. from :func:`ftlib.train.finetune.param_groups`) are AdamW groups whose
    ``lr_scale`` multiplies the schedule; by default every parameter that requires a gradient.
    ``valid_loss_fn`` (default ``loss_fn``) scores ``valid_data`` (on the main process; the others
    take its result). Returns the trained, unwrapped model on the training device (with EMA: the
    averaged weights).
    """
    run_dir = Path(run_dir)
    accel = _accelerator(config, model)
    main, rank, device = accel.is_main_process, accel.process_index, accel.device
    step, best, skipped, state = 0, math.inf, 0, {}
    found = latest_checkpoint(run_dir) if resume else None
    if found is not None:
        state = checkpoint.load_state(found)
        _check_resumable(state, accel, found)
        model.load_state_dict(state.get("trained_weights") or checkpoint.load_weights(found))
        step, best, skipped = state["step"], state["best"], state["skipped_steps"]
    _agree_on_run(accel, run_dir, step)

    groups = param_groups or [{"params": [p for p in model.parameters() if p.requires_grad], "lr_scale": 1.0}]
    model = accel.prepare(model)  # moves the parameters (the groups hold the same objects)
    bare = accel.unwrap_model(model)
    optimizer = torch.optim.AdamW([{k: v for k, v in g.items() if k != "name"} for g in groups], lr=config.lr,
                                  betas=config.betas, weight_decay=config.weight_decay, fused=True)
    if found is not None:
        optimizer.load_state_dict(state["optimizer"])  # moves the moments to the parameters' device
    if device.type == "cuda":  # TF32 matmuls and convolutions for whatever runs in float32
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    ema = EMA(bare, config.ema_decay) if config.ema_decay else None  # shadows on the training device
    if ema is not None and "ema" in state:
        ema.load_state_dict(state["ema"])
    precision = Precision(config.mixed_precision, device)
    if found is not None:
        precision.load_state_dict(state.get("scaler"))
    data = _StageBatches(train_data, config, rank, accel.num_processes, device)
    valid_loss_fn = valid_loss_fn or loss_fn
    begin_step = getattr(loss_fn, "begin_step", None)
    skipped = torch.tensor(skipped, device=device)

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
            extra = dict(optimizer=optimizer.state_dict(), step=step, best=best, skipped_steps=int(skipped),
                         num_processes=accel.num_processes, train_config=config.to_dict())
            if precision.scaler is not None:
                extra["scaler"] = precision.state_dict()
            if ema is not None:
                extra["ema"] = ema.state_dict()
        exported = weights.export() if hasattr(weights, "export") else weights
        if with_state and exported is not weights:
            extra["trained_weights"] = weights.state_dict()
        checkpoint.save(exported, run_dir / "checkpoints" / tag, **extra)
        _prune(run_dir / "checkpoints", config.keep_last)

    def validate() -> float:
        value = torch.zeros(1, device=device)
        if main:
            value[0] = validation_loss(averaged(), valid_data, valid_loss_fn, config.batch_size)
        if accel.num_processes > 1:
            from accelerate.utils import broadcast

            value = broadcast(value, from_process=0)  # one number, one "best" decision on every process
        return float(value)

    params = [p for g in groups for p in g["params"]]
    model.train()
    end = config.steps if stop_after is None else min(config.steps, step + stop_after)
    bar = Progress(config.steps, step, enabled=main)
    started, window, norm = time.time(), _Window(device), torch.zeros((), device=device)
    while step < end:
        stage = data.stage(step)
        seed_everything(step_seed(config.seed, rank, step))
        if begin_step is not None:
            begin_step(step)
        for group, spec in zip(optimizer.param_groups, groups):
            group["lr"] = config.lr_at(step) * spec.get("lr_scale", 1.0)
        total = torch.zeros((), device=device)
        for micro in range(stage.grad_accum):
            batch = _to(data.next(step), device)
            with accel.no_sync(model) if micro < stage.grad_accum - 1 else contextlib.nullcontext():
                with precision.autocast():
                    loss, metrics = loss_fn(model, batch)
                accel.backward(precision.scale(loss / stage.grad_accum))
            total = total + loss.detach().float() / stage.grad_accum
            window.add(metrics)
        precision.unscale(optimizer)
        # a non-finite loss or gradient anywhere makes the (all-reduced) norm non-finite on every process
        norm = torch.nn.utils.clip_grad_norm_(params, config.grad_clip if config.grad_clip > 0 else math.inf)
        bad = ~torch.isfinite(norm)
        precision.step(optimizer, bad)
        optimizer.zero_grad(set_to_none=True)
        if ema is not None:
            ema.update(bare, keep=~bad)
        skipped += bad
        step += 1
        window.add({}, loss=total)
        logged = step % config.log_every == 0 or step == end
        if logged:
            means = window.flush(accel)
            record = {"step": step, "loss": means.pop("loss"), "lr": config.lr_at(step - 1), "grad_norm": float(norm),
                      "skipped_steps": int(skipped), "elapsed": time.time() - started,
                      "batch": stage.batch_size * stage.grad_accum * accel.num_processes}
            if config.curriculum:
                record["cropsize"] = stage.cropsize
            log({**record, **means})
        bar.update(step, record["loss"] if logged else None)
        last = step == config.steps
        if valid_data is not None and ((config.eval_every and step % config.eval_every == 0) or last):
            valid_loss = validate()
            log({"step": step, "valid_loss": valid_loss})
            if valid_loss < best:
                best = valid_loss
                save("best", averaged() if main else None)
        if (config.checkpoint_every and step % config.checkpoint_every == 0) or step == end:
            save(f"step-{step:07d}")
            if ema is not None:
                save("ema", averaged() if main else None, with_state=False)
    bar.close()
    data.close()
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
    import wandb

    unwrapped = checkpoint.unwrap(model)
    return wandb.init(project=os.environ.get("WANDB_PROJECT", "ftlib"), dir=str(run_dir), name=run_dir.name,
                      mode=os.environ.get("WANDB_MODE", "offline"),
                      config={"train": config.to_dict(), "model": unwrapped.model_name,
                              "model_config": unwrapped.config.to_dict()})
