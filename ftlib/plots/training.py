"""Figures of training recipes: masked-pretraining reconstructions."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from ftlib.plots.separation import _db

__all__ = ["masked_reconstruction"]


def masked_reconstruction(masked: np.ndarray, estimate: np.ndarray, clean: np.ndarray, token_mask: np.ndarray,
                          title: str = "") -> Figure:
    """Input with masked frames, the model's reconstruction and the clean magnitude, one channel each.

    ``masked``, ``estimate``, ``clean``: ``[F, T]`` magnitudes; ``token_mask``: bool ``[T]``, shaded.
    """
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4), sharey=True, constrained_layout=True)
    frames = np.flatnonzero(token_mask)
    for ax, (label, spec) in zip(axes, (("input (masked frames shaded)", masked), ("reconstruction", estimate),
                                        ("clean", clean))):
        ax.imshow(_db(spec), origin="lower", aspect="auto", cmap="magma", vmin=-80, vmax=0)
        for t in frames:
            ax.axvspan(t - 0.5, t + 0.5, color="cyan", alpha=0.12, lw=0)
        ax.set(title=label, xlabel="frame")
    axes[0].set_ylabel("bin")
    if title:
        fig.suptitle(title)
    return fig
