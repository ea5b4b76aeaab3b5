"""Figures of diffusion runs: loss curves, denoising trajectories, image grids, SDR against sampling steps."""
from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

__all__ = ["loss_curves", "denoising_steps", "image_grid", "sdr_vs_steps"]


def loss_curves(logs: dict[str, Sequence[dict]], ylabels: dict[str, str] | None = None) -> Figure:
    """One panel per named run: training and validation loss against step (``metrics.jsonl`` records)."""
    fig, axes = plt.subplots(1, len(logs), figsize=(5 * len(logs), 3.4), constrained_layout=True, squeeze=False)
    for ax, (name, records) in zip(axes[0], logs.items()):
        train = [r for r in records if "loss" in r]
        valid = [r for r in records if "valid_loss" in r]
        ax.plot([r["step"] for r in train], [r["loss"] for r in train], label="train")
        if valid:
            ax.plot([r["step"] for r in valid], [r["valid_loss"] for r in valid], "o-", label="validation")
        ax.set(xlabel="step", ylabel=(ylabels or {}).get(name, "loss"), yscale="log", title=name)
        ax.legend()
        ax.grid(alpha=0.3)
    return fig


def _pick(history: Sequence[dict], count: int) -> list[dict]:
    index = np.unique(np.linspace(0, len(history) - 1, min(count, len(history))).round().astype(int))
    return [history[i] for i in index]


def denoising_steps(history: Sequence[dict], count: int = 6, item: int = 0, channel: int = 0,
                    title: str = "") -> Figure:
    """The state ``x_t`` (top row) and the predicted ``x0`` (bottom row) at ``count`` timesteps of
    one sampling trajectory (``Diffusion.sample(..., trajectory=True)``; tensors ``[B, C, H, W]``)."""
    steps = _pick(history, count)
    fig, axes = plt.subplots(2, len(steps), figsize=(2.6 * len(steps), 4.6), constrained_layout=True, squeeze=False)
    for col, step in enumerate(steps):
        for row, (key, limit) in enumerate((("x_t", 3.0), ("x0", 1.0))):
            ax = axes[row, col]
            ax.imshow(np.asarray(step[key][item, channel]), origin="lower", aspect="auto", cmap="magma",
                      vmin=-limit, vmax=limit)
            ax.set(xticks=[], yticks=[], title=f"{'x_t' if row == 0 else 'predicted x0'}, t={step['t']}")
    if title:
        fig.suptitle(title)
    return fig


def image_grid(images: np.ndarray, titles: Sequence[str] | None = None, cols: int = 4, vmin: float = -1.0,
               vmax: float = 1.0, title: str = "") -> Figure:
    """Images ``[N, H, W]`` (or ``[N, 1, H, W]``) in a grid, low rows at the bottom (spectrograms)."""
    images = np.asarray(images)
    images = images[:, 0] if images.ndim == 4 else images
    rows = -(-len(images) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 2.4 * rows), constrained_layout=True, squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set(xticks=[], yticks=[])
        if i < len(images):
            ax.imshow(images[i], origin="lower", aspect="auto", cmap="magma", vmin=vmin, vmax=vmax)
            if titles:
                ax.set_title(titles[i])
        else:
            ax.axis("off")
    if title:
        fig.suptitle(title)
    return fig


def sdr_vs_steps(points: Sequence[dict], baselines: dict[str, float] | None = None, stem: str = "vocals") -> Figure:
    """SDR (dB) against sampling steps: one line per ``sampler`` over ``points`` of
    ``{"sampler", "steps", "sdr"}``, and a horizontal line per named baseline (the mask model, the input)."""
    fig, ax = plt.subplots(figsize=(6.5, 4), constrained_layout=True)
    for sampler in dict.fromkeys(p["sampler"] for p in points):
        chosen = sorted((p for p in points if p["sampler"] == sampler), key=lambda p: p["steps"])
        ax.plot([p["steps"] for p in chosen], [p["sdr"] for p in chosen], "o-", label=sampler.upper())
        for p in chosen:
            ax.annotate(f"{p['sdr']:.2f}", (p["steps"], p["sdr"]), textcoords="offset points", xytext=(0, 6),
                        ha="center", fontsize=8)
    for (name, value), color in zip((baselines or {}).items(), ("tab:green", "tab:gray", "tab:red", "tab:purple")):
        ax.axhline(value, ls="--", color=color, label=f"{name} ({value:.2f})")
    ax.set(xscale="log", xlabel="sampling steps", ylabel=f"{stem} SDR (dB)", title="SDR against sampling steps")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    return fig
