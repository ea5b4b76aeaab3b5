"""Separation speed and memory on this machine, in one run.

Separates synthetic 1-, 3- and 10-minute songs with the default model (``frame_transformer``,
preset ``small``, untrained: this measures speed, not quality), each in a fresh process, and prints
the real-time factor (separation seconds / song seconds) and the peak resident memory (VmHWM),
against the 1-minute song as the baseline. Streaming keeps the 10-minute song within 1.1x.

    python bench/separate.py                      # 1, 3 and 10 minutes, 2 threads
    python bench/separate.py --minutes 1 10 --in-memory   # also the whole-song path, for contrast
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

SAMPLE_RATE = 44100


def _vm(key: str) -> float:
    """A /proc/self/status memory figure in MB (VmHWM: peak resident set; VmRSS: current)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux: peak only


def write_song(path: Path, minutes: float, seed: int = 0) -> Path:
    """A stereo 16-bit song of noise bursts and chords, written block by block."""
    rng, block = np.random.default_rng(seed), SAMPLE_RATE * 10
    with sf.SoundFile(path, "w", SAMPLE_RATE, 2, "PCM_16") as f:
        for start in range(0, int(minutes * 60 * SAMPLE_RATE), block):
            t = (start + np.arange(block)) / SAMPLE_RATE
            chord = sum(np.sin(2 * np.pi * f0 * t) for f0 in rng.uniform(110, 880, 3)) / 6
            noise = rng.standard_normal((2, block)) * 0.05 * (np.sin(2 * np.pi * 2 * t) > 0)
            f.write((chord + noise).T.astype(np.float32))
    return path


def child(args: argparse.Namespace) -> None:
    """Separate one song in this process and print one JSON line of measurements."""
    import torch

    from ftlib import audio, models
    from ftlib.separation import Separator

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = models.build(args.model, args.preset)
    sep = Separator(model, cropsize=args.cropsize, padding=args.padding, batch_size=args.batch_size, device="cpu")
    baseline = _vm("VmRSS")
    started = time.perf_counter()
    if args.in_memory:
        stems = sep.separate(audio.load(args.child))
        for name, wave in stems.items():
            audio.save(Path(args.out) / f"{name}.wav", wave)
    else:
        sep.separate_file(args.child, args.out)
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "audio_seconds": sf.info(args.child).duration, "peak_mb": _vm("VmHWM"),
                      "baseline_mb": baseline, "parameters": sum(p.numel() for p in model.parameters()),
                      "batch_size": sep.batch_size}))


def measure(song: Path, args: argparse.Namespace, in_memory: bool = False) -> dict:
    command = [sys.executable, __file__, "--child", str(song), "--out", str(song.parent),
               "--threads", str(args.threads), "--model", args.model, "--preset", args.preset,
               "--cropsize", str(args.cropsize), "--padding", str(args.padding)]
    if args.batch_size:
        command += ["--batch-size", str(args.batch_size)]
    if in_memory:
        command.append("--in-memory")
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode:
        sys.exit(f"measuring {song.name} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, nargs="+", default=[1, 3, 10],
                   help="song lengths; the first is the baseline")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--model", default="frame_transformer")
    p.add_argument("--preset", default="small")
    p.add_argument("--cropsize", type=int, default=256)
    p.add_argument("--padding", type=int, default=64)
    p.add_argument("--batch-size", type=int, help="default: the Separator's (1 on CPU)")
    p.add_argument("--in-memory", action="store_true", help="also time the whole-song path (load, separate, save)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args)
        return

    modes = [False, True] if args.in_memory else [False]
    with tempfile.TemporaryDirectory(prefix="ftlib-bench-") as tmp:
        rows = []
        for minutes in args.minutes:
            song = write_song(Path(tmp) / f"song_{minutes:g}min.wav", minutes)
            rows += [(minutes, mode, measure(song, args, mode)) for mode in modes]
            song.unlink()
    first = rows[0][2]
    print(f"{args.model}/{args.preset} ({first['parameters'] / 1e6:.2f} M parameters, untrained), cropsize "
          f"{args.cropsize}, padding {args.padding}, batch {first['batch_size']}, {args.threads} threads, CPU")
    print(f"process after imports and model build: {first['baseline_mb']:.0f} MB")
    print(f"{'song':>8}  {'path':9}  {'seconds':>8}  {'RTF':>6}  {'peak RSS':>9}  {'vs first':>8}")
    base = {mode: next(r for m, md, r in rows if md == mode)["peak_mb"] for mode in modes}
    for minutes, mode, r in rows:
        print(f"{minutes:6g} m  {'in-memory' if mode else 'streaming':9}  {r['seconds']:8.1f}  "
              f"{r['seconds'] / r['audio_seconds']:6.3f}  {r['peak_mb']:6.0f} MB  {r['peak_mb'] / base[mode]:7.2f}x")
    print("RTF = separation seconds / song seconds (lower is faster); peak RSS = VmHWM of a fresh process")


if __name__ == "__main__":
    main()
