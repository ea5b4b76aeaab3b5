"""Evaluation: SDR and friends per song and aggregated, each beside its input (mixture) baseline.

Three metrics, for vocals and instrumental:

- ``sdr``: whole-track SDR, the MDX challenge definition ``10 log10(sum s^2 / sum (s - s_hat)^2)``;
  songs aggregate by their mean.
- ``csdr``: BSS-eval v4 SDR as museval computes it for SiSEC/MUSDB ("cSDR"): the median over 1-s
  windows, then the median over songs. museval's v4 SDR is the images version with time-invariant
  filters, whose decomposition ``s + e_spat + e_interf + e_artif`` sums to the estimate, so each
  window's SDR is ``10 log10(sum s^2 / sum (s_hat - s)^2)``; the filters only change ISR/SIR/SAR.
  It is computed here directly (the tests check it against ``museval.evaluate``), windows where
  any reference or estimate stem is silent skipped as museval skips them.
- ``sisdr``: scale-invariant SDR over all channels, songs aggregate by their mean.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ftlib import audio
from ftlib.data.sources import scan_songs
from ftlib.errors import DataError
from ftlib.separation import STEM_NAMES, Separator

STEMS = ("vocals", "instrumental")
METRICS = {"sdr": "SDR", "csdr": "cSDR", "sisdr": "SI-SDR"}
MEDIAN = ("csdr",)  # aggregated over songs by the median (the others by the mean)


# ------------------------------------------------------------------------------------ metrics

def sdr(reference: np.ndarray, estimate: np.ndarray, eps: float = 1e-8) -> float:
    """Whole-track SDR in dB (the MDX challenge definition): ``10 log10(sum s^2 / sum (s - s_hat)^2)``."""
    reference, estimate = np.asarray(reference, np.float64), np.asarray(estimate, np.float64)
    if reference.shape != estimate.shape:
        raise ValueError(f"reference {reference.shape} and estimate {estimate.shape} differ in shape")
    return float(10 * np.log10((np.sum(reference**2) + eps) / (np.sum((reference - estimate) ** 2) + eps)))


def framewise_sdr(references: np.ndarray, estimates: np.ndarray, window: int = 44100) -> np.ndarray:
    """BSS-eval v4 SDR of every window: ``[K, C, S]`` references and estimates (K stems) -> ``[K, W]`` dB.

    Windows of ``window`` samples without overlap, a trailing partial window dropped (one window
    when the song is shorter); NaN where any stem's reference or estimate is silent, as in museval.
    """
    references, estimates = np.asarray(references, np.float64), np.asarray(estimates, np.float64)
    if references.shape != estimates.shape or references.ndim != 3:
        raise ValueError(f"expected [stems, channels, samples] twice, got {references.shape} and {estimates.shape}")
    count = max(1, references.shape[-1] // window)
    length = min(references.shape[-1], count * window)
    ref = references[..., :length].reshape(*references.shape[:2], count, -1)
    est = estimates[..., :length].reshape(*estimates.shape[:2], count, -1)
    silent = np.all(ref.sum(1) == 0, axis=-1).any(0) | np.all(est.sum(1) == 0, axis=-1).any(0)  # [W]
    with np.errstate(divide="ignore", invalid="ignore"):
        out = 10 * np.log10(np.sum(ref**2, axis=(1, 3)) / np.sum((est - ref) ** 2, axis=(1, 3)))
    out[:, silent] = np.nan
    return out


def si_sdr(reference: np.ndarray, estimate: np.ndarray, eps: float = 1e-8) -> float:
    """Scale-invariant SDR in dB over all channels: ``s`` scaled by ``<s_hat, s> / <s, s>``, then SDR."""
    s, s_hat = np.asarray(reference, np.float64).ravel(), np.asarray(estimate, np.float64).ravel()
    target = s * (s_hat @ s) / (s @ s + eps)
    return float(10 * np.log10((target @ target + eps) / (np.sum((s_hat - target) ** 2) + eps)))


def _median(values: np.ndarray) -> float:
    """Median ignoring NaN (skipped windows), NaN when nothing is left."""
    values = values[~np.isnan(values)]
    return float(np.median(values)) if len(values) else float("nan")


def _mean(values: np.ndarray) -> float:
    return float(np.mean(values))


def score_song(name: str, truth: dict[str, np.ndarray], estimate: dict[str, np.ndarray], mixture: np.ndarray,
               sample_rate: int = 44100) -> dict:
    """One row: for each stem, each metric of the estimate and of the input (the mixture taken as
    the estimate), and the SDR improvement."""
    references = np.stack([truth[s] for s in STEMS])
    windows = {"": framewise_sdr(references, np.stack([estimate[s] for s in STEMS]), sample_rate),
               "input_": framewise_sdr(references, np.stack([mixture] * len(STEMS)), sample_rate)}
    row = {"song": name}
    for i, stem in enumerate(STEMS):
        row[f"sdr_{stem}"] = sdr(truth[stem], estimate[stem])
        row[f"input_sdr_{stem}"] = sdr(truth[stem], mixture)
        row[f"improvement_{stem}"] = row[f"sdr_{stem}"] - row[f"input_sdr_{stem}"]
        row[f"csdr_{stem}"], row[f"input_csdr_{stem}"] = _median(windows[""][i]), _median(windows["input_"][i])
        row[f"sisdr_{stem}"] = si_sdr(truth[stem], estimate[stem])
        row[f"input_sisdr_{stem}"] = si_sdr(truth[stem], mixture)
    return row


def summary_row(rows: list[dict]) -> dict:
    """Songs aggregated: cSDR by the median, every other column by the mean."""
    keys = [k for k in rows[0] if k != "song"]
    return {"song": "summary", **{k: (_median if k.split("_")[-2] in MEDIAN else _mean)(
        np.array([r[k] for r in rows], np.float64)) for k in keys}}


# ---------------------------------------------------------------------------------- folders

def _load_truth(song: dict, sample_rate: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    mixture = audio.load(song["mixture"], sample_rate)
    vocals = audio.load(song["vocals"], sample_rate)
    instrumental = audio.load(song["instrumental"], sample_rate) if "instrumental" in song else mixture - vocals
    return mixture, {"vocals": vocals, "instrumental": instrumental}


def _find_estimate(folder: Path, name: str, stem: str) -> Path | None:
    """``<name>_<Stem>.*`` or, written with model names, the one ``<name>_<Stem>_<models>.*``."""
    tag = f"{name}_{STEM_NAMES[stem]}"
    found = sorted(p for p in folder.glob(f"{tag}*") if p.stem == tag or p.stem.startswith(tag + "_"))
    if len(found) > 1:
        raise DataError(f"{folder}: several estimates for {tag}: {', '.join(p.name for p in found)}; keep one")
    return found[0] if found else None


def _read_estimates(folder: Path, name: str, mixture: np.ndarray, sample_rate: int) -> dict[str, np.ndarray]:
    found = {stem: _find_estimate(folder, name, stem) for stem in ("instrumental", "vocals")}
    if found["instrumental"] is None:
        raise DataError(f"{folder}: no estimate {name}_Instruments.* for song {name!r}")
    instrumental = audio.load(found["instrumental"], sample_rate)
    if found["vocals"] is None:
        return {"instrumental": instrumental, "vocals": mixture[:, :instrumental.shape[-1]] - instrumental}
    vocals = audio.load(found["vocals"], sample_rate)
    return {"instrumental": instrumental, "vocals": vocals}


def evaluate_folder(folder: str | Path, estimates: str | Path | None = None, separator: Separator | None = None,
                    sample_rate: int = 44100, progress: bool = False, limit: int = 0) -> list[dict]:
    """Score every ``folder/<song>/{mixture,vocals[,instrumental]}`` (MUSDB18-HQ layout; the
    instrumental is mixture - vocals when absent).

    Estimates come from ``estimates/<song>_{Instruments,Vocals}[_<models>].<ext>`` (vocals =
    mixture - instrumental when absent) or from running ``separator`` on each mixture; ``limit``
    keeps the first songs only (0: all). Returns one row per song followed by the ``"summary"``
    row (:func:`summary_row`).
    """
    if (estimates is None) == (separator is None):
        raise ValueError("give exactly one of estimates= and separator=")
    rows = []
    songs = scan_songs(folder, stems=("mixture", "vocals"))
    for song in tqdm(songs[:limit] if limit else songs, desc="songs", disable=not progress):
        mixture, truth = _load_truth(song, sample_rate)
        if separator is not None:
            est = separator.separate(mixture, progress=progress)
        else:
            est = _read_estimates(Path(estimates), song["name"], mixture, sample_rate)
        n = min(mixture.shape[-1], *(e.shape[-1] for e in est.values()))
        rows.append(score_song(song["name"], {k: v[:, :n] for k, v in truth.items()},
                               {k: v[:, :n] for k, v in est.items()}, mixture[:, :n], sample_rate))
    return rows + [summary_row(rows)]


# ----------------------------------------------------------------------------------- tables

def format_table(rows: list[dict], columns: list[str] | None = None) -> str:
    """A fixed-width text table of score rows (dB); ``columns`` default to all."""
    cols = ["song"] + (columns or [k for k in rows[0] if k != "song"])
    width = {c: max(len(c), 8) for c in cols}
    width["song"] = max(width["song"], *(len(str(r["song"])) for r in rows))
    lines = ["  ".join(c.rjust(width[c]) for c in cols)]
    for r in rows:
        lines.append("  ".join(str(r[c]).rjust(width[c]) if c == "song" else f"{r[c]:{width[c]}.2f}" for c in cols))
    return "\n".join(lines)


def format_summary(rows: list[dict]) -> str:
    """The summary row as a table: metric x stem, with the input baseline and the improvement."""
    summary, songs = rows[-1], len(rows) - 1
    lines = [f"{'metric':8}  {'stem':12}  {'estimate':>8}  {'input':>8}  {'gain':>8}"]
    for key, label in METRICS.items():
        for stem in STEMS:
            est, base = summary[f"{key}_{stem}"], summary[f"input_{key}_{stem}"]
            lines.append(f"{label:8}  {stem:12}  {est:8.2f}  {base:8.2f}  {est - base:8.2f}")
    lines.append(f"dB over {songs} song{'s' * (songs != 1)}: SDR and SI-SDR mean over songs; "
                 "cSDR median over songs of the median over 1-s windows")
    return "\n".join(lines)
