"""Evaluation: whole-track SDR per song and aggregated, with the input (mixture) baseline."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ftlib import audio
from ftlib.data.sources import scan_songs
from ftlib.errors import DataError

if TYPE_CHECKING:
    from ftlib.separate import Separator

STEMS = ("vocals", "instrumental")


def sdr(reference: np.ndarray, estimate: np.ndarray, eps: float = 1e-8) -> float:
    """Whole-track SDR in dB (the MDX challenge definition): ``10 log10(sum s^2 / sum (s - s_hat)^2)``."""
    reference, estimate = np.asarray(reference, np.float64), np.asarray(estimate, np.float64)
    if reference.shape != estimate.shape:
        raise ValueError(f"reference {reference.shape} and estimate {estimate.shape} differ in shape")
    return float(10 * np.log10((np.sum(reference**2) + eps) / (np.sum((reference - estimate) ** 2) + eps)))


def score_song(name: str, truth: dict[str, np.ndarray], estimate: dict[str, np.ndarray], mixture: np.ndarray) -> dict:
    """One row: SDR of every stem, the input SDR (mixture as the estimate) and the improvement."""
    row = {"song": name}
    for stem in STEMS:
        row[f"sdr_{stem}"] = sdr(truth[stem], estimate[stem])
        row[f"input_sdr_{stem}"] = sdr(truth[stem], mixture)
        row[f"improvement_{stem}"] = row[f"sdr_{stem}"] - row[f"input_sdr_{stem}"]
    return row


def _load_truth(song: dict, sample_rate: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    mixture = audio.load(song["mixture"], sample_rate)
    vocals = audio.load(song["vocals"], sample_rate)
    instrumental = audio.load(song["instrumental"], sample_rate) if "instrumental" in song else mixture - vocals
    return mixture, {"vocals": vocals, "instrumental": instrumental}


def evaluate_folder(folder: str | Path, estimates: str | Path | None = None, separator: "Separator | None" = None,
                    sample_rate: int = 44100) -> list[dict]:
    """Score every ``folder/<song>/{mixture,vocals[,instrumental]}``.

    Estimates come from ``estimates/<song>_{Instruments,Vocals}.wav`` (vocals = mixture minus the
    instrumental when absent) or from running ``separator`` on each mixture. Returns one row per song
    followed by a ``"mean"`` row.
    """
    if (estimates is None) == (separator is None):
        raise ValueError("give exactly one of estimates= and separator=")
    rows = []
    for song in scan_songs(folder, stems=("mixture", "vocals")):
        mixture, truth = _load_truth(song, sample_rate)
        if separator is not None:
            est = separator.separate(mixture)
        else:
            est = _read_estimates(Path(estimates), song["name"], mixture, sample_rate)
        n = min(mixture.shape[-1], *(e.shape[-1] for e in est.values()))
        rows.append(score_song(song["name"], {k: v[:, :n] for k, v in truth.items()},
                               {k: v[:, :n] for k, v in est.items()}, mixture[:, :n]))
    return rows + [mean_row(rows)]


def _read_estimates(folder: Path, name: str, mixture: np.ndarray, sample_rate: int) -> dict[str, np.ndarray]:
    found = {k: next(iter(sorted(folder.glob(f"{name}_{tag}.*"))), None) for k, tag in (("instrumental", "Instruments"), ("vocals", "Vocals"))}
    if found["instrumental"] is None:
        raise DataError(f"{folder}: no estimate {name}_Instruments.* for song {name!r}")
    instrumental = audio.load(found["instrumental"], sample_rate)
    vocals = audio.load(found["vocals"], sample_rate) if found["vocals"] else mixture[:, :instrumental.shape[-1]] - instrumental
    return {"instrumental": instrumental, "vocals": vocals}


def mean_row(rows: list[dict]) -> dict:
    keys = [k for k in rows[0] if k != "song"]
    return {"song": "mean", **{k: float(np.mean([r[k] for r in rows])) for k in keys}}


def format_table(rows: list[dict]) -> str:
    """A fixed-width text table of SDR rows (dB)."""
    cols = ["song"] + [k for k in rows[0] if k != "song"]
    width = {c: max(len(c), 8) for c in cols}
    width["song"] = max(width["song"], *(len(str(r["song"])) for r in rows))
    lines = ["  ".join(c.rjust(width[c]) for c in cols)]
    for r in rows:
        lines.append("  ".join(str(r[c]).rjust(width[c]) if c == "song" else f"{r[c]:{width[c]}.2f}" for c in cols))
    return "\n".join(lines)
