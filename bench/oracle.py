"""The ceiling of a magnitude mask on a folder of songs: the oracle ratio mask's vocal SDR.

    python bench/oracle.py DATA/valid                          # the full band
    python bench/oracle.py DATA/valid --max-bins 0,512,256     # the mask above bin K is bin K-1's

Songs are ``<song>/{mixture,vocals,instrumental}.wav``. The oracle instrumental mask is
``clip(|I| / |X|, 0, 1)`` on ftlib's STFT (``--n-fft``, ``--hop``) with the mixture's phase; the
vocals are the mixture minus the masked instrumental, as the separator makes them. With ``max_bin``
K every bin from K up takes the mask of bin K-1, which is what a model that sees only the lowest K
bins (``conv_unet``'s ``max_bin``) can at best return. Prints the median and mean over songs of
each setting and the input SDR (the mixture as the vocal estimate).
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

from ftlib import audio, evaluate
from ftlib.audio import Spectrogram, SpectrogramConfig


def oracle_vocals(mixture: torch.Tensor, instrumental: torch.Tensor, spec: Spectrogram, max_bin: int) -> torch.Tensor:
    """Vocals ``[C, N]`` of the oracle ratio mask, its bins from ``max_bin`` up (0: none) set to bin ``max_bin - 1``."""
    x, target = spec.stft(mixture), spec.stft(instrumental)
    mask = (target.abs() / x.abs().clamp_min(1e-8)).clamp(0, 1)
    if max_bin:
        mask[..., max_bin:, :] = mask[..., max_bin - 1:max_bin, :]
    return mixture - spec.istft(x * mask, length=mixture.shape[-1])


def main(argv: list[str] | None = None) -> dict[str, list[float]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="songs <song>/{mixture,vocals,instrumental}.wav")
    parser.add_argument("--max-bins", default="0", help="comma-separated K (0: the full band)")
    parser.add_argument("--n-fft", type=int, default=SpectrogramConfig.n_fft)
    parser.add_argument("--hop", type=int, default=SpectrogramConfig.hop_length)
    parser.add_argument("--sample-rate", type=int, default=44100)
    args = parser.parse_args(argv)
    spec = Spectrogram(SpectrogramConfig(n_fft=args.n_fft, hop_length=args.hop))
    settings = [int(k) for k in args.max_bins.split(",")]
    songs = sorted(p for p in args.folder.iterdir() if (p / "mixture.wav").is_file())
    if not songs:
        sys.exit(f"{args.folder}: no <song>/mixture.wav in it")
    scores: dict[str, list[float]] = {"input": [], **{f"max_bin {k or 'all'}": [] for k in settings}}
    for song in songs:
        mixture, vocals, instrumental = (torch.from_numpy(audio.load(song / f"{stem}.wav", args.sample_rate))
                                         for stem in ("mixture", "vocals", "instrumental"))
        scores["input"].append(evaluate.sdr(vocals.numpy(), mixture.numpy()))
        for k in settings:
            scores[f"max_bin {k or 'all'}"].append(evaluate.sdr(vocals.numpy(), oracle_vocals(mixture, instrumental, spec, k).numpy()))
    print(f"{len(songs)} songs, n_fft {args.n_fft}, hop {args.hop}: vocal SDR of the oracle ratio mask")
    for name, values in scores.items():
        print(f"{name:>14}: median {statistics.median(values):6.2f} dB, mean {statistics.mean(values):6.2f} dB")
    return scores


if __name__ == "__main__":
    main()
