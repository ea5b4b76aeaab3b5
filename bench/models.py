"""Forward + backward time and peak memory of every separation family, fused against explicit attention.

    python bench/models.py                      # batch 2, 512 frames, tiny and medium presets
    python bench/models.py --frames 1024 --repeat 5
    python bench/models.py --cases frame_transformer/tiny,temporal_unet/tiny --repeat 20

Timing is paired: one process per (family, preset) builds the model once and alternates the two
attention paths step by step (fused then explicit, explicit then fused, ...), so drift in the
machine's speed hits both alike; the ratio is the median of the per-pair ratios explicit/fused.
Peak memory needs a process per path (peak RSS on CPU, peak allocated memory on CUDA). The
explicit path is the baseline, measured in the same run.
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

CASES = [("frame_transformer", "tiny"), ("frame_transformer", "medium"), ("frame_primer", "tiny"),
         ("asym_unet_mct", "tiny"), ("temporal_unet", "tiny"), ("temporal_unet", "medium")]


def _set_explicit(model, explicit: bool) -> None:
    for module in model.modules():
        if hasattr(module, "force_explicit"):  # every attention layer
            module.force_explicit = explicit


def _timed(step, device: str) -> float:
    """Seconds of one call of ``step()``, synchronised on CUDA."""
    import torch

    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    step()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def paired(step, set_explicit, repeat: int, device: str) -> dict:
    """Alternates fused and explicit ``step()`` calls ``repeat`` times each after one warm-up of each.

    Returns the median seconds of each path and the median of the per-pair ratios explicit/fused.
    """
    seconds = {False: [], True: []}
    ratios = []
    for i in range(repeat + 1):
        order = (False, True) if i % 2 == 0 else (True, False)
        pair = {}
        for explicit in order:
            set_explicit(explicit)
            pair[explicit] = _timed(step, device)
        if i:  # the first pair warms up
            ratios.append(pair[True] / pair[False])
            for explicit, value in pair.items():
                seconds[explicit].append(value)
    return {"fused_s": statistics.median(seconds[False]), "explicit_s": statistics.median(seconds[True]),
            "ratio": statistics.median(ratios)}


def _model_and_input(name: str, preset: str, batch: int, frames: int, device: str):
    import torch

    from ftlib import models

    torch.manual_seed(0)
    model = models.build(name, preset).to(device)
    x = torch.rand(batch, model.config.in_channels, model.config.num_bins, frames, device=device)
    return model, x


def _step(model, x):
    def step():
        model(x).mean().backward()
        model.zero_grad(set_to_none=True)
    return step


def measure_time(name: str, preset: str, batch: int, frames: int, repeat: int, device: str) -> dict:
    model, x = _model_and_input(name, preset, batch, frames, device)
    result = paired(_step(model, x), lambda explicit: _set_explicit(model, explicit), repeat, device)
    return dict(result, params_m=sum(p.numel() for p in model.parameters()) / 1e6)


def measure_memory(name: str, preset: str, explicit: bool, batch: int, frames: int, device: str) -> float:
    """Peak MB of one forward+backward pass on one path (run in a fresh process)."""
    import torch

    model, x = _model_and_input(name, preset, batch, frames, device)
    _set_explicit(model, explicit)
    _step(model, x)()
    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def attention_only(batch: int, frame_counts: list[int], repeat: int, device: str) -> None:
    """The attention layer alone (4 channels, 256 bins, 4 heads), where the kernel choice is all that differs."""
    import torch

    from ftlib.layers import MultichannelMultiheadAttention

    attn = MultichannelMultiheadAttention(4, 256, 4).to(device)
    print(f"\nattention layer alone (4 channels, 256 bins, 4 heads), forward+backward, batch {batch}")
    print(f"{'frames':>8}{'fused s':>10}{'explicit s':>12}{'time ratio':>12}")
    for frames in frame_counts:
        x = torch.rand(batch, 4, 256, frames, device=device, requires_grad=True)
        r = paired(lambda: attn(x)[0].mean().backward(), lambda e: setattr(attn, "force_explicit", e), repeat, device)
        print(f"{frames:>8}{r['fused_s']:>10.3f}{r['explicit_s']:>12.3f}{r['ratio']:>11.2f}x")


def _subprocess(*args: str) -> dict | float:
    cmd = [sys.executable, __file__, *args]
    return json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--frames", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=5, help="pairs of timed steps (default: %(default)s)")
    parser.add_argument("--device", default="cuda" if _cuda() else "cpu")
    parser.add_argument("--cases", default=",".join(f"{n}/{p}" for n, p in CASES),
                        help="comma-separated family/preset pairs (default: %(default)s)")
    parser.add_argument("--layer-frames", default="512,1024,2048",
                        help="frame counts of the attention-layer-alone table (default: %(default)s)")
    parser.add_argument("--time", nargs=2, metavar=("NAME", "PRESET"), help=argparse.SUPPRESS)
    parser.add_argument("--memory", nargs=3, metavar=("NAME", "PRESET", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    common = ["--batch", str(args.batch), "--frames", str(args.frames), "--device", args.device]
    if args.time:
        print(json.dumps(measure_time(*args.time, args.batch, args.frames, args.repeat, args.device)))
        return
    if args.memory:
        name, preset, path = args.memory
        print(json.dumps(measure_memory(name, preset, path == "explicit", args.batch, args.frames, args.device)))
        return
    print(f"forward+backward, batch {args.batch}, {args.frames} frames, {args.device}, "
          f"median of {args.repeat} alternating pairs")
    print(f"{'model':<30}{'params':>9}{'fused s':>10}{'explicit s':>12}{'time ratio':>12}{'fused MB':>10}{'explicit MB':>13}")
    for name, preset in (case.strip().split("/") for case in args.cases.split(",")):
        t = _subprocess("--time", name, preset, "--repeat", str(args.repeat), *common)
        mb = {path: _subprocess("--memory", name, preset, path, *common) for path in ("fused", "explicit")}
        print(f"{name + '/' + preset:<30}{t['params_m']:>8.2f}M{t['fused_s']:>10.3f}{t['explicit_s']:>12.3f}"
              f"{t['ratio']:>11.2f}x{mb['fused']:>10.0f}{mb['explicit']:>13.0f}")
    attention_only(args.batch, [int(n) for n in args.layer_frames.split(",")], args.repeat, args.device)


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


if __name__ == "__main__":
    main()
