"""Figures of a comparison of systems on the same songs (:class:`ftlib.compare.Comparison`): per-song
pairs, metric summaries with their bootstrap intervals, and one metric against another."""
from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from ftlib.compare import Comparison
from ftlib.evaluate import column_label

__all__ = ["paired_songs", "metric_summaries", "metric_scatter"]


def _index(comparison: Comparison, system: str) -> int:
    if system not in comparison.systems:
        raise ValueError(f"no system {system!r}; the comparison has {comparison.systems}")
    return comparison.systems.index(system)


def paired_songs(comparison: Comparison, column: str = "sdr_vocals", systems: Sequence[str] | None = None) -> Figure:
    """One line per song from system A (left) to system B (right) for one metric column: green
    when B scores higher, red when lower, grey for a tie; the black line joins the means over the
    songs both define. ``systems``: (A, B), default the first two."""
    a, b = systems or comparison.systems[:2]
    values = comparison.values[column][[_index(comparison, a), _index(comparison, b)]]  # [2, songs]
    both = ~np.isnan(values).any(0)
    fig, ax = plt.subplots(figsize=(4.8, 4.8), constrained_layout=True)
    for start, end in values[:, both].T:
        color = "tab:green" if end > start else "tab:red" if end < start else "tab:gray"
        ax.plot([0, 1], [start, end], "o-", color=color, alpha=0.6, ms=3, lw=1)
    means = values[:, both].mean(1) if both.any() else [np.nan, np.nan]
    ax.plot([0, 1], means, "s-", color="black", lw=2.5, ms=6, label="mean")
    wins = int((values[1, both] > values[0, both]).sum())
    ax.set_xticks([0, 1], [a, b])
    ax.set(xlim=(-0.3, 1.3), ylabel=column_label(column), title=f"{b} higher on {wins} of {int(both.sum())} songs")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(loc="best")
    return fig


def metric_summaries(comparison: Comparison, columns: Sequence[str] | None = None, statistic: str = "mean",
                     per_row: int = 4) -> Figure:
    """One panel per metric column: each system's ``statistic`` ("mean" or "median") over songs as a
    point with its bootstrap interval as error bars."""
    columns = list(columns or comparison.columns)
    rows = -(-len(columns) // per_row)
    cols = min(per_row, len(columns))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.0 * rows), constrained_layout=True, squeeze=False)
    positions = np.arange(len(comparison.systems))
    for ax, column in zip(axes.ravel(), columns):
        for i, system in enumerate(comparison.systems):
            s = comparison.summaries[column][system]
            ci = s[f"{statistic}_ci"] or (s[statistic], s[statistic])
            error = [[max(s[statistic] - ci[0], 0.0)], [max(ci[1] - s[statistic], 0.0)]]
            ax.errorbar([i], [s[statistic]], yerr=error, fmt="o", capsize=4, color=f"C{i % 10}")
        ax.set_xticks(positions, comparison.systems, rotation=30 if len(comparison.systems) > 2 else 0)
        ax.set(title=column_label(column), xlim=(-0.6, len(positions) - 0.4))
        ax.grid(alpha=0.3, axis="y")
    for ax in axes.ravel()[len(columns):]:
        ax.set_visible(False)
    b = comparison.bootstrap
    fig.suptitle(f"{statistic} over {len(comparison.songs)} songs, {b['confidence']:.0%} bootstrap intervals")
    return fig


def metric_scatter(comparison: Comparison, x: str = "fullness_vocals", y: str = "sdr_vocals") -> Figure:
    """Metric ``y`` against metric ``x`` over songs and systems: one point per song, one colour per system."""
    fig, ax = plt.subplots(figsize=(5.5, 4.5), constrained_layout=True)
    for i, system in enumerate(comparison.systems):
        ax.scatter(comparison.values[x][i], comparison.values[y][i], s=18, alpha=0.75, color=f"C{i % 10}",
                   label=system)
    ax.set(xlabel=column_label(x), ylabel=column_label(y), title=f"{len(comparison.songs)} songs")
    ax.grid(alpha=0.3)
    ax.legend(loc="best")
    return fig
