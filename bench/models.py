"""Forward + backward time and peak memory of every separation family, fused against explicit attention.

    python bench/models.py                      # batch 2, 512 frames, tiny and medium presets
    python bench/models.py --frames 1024 --repeat 5
    python bench/models.py --cases frame_transformer/tiny,temporal_unet/tiny --repeat 20

Each (family, preset, attention path) runs in its own subprocess so peak memory is its own (peak RSS
on CPU, peak allocated memory on CUDA). Prints a table and the explicit/fused ratios; the explicit
path is the baseline measured in the same run.
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


def measure(name: str, preset: str, explicit: bool, batch: int, frames: int, repeat: int, device: str) -> dict:
    import torch

    from ftlib import models

    torch.manual_seed(0)
    model = models.build(name, preset).to(device)
    for module in model.modules():
        if hasattr(module, "force_explicit"):  # every attention layer
            module.force_explicit = explicit
    x = torch.rand(batch, model.config.in_channels, model.config.num_bins, frames, device=device)
    times = []
    for i in range(repeat + 1):  # the first pass warms up
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        model(x).mean().backward()
        if device == "cuda":
            torch.cuda.synchronize()
        if i:
            times.append(time.perf_counter() - start)
        model.zero_grad(set_to_none=True)
    peak = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else \
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds": statistics.median(times), "peak_mb": peak,
            "params_m": sum(p.numel() for p in model.parameters()) / 1e6}


def attention_only(batch: int, repeat: int, device: str) -> None:
    """The attention layer alone (4 channels, 256 bins, 4 heads), where the kernel choice is all that differs."""
    import torch

    from ftlib.layers import MultichannelMultiheadAttention

    attn = MultichannelMultiheadAttention(4, 256, 4).to(device)
    print(f"\nattention layer alone (4 channels, 256 bins, 4 heads), forward+backward, batch {batch}")
    print(f"{'frames':>8}{'fused s':>10}{'explicit s':>12}{'time ratio':>12}")
    for frames in (512, 1024, 2048):
        x = torch.rand(batch, 4, 256, frames, device=device, requires_grad=True)
        seconds = {}
        for explicit in (False, True):
            attn.force_explicit = explicit
            runs = []
            for i in range(repeat + 1):
                start = time.perf_counter()
                attn(x)[0].mean().backward()
                if device == "cuda":
                    torch.cuda.synchronize()
                if i:
                    runs.append(time.perf_counter() - start)
            seconds[explicit] = statistics.median(runs)
        print(f"{frames:>8}{seconds[False]:>10.3f}{seconds[True]:>12.3f}{seconds[True] / seconds[False]:>11.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--frames", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--device", default="cuda" if _cuda() else "cpu")
    parser.add_argument("--cases", default=",".join(f"{n}/{p}" for n, p in CASES),
                        help="comma-separated family/preset pairs (default: %(default)s)")
    parser.add_argument("--one", nargs=3, metavar=("NAME", "PRESET", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        name, preset, path = args.one
        print(json.dumps(measure(name, preset, path == "explicit", args.batch, args.frames, args.repeat, args.device)))
        return
    print(f"forward+backward, batch {args.batch}, {args.frames} frames, {args.device}, median of {args.repeat}")
    print(f"{'model':<30}{'params':>9}{'fused s':>10}{'explicit s':>12}{'time ratio':>12}{'fused MB':>10}{'explicit MB':>13}")
    for name, preset in (case.strip().split("/") for case in args.cases.split(",")):
        row = {}
        for path in ("fused", "explicit"):
            cmd = [sys.executable, __file__, "--one", name, preset, path, "--batch", str(args.batch),
                   "--frames", str(args.frames), "--repeat", str(args.repeat), "--device", args.device]
            row[path] = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
        f, e = row["fused"], row["explicit"]
        print(f"{name + '/' + preset:<30}{f['params_m']:>8.2f}M{f['seconds']:>10.3f}{e['seconds']:>12.3f}"
              f"{e['seconds'] / f['seconds']:>11.2f}x{f['peak_mb']:>10.0f}{e['peak_mb']:>13.0f}")
    attention_only(args.batch, args.repeat, args.device)


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


if __name__ == "__main__":
    main()
