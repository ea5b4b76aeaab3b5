"""Figures of training runs, spectrograms, scores and attention."""
from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from ftlib.audio import Spectrogram

__all__ = ["training_curves", "magnitudes", "spectrograms", "sdr_table_figure", "attention_grid", "table_figure",
           "score_comparison"]


def training_curves(records: Sequence[dict], title: str = "") -> Figure:
    """Loss (and validation loss) and learning rate against step, side by side, from ``metrics.jsonl`` records."""
    train = [r for r in records if "loss" in r]
    valid = [r for r in records if "valid_loss" in r]
    fig, (ax_loss, ax_lr) = plt.subplots(1, 2, figsize=(11, 3.6), constrained_layout=True)
    if train:
        ax_loss.plot([r["step"] for r in train], [r["loss"] for r in train], label="train")
    if valid:
        ax_loss.plot([r["step"] for r in valid], [r["valid_loss"] for r in valid], "o-", label="validation")
    ax_loss.set(xlabel="step", ylabel="L1 loss", yscale="log", title="loss")
    ax_loss.legend()
    ax_loss.grid(alpha=0.3)
    if train and "lr" in train[0]:
        ax_lr.plot([r["step"] for r in train], [r["lr"] for r in train], color="tab:green")
    ax_lr.set(xlabel="step", ylabel="learning rate", title="learning rate")
    ax_lr.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    return fig


def magnitudes(waves: dict[str, np.ndarray], n_fft: int = 2048, hop_length: int = 1024) -> dict[str, np.ndarray]:
    """STFT magnitudes ``[C, F, T]`` of named waveforms ``[C, S]``, for :func:`spectrograms`."""
    spec = Spectrogram(n_fft=n_fft, hop_length=hop_length)
    return {name: spec.stft(torch.from_numpy(np.ascontiguousarray(wave))).abs().numpy() for name, wave in waves.items()}


def _db(magnitude: np.ndarray) -> np.ndarray:
    return 20 * np.log10(np.maximum(magnitude, 1e-5))


def spectrograms(panels: dict[str, np.ndarray], sample_rate: int = 44100, hop_length: int = 1024,
                 max_hz: float | None = 8000.0, vmin: float = -80.0) -> Figure:
    """One row per named magnitude ``[F, T]`` (or ``[C, F, T]``, channels averaged), in dB relative
    to the loudest panel, sharing axes."""
    mags = {k: (v.mean(axis=0) if v.ndim == 3 else v) for k, v in panels.items()}
    ref = max(float(m.max()) for m in mags.values()) or 1.0
    fig, axes = plt.subplots(len(mags), 1, figsize=(11, 2.4 * len(mags)), sharex=True, sharey=True,
                             constrained_layout=True, squeeze=False)
    for ax, (name, mag) in zip(axes[:, 0], mags.items()):
        frames = mag.shape[-1]
        extent = (0, frames * hop_length / sample_rate, 0, sample_rate / 2)
        image = ax.imshow(_db(mag / ref), origin="lower", aspect="auto", extent=extent, vmin=vmin, vmax=0, cmap="magma")
        ax.set(title=name, ylabel="Hz")
        if max_hz:
            ax.set_ylim(0, max_hz)
    axes[-1, 0].set_xlabel("seconds")
    fig.colorbar(image, ax=axes[:, 0], label="dB", shrink=0.8)
    return fig


def sdr_table_figure(rows: Sequence[dict], stems: Sequence[str] = ("vocals", "instrumental")) -> Figure:
    """Grouped bars of input SDR and separated SDR per song and stem (dB)."""
    songs = [r["song"] for r in rows]
    fig, axes = plt.subplots(1, len(stems), figsize=(5.5 * len(stems), 3.4), constrained_layout=True, squeeze=False)
    x = np.arange(len(songs))
    for ax, stem in zip(axes[0], stems):
        ax.bar(x - 0.2, [r[f"input_sdr_{stem}"] for r in rows], 0.4, label="input (mixture)", color="0.7")
        ax.bar(x + 0.2, [r[f"sdr_{stem}"] for r in rows], 0.4, label="separated")
        ax.set_xticks(x, songs, rotation=30, ha="right")
        ax.set(title=f"{stem} SDR", ylabel="dB")
        ax.axhline(0, color="k", lw=0.6)
        ax.legend()
    return fig


def attention_grid(maps: dict[str, np.ndarray], columns: int = 4, max_maps: int = 16) -> Figure:
    """A grid of attention maps (first channel, heads averaged), one panel per attention layer.

    ``maps``: name -> weights ``[C, H, T, Tm]`` (as from :func:`ftlib.models.inspect.attention_maps`).
    """
    items = list(maps.items())[:max_maps]
    rows = max(1, -(-len(items) // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(3.1 * columns, 3.0 * rows), constrained_layout=True, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (name, weights) in zip(axes.flat, items):
        ax.axis("on")
        ax.imshow(np.asarray(weights)[0].mean(axis=0), origin="lower", aspect="auto", cmap="viridis")
        ax.set_title(name, fontsize=8)
        ax.set(xlabel="key frame", ylabel="query frame")
    return fig


def table_figure(rows: Sequence[dict], columns: Sequence[str], title: str = "") -> Figure:
    """A table of ``rows`` (dicts) as a figure, for reports that are images only."""
    fig, ax = plt.subplots(figsize=(2.0 * len(columns), 0.32 * (len(rows) + 2)), constrained_layout=True)
    ax.axis("off")
    cells = [[f"{r[c]:,}" if isinstance(r[c], int) else str(r[c]) for c in columns] for r in rows]
    ax.table(cellText=cells, colLabels=list(columns), loc="center", cellLoc="left")
    if title:
        ax.set_title(title)
    return fig


def score_comparison(summaries: dict[str, dict], metrics: Sequence[str] = ("sdr", "csdr", "sisdr"),
                     stems: Sequence[str] = ("vocals", "instrumental")) -> Figure:
    """Bars per metric: the input baseline, then each system's score (dB); one panel per stem.

    ``summaries`` maps a system name to its ``evaluate`` summary row (``rows[-1]``).
    """
    labels = {"sdr": "SDR", "csdr": "cSDR", "sisdr": "SI-SDR"}
    first = next(iter(summaries.values()))
    bars = {"input (mixture)": {k[len("input_"):]: v for k, v in first.items() if k.startswith("input_")}, **summaries}
    fig, axes = plt.subplots(1, len(stems), figsize=(5.5 * len(stems), 3.4), constrained_layout=True, squeeze=False)
    x, width = np.arange(len(metrics)), 0.8 / len(bars)
    for ax, stem in zip(axes[0], stems):
        for i, (name, row) in enumerate(bars.items()):
            ax.bar(x - 0.4 + width * (i + 0.5), [row[f"{m}_{stem}"] for m in metrics], width, label=name,
                   color="0.7" if i == 0 else None)
        ax.set_xticks(x, [labels.get(m, m) for m in metrics])
        ax.set(title=stem, ylabel="dB")
        ax.axhline(0, color="k", lw=0.6)
        ax.legend(fontsize="small")
    return fig
