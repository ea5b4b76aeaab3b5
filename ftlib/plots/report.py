"""Figures comparing runs (training curves, context length, scores), masks, and schedule previews."""
from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from ftlib.plots.separation import _db

__all__ = ["compare_training_curves", "context_length_curves", "sdr_bars", "mask_comparison", "schedule_preview"]


def compare_training_curves(logs: dict[str, Sequence[dict]], step_range: tuple[int, int] | None = None,
                            log_scale: bool = True) -> Figure:
    """Loss (solid: train, dots: validation) and learning rate against step, one colour per run.

    ``logs``: run label -> ``metrics.jsonl`` records; ``step_range``: the (first, last) steps drawn.
    """
    lo, hi = step_range or (-np.inf, np.inf)
    fig, (ax_loss, ax_lr) = plt.subplots(1, 2, figsize=(11, 3.8), constrained_layout=True)
    for i, (label, records) in enumerate(logs.items()):
        color = f"C{i % 10}"
        shown = [r for r in records if lo <= r.get("step", 0) <= hi]
        train = [r for r in shown if "loss" in r]
        valid = [r for r in shown if "valid_loss" in r]
        if train:
            ax_loss.plot([r["step"] for r in train], [r["loss"] for r in train], color=color, label=label)
        if valid:
            ax_loss.plot([r["step"] for r in valid], [r["valid_loss"] for r in valid], "o--", color=color, ms=4,
                         label=f"{label} (valid)")
        with_lr = [r for r in train if "lr" in r]
        if with_lr:
            ax_lr.plot([r["step"] for r in with_lr], [r["lr"] for r in with_lr], color=color, label=label)
    ax_loss.set(xlabel="step", ylabel="loss", yscale="log" if log_scale else "linear", title="loss")
    ax_lr.set(xlabel="step", ylabel="learning rate", title="learning rate")
    for ax in (ax_loss, ax_lr):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="small")
    return fig


def context_length_curves(rows: Sequence[dict]) -> Figure:
    """Validation loss against crop size (frames, log2 axis), one line per run, and beside it the
    median vocal SDR of the validation songs (dB) where the rows have one.

    ``rows``: ``{"run", "cropsize", "valid_loss"[, "vocals_sdr"]}`` records.
    """
    panels = [("valid_loss", "validation loss")]
    if any("vocals_sdr" in r for r in rows):
        panels.append(("vocals_sdr", "vocal SDR, median over songs (dB)"))
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 3.8), constrained_layout=True,
                             squeeze=False)
    for ax, (key, label) in zip(axes[0], panels):
        for i, run in enumerate(dict.fromkeys(r["run"] for r in rows)):
            points = sorted((r["cropsize"], r[key]) for r in rows if r["run"] == run and key in r)
            if points:
                ax.plot(*zip(*points), "o-", color=f"C{i % 10}", label=run)
        ax.set_xscale("log", base=2)
        ax.set(xlabel="crop size (frames)", ylabel=label)
        ax.grid(alpha=0.3)
    fig.suptitle("context length")
    if rows:
        axes[0][0].legend(fontsize="small")
    return fig


def sdr_bars(rows: Sequence[dict], stems: Sequence[str] = ("vocals", "instrumental")) -> Figure:
    """Horizontal bars of SDR per (run, system), grey ticks at the input SDR; one panel per stem (dB).

    ``rows``: ``{"run", "system", "sdr_<stem>", "input_sdr_<stem>"}`` records (missing values are skipped).
    """
    labels = [f"{r['run']} · {r['system']}" if r.get("system") else r["run"] for r in rows]
    fig, axes = plt.subplots(1, len(stems), figsize=(5.5 * len(stems), 0.5 * len(rows) + 1.6), sharey=True,
                             constrained_layout=True, squeeze=False)
    y = np.arange(len(rows))
    for ax, stem in zip(axes[0], stems):
        values = [r.get(f"sdr_{stem}") for r in rows]
        inputs = [r.get(f"input_sdr_{stem}") for r in rows]
        ax.barh(y, [np.nan if v is None else v for v in values], color=[f"C{i % 10}" for i in range(len(rows))])
        ax.plot([np.nan if v is None else v for v in inputs], y, "|", color="0.3", ms=18, mew=2, label="input (mixture)")
        ax.set_yticks(y, labels)
        ax.axvline(0, color="k", lw=0.6)
        ax.set(xlabel="dB", title=f"{stem} SDR")
        ax.legend(fontsize="small")
    axes[0, 0].invert_yaxis()  # first row on top (the axes share y)
    return fig


def mask_comparison(mixture: np.ndarray, masks: dict[str, np.ndarray], reference: np.ndarray | None = None,
                    sample_rate: int = 44100, hop_length: int = 1024, max_hz: float | None = 8000.0,
                    start_seconds: float = 0.0, vmin: float = -80.0) -> Figure:
    """The mixture (and true vocals), then per model its instrumental mask and its vocal estimate.

    ``mixture``, ``reference`` (true vocal magnitude) and every mask: ``[C, F, T]`` or ``[F, T]``
    (channels averaged); the vocal estimate is ``(1 - mask) * mixture`` in dB relative to the mixture.
    ``start_seconds`` labels the first frame's time.
    """
    mean = lambda x: np.asarray(x).mean(axis=0) if np.ndim(x) == 3 else np.asarray(x)  # noqa: E731
    mix = mean(mixture)
    for name, mask in masks.items():
        if mean(mask).shape != mix.shape:
            raise ValueError(f"mask of {name!r} has shape {np.shape(mask)}, the mixture {np.shape(mixture)}")
    ref = float(mix.max()) or 1.0
    extent = (start_seconds, start_seconds + mix.shape[-1] * hop_length / sample_rate, 0, sample_rate / 2)
    rows = 1 + len(masks)
    fig, axes = plt.subplots(rows, 2, figsize=(11, 2.3 * rows), sharex=True, sharey=True, constrained_layout=True,
                             squeeze=False)
    first = [("mixture", mix), ("true vocals", None if reference is None else mean(reference))]
    for ax, (title, mag) in zip(axes[0], first):
        if mag is None:
            ax.axis("off")
            continue
        db_image = ax.imshow(_db(mag / ref), origin="lower", aspect="auto", extent=extent, vmin=vmin, vmax=0,
                             cmap="magma")
        ax.set(title=title, ylabel="Hz")
    for (ax_mask, ax_voc), (name, mask) in zip(axes[1:], masks.items()):
        mask = mean(mask)
        mask_image = ax_mask.imshow(mask, origin="lower", aspect="auto", extent=extent, vmin=0, vmax=1, cmap="viridis")
        ax_mask.set(title=f"{name}: instrumental mask", ylabel="Hz")
        ax_voc.imshow(_db((1 - mask) * mix / ref), origin="lower", aspect="auto", extent=extent, vmin=vmin, vmax=0,
                      cmap="magma")
        ax_voc.set(title=f"{name}: vocals")
    if max_hz:
        axes[0, 0].set_ylim(0, max_hz)
    for ax in axes[-1]:
        ax.set_xlabel("seconds")
    fig.colorbar(db_image, ax=axes[:, 1], label="dB", shrink=0.8)
    if masks:
        fig.colorbar(mask_image, ax=axes[1:, 0], label="mask", shrink=0.8)
    return fig


def schedule_preview(lrs: Sequence[float], stages: Sequence[dict] = (), title: str = "") -> Figure:
    """The learning rate per step beside the curriculum: crop size and batch size against step.

    ``lrs[i]``: the learning rate of optimizer step ``i``; ``stages``: ``{"step", "cropsize",
    "batch_size"[, "grad_accum"]}`` records in step order (none: the right panel says so).
    """
    steps = len(lrs)
    fig, (ax_lr, ax_crop) = plt.subplots(1, 2, figsize=(11, 3.6), constrained_layout=True)
    ax_lr.plot(np.arange(steps), lrs, color="tab:green")
    ax_lr.set(xlabel="step", ylabel="learning rate", title="learning rate")
    ax_lr.grid(alpha=0.3)
    ax_crop.set(xlabel="step", title="curriculum")
    if stages:
        starts = [s["step"] for s in stages] + [max(steps, stages[-1]["step"] + 1)]
        crops = [s["cropsize"] for s in stages]
        batches = [s["batch_size"] * s.get("grad_accum", 1) for s in stages]
        ax_crop.step(starts, crops + crops[-1:], where="post", color="tab:blue", label="crop size (frames)")
        ax_crop.set_ylabel("crop size (frames)", color="tab:blue")
        ax_batch = ax_crop.twinx()
        ax_batch.step(starts, batches + batches[-1:], where="post", color="tab:orange", ls="--",
                      label="batch size x accumulation")
        ax_batch.set_ylabel("items per step", color="tab:orange")
        ax_batch.set_ylim(0, max(batches) * 1.2)
        ax_crop.set_ylim(0, max(crops) * 1.2)
        for start in starts[1:-1]:
            ax_crop.axvline(start, color="0.6", lw=0.8, ls=":")
    else:
        ax_crop.text(0.5, 0.5, "no curriculum: one crop size throughout", ha="center", va="center",
                     transform=ax_crop.transAxes)
        ax_crop.set(xticks=[], yticks=[])
    ax_crop.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    return fig
