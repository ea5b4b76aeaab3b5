"""Mel-expansion figures: originals beside teacher-forced reconstructions, free-running generations
and the fold-size sweep. Log-mels are ``[M, T]`` arrays (or ``[1, M, T]``); ``frames`` trims padding."""
from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

__all__ = ["mel_pairs", "mel_gallery", "fold_sweep_figure"]


def _mel(x, frames: int | None = None) -> np.ndarray:
    x = np.asarray(x.detach().cpu() if hasattr(x, "detach") else x, dtype=np.float32)
    x = x.reshape(x.shape[-2], x.shape[-1])
    return x[:, :int(frames)] if frames is not None else x


def _show(ax, mel: np.ndarray, title: str, vmin: float, vmax: float) -> None:
    ax.imshow(mel, origin="lower", aspect="auto", interpolation="nearest", cmap="magma", vmin=vmin, vmax=vmax)
    ax.set(title=title, xlabel="frame", ylabel="mel band")


def mel_pairs(originals: Sequence, estimates: Sequence, frames: Sequence[int] | None = None,
              title: str = "teacher-forced reconstruction") -> Figure:
    """One row per item: the original log-mel (left) beside its estimate (right), same colour scale."""
    rows = len(originals)
    frames = list(frames) if frames is not None else [None] * rows
    fig, axes = plt.subplots(rows, 2, figsize=(10, 2.2 * rows + 0.6), squeeze=False, constrained_layout=True)
    for i, (orig, est, n) in enumerate(zip(originals, estimates, frames)):
        a, b = _mel(orig, n), _mel(est, n)
        vmin, vmax = float(a.min()), float(a.max())
        _show(axes[i, 0], a, f"original #{i}", vmin, vmax)
        _show(axes[i, 1], b, f"estimate #{i}", vmin, vmax)
    fig.suptitle(title)
    return fig


def mel_gallery(mels: Sequence, frames: Sequence[int] | None = None, titles: Sequence[str] | None = None,
                title: str = "free-running generation", columns: int = 2) -> Figure:
    """A grid of log-mels (e.g. generations from ideas), each trimmed to its ``frames``."""
    count = len(mels)
    frames = list(frames) if frames is not None else [None] * count
    if titles is None:
        titles = [f"#{i} ({_mel(m, n).shape[1]} frames)" for i, (m, n) in enumerate(zip(mels, frames))]
    rows = -(-count // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(5 * columns, 2.2 * rows + 0.6), squeeze=False,
                             constrained_layout=True)
    for ax in axes.flat[count:]:
        ax.axis("off")
    for ax, mel, n, name in zip(axes.flat, mels, frames, titles):
        m = _mel(mel, n)
        _show(ax, m, name, float(m.min()), float(m.max()))
    fig.suptitle(title)
    return fig


def fold_sweep_figure(rows: Sequence[dict], metrics: Sequence[str] = ("valid_l1", "free_running_l1")) -> Figure:
    """Validation scores against the fold size n (one line per metric present in ``rows``)."""
    fig, ax = plt.subplots(figsize=(6, 3.6), constrained_layout=True)
    folds = [r["fold"] for r in rows]
    for name in metrics:
        if rows and name in rows[0]:
            ax.plot(folds, [r[name] for r in rows], "o-", label=name)
    ax.set(xscale="log", xlabel="fold size n (mel columns per token)", ylabel="L1 (log-mel)", title="fold-size sweep")
    ax.set_xticks(folds, [str(n) for n in folds])
    ax.minorticks_off()
    ax.legend()
    ax.grid(alpha=0.3)
    return fig
