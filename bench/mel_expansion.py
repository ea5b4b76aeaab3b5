"""Autoregressive mel expansion: generation with the key/value cache against recomputing the prefix.

    python bench/mel_expansion.py                  # ~2 minutes on 2 cores
    python bench/mel_expansion.py --tokens 64 256 --dim 128

One model (random weights, seeded), one idea, one torch thread. For each length the same
generation runs with ``use_cache=True`` (each step feeds one token; self-attention keys/values are
kept per layer, cross-attention ones computed once) and ``use_cache=False`` (each step reruns the
decoder over the whole prefix). Fold 1 makes a token one mel column, so 512 tokens are 512 frames
(~6 s at 22.05 kHz, hop 256). Prints seconds, the speed-up and the largest difference between the
two outputs; exits with status 1 if they differ by more than ``--tolerance``.
"""
from __future__ import annotations

import argparse
import sys
import time

import torch

from ftlib.models.mel_reformer import MelReformer, MelReformerConfig


def best_time(fn, repeats: int) -> tuple[float, torch.Tensor]:
    """Fastest of ``repeats`` calls of ``fn`` and its (last) result."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, nargs="+", default=[64, 256, 512], help="generation lengths")
    parser.add_argument("--fold", type=int, default=1, help="mel columns per token")
    parser.add_argument("--n-mels", type=int, default=80)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--layers", type=int, default=3, help="encoder and decoder blocks each")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per cached measurement (uncached: 1)")
    parser.add_argument("--tolerance", type=float, default=1e-4, help="largest allowed output difference")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    config = MelReformerConfig(n_mels=args.n_mels, fold=args.fold, idea_width=128, dim=args.dim, num_heads=args.heads,
                               encoder_layers=args.layers, decoder_layers=args.layers, dropout=0.0,
                               max_tokens=max(args.tokens))
    torch.manual_seed(0)
    model = MelReformer(config).eval()
    idea = torch.randn(1, 1, args.n_mels, config.idea_width, generator=torch.Generator().manual_seed(1)) * 2 - 5
    params = sum(p.numel() for p in model.parameters()) / 1e6
    print(f"mel_reformer: {params:.2f} M parameters, dim {args.dim}, {args.layers}+{args.layers} layers, "
          f"{args.n_mels} mels, fold {args.fold}, batch 1, {args.threads} thread(s)")
    print(f"{'tokens':>7} {'cached s':>10} {'uncached s':>11} {'speed-up':>9} {'ms/token cached':>16} {'max |diff|':>11}")
    worst = 0.0
    for tokens in args.tokens:
        frames = tokens * args.fold
        cached_s, cached = best_time(lambda: model.generate(idea, frames, use_cache=True)[0], args.repeats)
        full_s, full = best_time(lambda: model.generate(idea, frames, use_cache=False)[0], 1)
        diff = float((cached - full).abs().max())
        worst = max(worst, diff)
        print(f"{tokens:>7} {cached_s:>10.3f} {full_s:>11.3f} {full_s / cached_s:>8.1f}x {1000 * cached_s / tokens:>16.2f} "
              f"{diff:>11.2e}")
    same = worst <= args.tolerance
    print(f"outputs {'identical' if same else 'DIFFER'} within {args.tolerance:g} (largest difference {worst:.2e})")
    sys.exit(0 if same else 1)


if __name__ == "__main__":
    main()
