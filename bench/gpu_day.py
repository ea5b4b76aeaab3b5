"""How many training steps of each GPU preset of the separation recipe fit in one GPU-day.

    python bench/gpu_day.py                              # on a CUDA GPU: measured step times
    python bench/gpu_day.py --device cpu --quick         # the same code path at tiny sizes (tests)
    python bench/gpu_day.py --measure --batch-size 1 --frames 64   # each model's FLOP rate on this CPU

For every preset (``gpu``, ``gpu_bs_roformer``, ``gpu_mel_roformer``): the floating-point operations
of one optimizer step (forward and backward of the preset's model at its batch size, crop size and
gradient accumulation, counted by ``torch.utils.flop_counter`` on the meta device, so no memory is
needed), the step time, the steps that fit in 24 hours and the steps the preset trains. On CUDA the
step time is measured (bf16 autocast, fused AdamW, random batches already on the device: the data
loader's workers overlap the step); elsewhere it is estimated at ``--tflops`` sustained, the
assumption the presets were sized with. ``--batch-size`` and ``--frames`` shrink the step (one
micro-batch) to compare the models' FLOP rates where a full step would take too long. The last
column is the preset's steps over the steps that fit: 1.0 is one GPU-day.
"""
from __future__ import annotations

import argparse
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from ftlib import models, recipes

PRESETS = ("gpu", "gpu_bs_roformer", "gpu_mel_roformer")
DAY = 24 * 3600
ASSUMED_TFLOPS = 100.0  # the sustained throughput the presets' steps assume (about 10 % of an H200's bf16 peak)


def preset_config(name: str, quick: bool, batch_size: int = 0, frames: int = 0) -> recipes.separation.Config:
    """The recipe preset, shrunk to a tiny model and crop with ``quick`` (same code path), or to one
    micro-batch of ``batch_size`` x ``frames`` when they are given."""
    config = recipes.separation.Config.preset(name)
    if batch_size or frames:
        config = config.replace(voxaug=config.voxaug.replace(cropsize=frames or config.voxaug.cropsize),
                                train=config.train.replace(batch_size=batch_size or config.train.batch_size, grad_accum=1))
    if quick:
        config = config.replace(model=config.model.replace(preset="tiny"),
                                data=config.data.replace(spectrogram=config.data.spectrogram.replace(n_fft=128, hop_length=64)),
                                voxaug=config.voxaug.replace(cropsize=16),
                                train=config.train.replace(batch_size=2))
    return config


def batch_of(model: torch.nn.Module, config: recipes.separation.Config) -> torch.Tensor:
    """A random mixture ``[B, C, F, T]`` (complex for complex-mask models) at the preset's batch and crop."""
    x = torch.rand(config.train.batch_size, model.config.in_channels, config.data.spectrogram.num_bins,
                   config.voxaug.cropsize)
    return torch.polar(x, 6.3 * torch.rand_like(x)) if models.is_complex(model) else x


def loss_of(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """An L1 loss of the masked mixture against half of it: the recipe's cost without its data."""
    return (model(x) * x - x / 2).abs().mean()


def step_flops(config: recipes.separation.Config) -> float:
    """Floating-point operations of one optimizer step (every accumulated micro-batch)."""
    with torch.device("meta"):
        model = recipes.separation.build_model(config)
        x = batch_of(model, config)
    counter = FlopCounterMode(display=False)
    with counter:
        loss_of(model, x).backward()
    return counter.get_total_flops() * config.train.grad_accum


def measured_step_seconds(config: recipes.separation.Config, device: str, steps: int) -> tuple[float, float]:
    """Median seconds of an optimizer step after two warm-up steps, and the peak memory in GiB."""
    model = recipes.separation.build_model(config).to(device).train()
    x = batch_of(model, config).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), config.train.lr, fused=device == "cuda")
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(steps + 2):
        if device == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        for _ in range(config.train.grad_accum):
            with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
                loss = loss_of(model, x)
            loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    peak = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else float("nan")
    return sorted(times[2:])[len(times[2:]) // 2], peak


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="tiny models and crops (the test of this script)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per preset (CUDA, or --measure)")
    parser.add_argument("--measure", action="store_true", help="time the steps on a CPU too (default: estimate)")
    parser.add_argument("--tflops", type=float, default=ASSUMED_TFLOPS, help="sustained TFLOP/s of the estimate")
    parser.add_argument("--batch-size", type=int, default=0, help="items per step instead of the preset's (one micro-batch)")
    parser.add_argument("--frames", type=int, default=0, help="crop size instead of the preset's")
    args = parser.parse_args(argv)
    rows = []
    print("| preset | model | batch x crop | TFLOP/step | s/step | TFLOP/s | peak GiB | steps per GPU-day | preset steps | preset / day |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in PRESETS:
        config = preset_config(name, args.quick, args.batch_size, args.frames)
        flops = step_flops(config)
        if args.device == "cuda" or args.measure:
            seconds, peak = measured_step_seconds(config, args.device, args.steps)
            how = "measured"
        else:
            seconds, peak, how = flops / (args.tflops * 1e12), float("nan"), f"estimated at {args.tflops:g} TFLOP/s"
        row = dict(preset=name, model=f"{config.model.name}/{config.model.preset}", tflop=flops / 1e12, seconds=seconds,
                   peak_gib=peak, steps_per_day=int(DAY / seconds), preset_steps=config.train.steps, how=how,
                   shape=f"{config.train.batch_size}x{config.train.grad_accum} x {config.voxaug.cropsize}")
        row["days"] = row["preset_steps"] / row["steps_per_day"]
        rows.append(row)
        print(f"| {name} | {row['model']} | {row['shape']} | {row['tflop']:.3g} | {seconds:.3g} ({how}) | "
              f"{row['tflop'] / seconds:.3g} | {peak:.1f} | "
              f"{row['steps_per_day']} | {row['preset_steps']} | {row['days']:.2f} |", flush=True)
    return rows


if __name__ == "__main__":
    main()
