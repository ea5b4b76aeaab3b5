"""Evaluation: metrics per song, aggregated over songs with bootstrap intervals, each beside its
input (mixture) baseline, and a fingerprint of the songs so that evaluations can be compared
(:mod:`ftlib.compare`).

Seven metrics, for vocals and instrumental, all higher-is-better:

- ``sdr``: whole-track SDR, the MDX challenge definition ``10 log10(sum s^2 / sum (s - s_hat)^2)``.
- ``csdr``: BSS-eval v4 SDR as museval computes it for SiSEC/MUSDB ("cSDR"): the median over 1-s
  windows. museval's v4 SDR is the images version with time-invariant filters, whose decomposition
  ``s + e_spat + e_interf + e_artif`` sums to the estimate, so each window's SDR is
  ``10 log10(sum s^2 / sum (s_hat - s)^2)``; the filters only change ISR/SIR/SAR. It is computed
  here directly (the tests check it against museval's ``bss_eval``), windows where any reference
  or estimate stem is silent skipped as museval skips them.
- ``sisdr``: scale-invariant SDR over all channels.
- ``fullness`` and ``bleedless``: the mel-spectrogram dB difference of estimate and reference as
  ZFTurbo's Music-Source-Separation-Training (MSST) computes it: energy missing from the estimate
  lowers fullness, energy it adds (bleed) lowers bleedless; 100 is perfect.
- ``l1_freq``: MSST's ``100 / (1 + 10 mean |S_hat| - |S||)`` over STFT magnitudes; 100 is perfect.
- ``log_wmse``: logWMSE (nomono, torch-log-wmse 0.x as MSST calls it), ``-4 ln`` of the
  hearing-weighted squared error relative to the mixture's level; it stays defined for silent
  references, where the SDR family does not.

SDR, cSDR and SI-SDR of a silent reference are undefined: that song is skipped for them with a
note in its row, and every summary says how many songs it covers. Songs aggregate by their mean,
cSDR by its median (SiSEC's convention); :func:`summarise` adds medians and percentile bootstrap
intervals.
"""
from __future__ import annotations

import csv
import dataclasses
import datetime
import functools
import hashlib
import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from scipy import signal, stats
from tqdm.auto import tqdm

from ftlib import audio
from ftlib.atomic import replacing, write_json
from ftlib.data.sources import scan_songs
from ftlib.errors import DataError
from ftlib.mel import MelConfig, mel_filterbank
from ftlib.separation import STEM_NAMES, Separator

STEMS = ("vocals", "instrumental")
METRICS = {"sdr": "SDR", "csdr": "cSDR", "sisdr": "SI-SDR", "fullness": "fullness", "bleedless": "bleedless",
           "l1_freq": "L1-freq", "log_wmse": "log-WMSE"}
UNITS = {"sdr": "dB", "csdr": "dB", "sisdr": "dB", "fullness": "0-100", "bleedless": "0-100", "l1_freq": "0-100",
         "log_wmse": "-4 ln"}
SDR_FAMILY = ("sdr", "csdr", "sisdr")  # undefined when the reference is silent
MEDIAN = ("csdr",)  # aggregated over songs by the median (the others by the mean)
EPS = 1e-8
BOOTSTRAP = dict(confidence=0.95, n_resamples=9999, seed=0)  # percentile intervals over songs
FORMAT = "ftlib-evaluation"


# ------------------------------------------------------------------------------ SDR family

def sdr(reference: np.ndarray, estimate: np.ndarray, eps: float = EPS) -> float:
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


def si_sdr(reference: np.ndarray, estimate: np.ndarray, eps: float = EPS) -> float:
    """Scale-invariant SDR in dB over all channels: ``s`` scaled by ``<s_hat, s> / <s, s>``, then SDR."""
    s, s_hat = np.asarray(reference, np.float64).ravel(), np.asarray(estimate, np.float64).ravel()
    target = s * (s_hat @ s) / (s @ s + eps)
    return float(10 * np.log10((target @ target + eps) / (np.sum((s_hat - target) ** 2) + eps)))


def is_silent(reference: np.ndarray, eps: float = EPS) -> bool:
    """True when the energy of ``reference`` does not exceed the ``eps`` that keeps SDR finite: the
    ratio then measures ``eps``, not the reference, and the SDR family is undefined."""
    return float(np.sum(np.square(reference, dtype=np.float64))) <= eps


# ------------------------------------------------------------------------- MSST's metrics

def _magnitude(wave: np.ndarray, n_fft: int, hop_length: int, window: torch.Tensor, pad_mode: str) -> torch.Tensor:
    """``[C, S]`` -> float32 STFT magnitude ``[C, n_fft // 2 + 1, T]`` (centred frames)."""
    x = torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))
    return torch.stft(x, n_fft, hop_length, window=window, center=True, pad_mode=pad_mode, return_complex=True).abs()


@functools.lru_cache(maxsize=4)
def _mel_basis(sample_rate: int, n_fft: int, n_mels: int) -> torch.Tensor:
    return mel_filterbank(MelConfig(sample_rate=sample_rate, n_fft=n_fft, hop_length=n_fft // 4, n_mels=n_mels))


def mel_db(wave: np.ndarray, sample_rate: int = 44100, n_fft: int = 4096, hop_length: int = 1024, n_mels: int = 512,
           top_db: float = 80.0) -> np.ndarray:
    """The mel spectrogram of MSST's fullness/bleedless, in dB: ``[C, S]`` -> ``[C, n_mels, T]``.

    Magnitude STFT (Hann window, centred frames, zero padding), librosa's Slaney mel filterbank,
    ``20 log10(max(mel, 1e-10))`` floored at ``top_db`` below the loudest bin of all channels
    (torchaudio's ``AmplitudeToDB(stype="magnitude", top_db=80)`` on a ``[C, n_mels, T]`` input).
    """
    basis, window = _mel_basis(sample_rate, n_fft, n_mels), torch.hann_window(n_fft)
    with torch.inference_mode():  # channel by channel: a 4-minute song's STFT is hundreds of MB
        db = torch.stack([20 * torch.log10(torch.clamp(basis @ _magnitude(c[None], n_fft, hop_length, window,
                                                                          "constant")[0], min=1e-10)) for c in wave])
        return torch.maximum(db, db.max() - top_db).numpy()


def _bleed_full(reference_db: np.ndarray, estimate_db: np.ndarray) -> tuple[float, float]:
    diff = estimate_db - reference_db
    above, below = diff[diff > 0], diff[diff < 0]
    bleed = float(above.mean(dtype=np.float64)) if above.size else 0.0
    missing = -float(below.mean(dtype=np.float64)) if below.size else 0.0
    return 100 / (1 + bleed), 100 / (1 + missing)


def bleedless_fullness(reference: np.ndarray, estimate: np.ndarray, sample_rate: int = 44100) -> tuple[float, float]:
    """MSST's ``bleed_full``: ``[C, S]`` twice -> (bleedless, fullness), each in (0, 100].

    ``d = mel_db(estimate) - mel_db(reference)`` (:func:`mel_db`) over every channel, band and frame;
    bleedless is ``100 / (1 + mean of d where d > 0)`` (energy the estimate adds), fullness
    ``100 / (1 + mean of -d where d < 0)`` (energy it misses); 100 when there is none. As in MSST,
    a bin equal in both counts for neither, and the means are over the bins that differ.
    """
    return _bleed_full(mel_db(reference, sample_rate), mel_db(estimate, sample_rate))


def fullness(reference: np.ndarray, estimate: np.ndarray, sample_rate: int = 44100) -> float:
    """MSST's fullness (see :func:`bleedless_fullness`): lower when the estimate misses energy."""
    return bleedless_fullness(reference, estimate, sample_rate)[1]


def bleedless(reference: np.ndarray, estimate: np.ndarray, sample_rate: int = 44100) -> float:
    """MSST's bleedless (see :func:`bleedless_fullness`): lower when the estimate adds energy."""
    return bleedless_fullness(reference, estimate, sample_rate)[0]


def _l1_magnitude(wave: np.ndarray, n_fft: int = 2048, hop_length: int = 1024) -> torch.Tensor:
    # MSST calls torch.stft without a window: rectangular, reflect-padded centred frames
    with torch.inference_mode():
        return _magnitude(wave, n_fft, hop_length, torch.ones(n_fft), "reflect")


def _l1_score(reference_magnitude: torch.Tensor, estimate_magnitude: torch.Tensor) -> float:
    loss = 10 * float((estimate_magnitude - reference_magnitude).abs().mean(dtype=torch.float64))
    return 100 / (1 + loss)


def l1_freq(reference: np.ndarray, estimate: np.ndarray, n_fft: int = 2048, hop_length: int = 1024) -> float:
    """MSST's ``L1Freq_metric``: ``[C, S]`` twice -> ``100 / (1 + 10 mean |S_hat| - |S||)`` in (0, 100].

    Magnitudes of an unnormalised STFT with a rectangular window (MSST passes no window to
    ``torch.stft``), reflect-padded centred frames; the mean is over channels, bins and frames.
    Not scale-invariant: the same error on a louder song scores lower.
    """
    return _l1_score(_l1_magnitude(reference, n_fft, hop_length), _l1_magnitude(estimate, n_fft, hop_length))


# ------------------------------------------------------------------------------- logWMSE

LOG_WMSE_TOLERANCE = 10 ** (-68 / 20)  # weighted errors below -68 dB of the mixture's RMS are inaudible: zeroed


def _biquad(kind: str, frequency: float, gain_db: float, q: float, sample_rate: int) -> np.ndarray:
    """RBJ Audio-EQ-Cookbook high shelf or peaking biquad as one ``sos`` row."""
    w, a = 2 * np.pi * frequency / sample_rate, 10 ** (gain_db / 40)
    alpha, cos = np.sin(w) / (2 * q), np.cos(w)
    if kind == "peak":
        b, den = [1 + alpha * a, -2 * cos, 1 - alpha * a], [1 + alpha / a, -2 * cos, 1 - alpha / a]
    else:
        s = 2 * np.sqrt(a) * alpha
        b = [a * ((a + 1) + (a - 1) * cos + s), -2 * a * ((a - 1) + (a + 1) * cos), a * ((a + 1) + (a - 1) * cos - s)]
        den = [(a + 1) - (a - 1) * cos + s, 2 * ((a - 1) - (a + 1) * cos), (a + 1) - (a - 1) * cos - s]
    return np.array([b + den]) / den[0]


@functools.lru_cache(maxsize=4)
def hearing_filter(sample_rate: int = 44100, taps: int = 4000) -> np.ndarray:
    """logWMSE's hearing-sensitivity FIR ``[taps]``, designed as nomono's script designs it.

    The magnitude response of a +5 dB high shelf at 1.5 kHz (Q 0.71), a 2nd-order Butterworth
    high-pass at 120 Hz, a +2.5 dB peak at 500 Hz (Q 1.06) and a 1st-order Butterworth low-pass at
    10 kHz applied forwards and backwards (after Fenton & Lee 2017), sampled at 4097 points of
    [0, pi) and inverted as a zero-phase 8192-point response whose central ``taps`` are kept. At
    44.1 kHz it reproduces the impulse response torch-log-wmse ships; at other rates the same
    filters are designed at that rate (cut-offs above Nyquist clamped as audiomentations does),
    where nomono resamples the audio to 44.1 kHz instead.
    """
    n_fft, nyquist = 8192, sample_rate / 2
    w = np.pi * np.arange(n_fft // 2 + 1) / (n_fft // 2 + 1)
    stages = [(_biquad("shelf", min(1500.0, 0.9999 * nyquist), 5.0, 1 / np.sqrt(2), sample_rate), 1),
              (signal.butter(2, min(120.0, 0.9999 * nyquist), "highpass", fs=sample_rate, output="sos"), 1),
              (_biquad("peak", min(500.0, 0.9999 * nyquist), 2.5, 1.5 / np.sqrt(2), sample_rate), 1),
              (signal.butter(1, min(10000.0, 0.9999 * nyquist), "lowpass", fs=sample_rate, output="sos"), 2)]
    response = np.prod([np.abs(signal.sosfreqz(sos, worN=w)[1]) ** power for sos, power in stages], axis=0)
    centre = n_fft // 2 + 1
    return np.fft.fftshift(np.fft.irfft(response, n_fft))[centre - taps // 2:centre + taps // 2]


def hearing_weighted(wave: np.ndarray, sample_rate: int = 44100) -> np.ndarray:
    """``[C, S]`` convolved with :func:`hearing_filter` (centred, same length), float32 as in torch-log-wmse."""
    taps = hearing_filter(sample_rate).astype(np.float32)[None]
    return signal.oaconvolve(np.asarray(wave, np.float32), taps, mode="same", axes=-1)


def _log_wmse_score(reference_w: np.ndarray, estimate_w: np.ndarray, mixture_w: np.ndarray,
                    cross_channel: bool = True) -> float:
    scale = 1 / (np.sqrt(np.mean(np.square(mixture_w, dtype=np.float64), axis=-1)) + EPS)  # [C] 1 / weighted RMS
    error = estimate_w - reference_w
    pairs = [(i, j) for i in range(len(scale)) for j in range(len(error))] if cross_channel else \
        [(c, c) for c in range(len(error))]
    values = []
    for i, j in pairs:
        d = error[j].astype(np.float64) * scale[i]
        d[np.abs(d) < LOG_WMSE_TOLERANCE] = 0.0
        values.append(-4 * math.log(float(np.mean(d**2)) + EPS))
    return float(np.mean(values))


def log_wmse(reference: np.ndarray, estimate: np.ndarray, mixture: np.ndarray, sample_rate: int = 44100,
             cross_channel: bool = True) -> float:
    """logWMSE as MSST computes it (torch-log-wmse 0.x): ``[C, S]`` three times -> a score, higher is better.

    ``-4 ln(mean(d^2) + 1e-8)`` with ``d`` the hearing-weighted error (:func:`hearing_weighted`)
    divided by the weighted mixture's RMS (plus 1e-8), samples with ``|d|`` under -68 dB zeroed: a
    perfect estimate scores ``-4 ln 1e-8``, an error of ``g`` times the mixture about ``-8 ln g``.
    It is defined for silent references. ``cross_channel=True`` follows MSST's call, whose
    ``[1, C, S]`` mixture broadcasts against ``[1, 1, C, S]`` stems so that every channel's error is
    divided by every mixture channel's RMS and the ``C x C`` values averaged; ``False`` pairs
    channel ``c`` with mixture channel ``c`` only (nomono's definition). The log of a ratio
    separates, so the two differ only where the gate or the 1e-8 floor bites. Both convolve in float32 without circular wrap-around
    (torch-log-wmse 0.x by FFT, ftlib by overlap-add), so values agree to float32 rounding.
    """
    weighted = [hearing_weighted(x, sample_rate) for x in (reference, estimate, mixture)]
    return _log_wmse_score(*weighted, cross_channel=cross_channel)


# ---------------------------------------------------------------------------------- songs

class _Signal:
    """A waveform ``[C, S]`` and its analyses, each computed once, when a metric first needs it."""

    def __init__(self, wave: np.ndarray, sample_rate: int):
        self.wave, self.sample_rate = wave, sample_rate

    @functools.cached_property
    def mel_db(self) -> np.ndarray:
        return mel_db(self.wave, self.sample_rate)

    @functools.cached_property
    def magnitude(self) -> torch.Tensor:
        return _l1_magnitude(self.wave)

    @functools.cached_property
    def weighted(self) -> np.ndarray:
        return hearing_weighted(self.wave, self.sample_rate)


def _scores(reference: _Signal, estimate: _Signal, mixture: _Signal, metrics: Sequence[str]) -> dict[str, float]:
    """Every metric but cSDR (windowed over all stems at once) of one estimate of one stem."""
    out = {}
    if "sdr" in metrics:
        out["sdr"] = sdr(reference.wave, estimate.wave)
    if "sisdr" in metrics:
        out["sisdr"] = si_sdr(reference.wave, estimate.wave)
    if "fullness" in metrics or "bleedless" in metrics:
        out["bleedless"], out["fullness"] = _bleed_full(reference.mel_db, estimate.mel_db)
    if "l1_freq" in metrics:
        out["l1_freq"] = _l1_score(reference.magnitude, estimate.magnitude)
    if "log_wmse" in metrics:
        out["log_wmse"] = _log_wmse_score(reference.weighted, estimate.weighted, mixture.weighted)
    return {k: v for k, v in out.items() if k in metrics}


def score_song(name: str, truth: dict[str, np.ndarray], estimate: dict[str, np.ndarray], mixture: np.ndarray,
               sample_rate: int = 44100, metrics: Sequence[str] | None = None) -> dict:
    """One row: for each stem, each metric of the estimate and of the input (the mixture taken as
    the estimate), the SDR improvement, and a ``note`` saying which values are undefined and why.

    ``truth``, ``estimate``: stem -> ``[C, S]``; ``mixture`` ``[C, S]``, all of one length.
    ``metrics``: names from :data:`METRICS` (default all). Undefined values are NaN.
    """
    metrics = tuple(metrics or METRICS)
    unknown = sorted(set(metrics) - set(METRICS))
    if unknown:
        raise ValueError(f"unknown metrics {unknown}; choose from {list(METRICS)}")
    row, notes = {"song": name}, []
    mix = _Signal(mixture, sample_rate)
    windows = {}
    if "csdr" in metrics:
        references = np.stack([truth[s] for s in STEMS])
        windows = {"": framewise_sdr(references, np.stack([estimate[s] for s in STEMS]), sample_rate),
                   "input_": framewise_sdr(references, np.stack([mixture] * len(STEMS)), sample_rate)}
    values = {}
    for i, stem in enumerate(STEMS):
        reference = _Signal(truth[stem], sample_rate)
        for prefix, candidate in (("", _Signal(estimate[stem], sample_rate)), ("input_", mix)):
            scores = _scores(reference, candidate, mix, metrics)
            if "csdr" in metrics:
                scores["csdr"] = _median(windows[prefix][i])
            values.update({f"{prefix}{m}_{stem}": scores[m] for m in metrics})
        if "sdr" in metrics:
            values[f"improvement_{stem}"] = values[f"sdr_{stem}"] - values[f"input_sdr_{stem}"]
        notes += _undefined(stem, truth[stem], values, metrics)
    row.update({c: values[c] for c in _ordered(values)})
    row["note"] = "; ".join(notes)
    return row


def _undefined(stem: str, reference: np.ndarray, values: dict, metrics: Sequence[str]) -> list[str]:
    """Set the SDR family of a silent reference to NaN and say why values are undefined."""
    family = [m for m in SDR_FAMILY if m in metrics]
    if family and is_silent(reference):
        for key in [f"{p}{m}_{stem}" for m in family for p in ("", "input_")] + [f"improvement_{stem}"]:
            if key in values:
                values[key] = float("nan")
        return [f"{stem} reference silent: {', '.join(METRICS[m] for m in family)} of {stem} undefined"]
    if "csdr" in metrics and (math.isnan(values[f"csdr_{stem}"]) or math.isnan(values[f"input_csdr_{stem}"])):
        return [f"cSDR of {stem} undefined: every 1-s window has a silent stem (museval skips those)"]
    return []


def _ordered(values: dict) -> list[str]:
    """Columns in table order: estimates per stem, then improvements, then input baselines."""
    return sorted(values, key=lambda c: (("input_" in c) * 2 + c.startswith("improvement"),
                                         STEMS.index(column_parts(c)[2]), list(METRICS).index(column_parts(c)[1])))


def column_parts(column: str) -> tuple[str, str, str] | None:
    """``"input_l1_freq_vocals"`` -> ``("input", "l1_freq", "vocals")``; kind is ``estimate``,
    ``input`` or ``improvement`` (an SDR gain); None for a column that is not a metric."""
    for stem in STEMS:
        if column.endswith("_" + stem):
            head = column[:-len(stem) - 1]
            if head == "improvement":
                return "improvement", "sdr", stem
            kind, metric = ("input", head[6:]) if head.startswith("input_") else ("estimate", head)
            if metric in METRICS:
                return kind, metric, stem
    return None


def column_label(column: str) -> str:
    """``"sdr_vocals"`` -> ``"SDR vocals (dB)"``, for tables and figure axes."""
    kind, metric, stem = column_parts(column)
    prefix = {"estimate": "", "input": "input ", "improvement": "gain in "}[kind]
    return f"{prefix}{METRICS[metric]} {stem} ({UNITS[metric]})"


def metric_columns(rows: Iterable[dict], kinds: Sequence[str] = ("estimate", "input", "improvement")) -> list[str]:
    """The metric columns of score rows (first appearance order), of the given kinds."""
    columns = dict.fromkeys(k for r in rows for k in r)
    return [c for c in columns if column_parts(c) and column_parts(c)[0] in kinds]


# ------------------------------------------------------------------------------ summaries

def _median(values: np.ndarray) -> float:
    """Median ignoring NaN (skipped windows or songs), NaN when nothing is left."""
    values = values[~np.isnan(values)]
    return float(np.median(values)) if len(values) else float("nan")


def _mean(values: np.ndarray) -> float:
    values = values[~np.isnan(values)]
    return float(np.mean(values)) if len(values) else float("nan")


def _column(rows: Sequence[dict], column: str) -> np.ndarray:
    return np.array([np.nan if r.get(column) is None else r[column] for r in rows], np.float64)


def summary_row(rows: list[dict]) -> dict:
    """Songs aggregated: cSDR by the median, every other metric column by the mean, over the songs
    where the value is defined (NaN only when no song defines it; :func:`summarise` says how many)."""
    return {"song": "summary", **{c: (_median if column_parts(c)[1] in MEDIAN else _mean)(_column(rows, c))
                                  for c in metric_columns(rows)}}


def bootstrap_interval(values: Sequence[float], statistic: str = "mean", confidence: float = 0.95,
                       n_resamples: int = 9999, seed: int = 0) -> tuple[float, float] | None:
    """Percentile bootstrap interval of the mean or median of ``values`` (songs resampled with
    replacement, ``scipy.stats.bootstrap``, seeded); None with fewer than two values."""
    values = np.asarray(values, np.float64)
    if len(values) < 2:
        return None
    if np.all(values == values[0]):
        return float(values[0]), float(values[0])
    result = stats.bootstrap((values,), np.mean if statistic == "mean" else np.median, n_resamples=n_resamples,
                             confidence_level=confidence, method="percentile", vectorized=True, axis=-1,
                             rng=np.random.default_rng(seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def describe(values: Sequence[float], songs: Sequence[str], **bootstrap) -> dict:
    """Mean and median of per-song ``values`` (NaN: undefined, skipped) with bootstrap intervals:
    ``{"mean", "mean_ci", "median", "median_ci", "songs": count, "skipped": [song, ...]}``."""
    values = np.asarray(values, np.float64)
    defined = ~np.isnan(values)
    kept = values[defined]
    options = {**BOOTSTRAP, **bootstrap}
    return {"mean": _mean(kept), "mean_ci": bootstrap_interval(kept, "mean", **options),
            "median": _median(kept), "median_ci": bootstrap_interval(kept, "median", **options),
            "songs": int(defined.sum()), "skipped": [s for s, d in zip(songs, defined) if not d]}


def summarise(rows: Sequence[dict], **bootstrap) -> dict[str, dict]:
    """:func:`describe` of every metric column of per-song ``rows`` (a ``"summary"`` row is ignored).
    ``bootstrap``: ``confidence``, ``n_resamples``, ``seed`` (defaults in :data:`BOOTSTRAP`)."""
    rows = [r for r in rows if r.get("song") != "summary"]
    songs = [r["song"] for r in rows]
    return {c: describe(_column(rows, c), songs, **bootstrap) for c in metric_columns(rows)}


# ---------------------------------------------------------------------------- evaluations

def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def song_fingerprint(song: dict) -> dict:
    """``{"name", "sha256": {stem: hash of its reference file}}`` for a :func:`scan_songs` entry."""
    return {"name": song["name"], "sha256": {k: file_sha256(v) for k, v in song.items() if k != "name"}}


def folder_fingerprint(folder: str | Path, limit: int = 0) -> dict:
    """The fingerprint of a song folder from its files alone (names and hashes, no lengths)."""
    songs = scan_songs(folder)
    return {"songs": [song_fingerprint(s) for s in (songs[:limit] if limit else songs)]}


@dataclasses.dataclass
class Evaluation:
    """One system's scores on a folder of songs.

    ``rows``: one per song (:func:`score_song` plus notes); ``fingerprint``: ``{"sample_rate",
    "songs": [{"name", "samples", "sha256": {stem: hash}}]}``, the reference songs scored, so two
    evaluations can be checked to be on the same songs; ``source``: checkpoints or estimates folder.
    """

    system: str
    rows: list[dict]
    fingerprint: dict
    source: str = ""
    sample_rate: int = 44100

    def summary(self, **bootstrap) -> dict[str, dict]:
        return summarise(self.rows, **bootstrap)

    def to_json(self, **bootstrap) -> dict:
        options = {**BOOTSTRAP, **bootstrap}
        return {"format": FORMAT, "version": 1, "system": self.system, "source": self.source,
                "sample_rate": self.sample_rate, "created": datetime.datetime.now().isoformat(timespec="seconds"),
                "fingerprint": self.fingerprint, "songs": self.rows, "summary": self.summary(**options),
                "bootstrap": {"method": "percentile", **options}}

    def save(self, path: str | Path, **bootstrap) -> Path:
        """Write :meth:`to_json` atomically (undefined values as null)."""
        return write_json(path, self.to_json(**bootstrap))

    @classmethod
    def load(cls, path: str | Path) -> Evaluation:
        """Read an evaluation written by :meth:`save` (``ftlib evaluate --json``), or the per-song
        scores a training run keeps in its ``metrics.json`` (give the run folder or that file),
        named after the run."""
        path = Path(path)
        file = path / "metrics.json" if path.is_dir() else path
        hint = "write one with ftlib evaluate --json, or give a training run folder that evaluated its songs"
        try:
            data = json.loads(file.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise DataError(f"{file}: cannot read the evaluation ({exc}); {hint}") from exc
        run = isinstance(data, dict) and "recipe" in data
        if not isinstance(data, dict) or (data.get("format") != FORMAT and not run):
            raise DataError(f"{file}: not an ftlib evaluation (no \"format\": \"{FORMAT}\") or run metrics; {hint}")
        if not isinstance(data.get("songs"), list) or not isinstance(data.get("fingerprint"), dict):
            raise DataError(f"{file}: the evaluation has no songs or no fingerprint; {hint}")
        rows = [{k: float("nan") if v is None and column_parts(k) else v for k, v in r.items()}
                for r in data["songs"]]
        system = file.parent.name if run else data.get("system") or path.stem
        return cls(system, rows, data["fingerprint"], str(file.parent) if run else data.get("source", ""),
                   data["fingerprint"].get("sample_rate", 44100) if run else data.get("sample_rate", 44100))


def _load_truth(song: dict, sample_rate: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    mixture = audio.load(song["mixture"], sample_rate)
    vocals = audio.load(song["vocals"], sample_rate)
    if "instrumental" in song:
        return mixture, {"vocals": vocals, "instrumental": audio.load(song["instrumental"], sample_rate)}
    n = min(mixture.shape[-1], vocals.shape[-1])
    return mixture, {"vocals": vocals, "instrumental": mixture[:, :n] - vocals[:, :n]}


def _find_estimate(folder: Path, name: str, stem: str) -> Path | None:
    """``<name>_<Stem>.*`` or, written with model names, the one ``<name>_<Stem>_<models>.*``."""
    tag = f"{name}_{STEM_NAMES[stem]}"
    found = sorted(p for p in folder.glob(f"{tag}*") if p.stem == tag or p.stem.startswith(tag + "_"))
    if len(found) > 1:
        raise DataError(f"{folder}: several estimates for {tag}: {', '.join(p.name for p in found)}; keep one")
    return found[0] if found else None


def _check_estimates(folder: Path, songs: Sequence[dict]) -> None:
    """Refuse, before any scoring, a folder that lacks some song's instrumental estimate."""
    if not folder.is_dir():
        raise DataError(f"{folder}: estimates folder not found")
    missing = [s["name"] for s in songs if _find_estimate(folder, s["name"], "instrumental") is None]
    if missing:
        raise DataError(f"{folder}: no estimate <song>_Instruments.* for {len(missing)} of {len(songs)} songs: "
                        f"{', '.join(map(repr, missing))}; separate them (ftlib separate) or evaluate fewer songs")


def _converted(path: Path, sample_rate: int, channels: int) -> list[str]:
    """Notes on what :func:`ftlib.audio.load` changed while reading an estimate."""
    info, notes = sf.info(str(path)), []
    if info.samplerate != sample_rate:
        notes.append(f"{path.name} at {info.samplerate} Hz, resampled to {sample_rate} Hz")
    if info.channels != channels:
        how = "duplicated" if info.channels == 1 else "averaged"
        notes.append(f"{path.name} has {info.channels} channel(s), {how} to {channels}")
    return notes


def _read_estimates(folder: Path, name: str, mixture: np.ndarray,
                    sample_rate: int) -> tuple[dict[str, np.ndarray], list[str]]:
    found = {stem: _find_estimate(folder, name, stem) for stem in ("instrumental", "vocals")}
    if found["instrumental"] is None:
        raise DataError(f"{folder}: no estimate {name}_Instruments.* for song {name!r}")
    notes = [n for p in found.values() if p is not None for n in _converted(p, sample_rate, mixture.shape[0])]
    stems = {stem: audio.load(p, sample_rate, mixture.shape[0]) for stem, p in found.items() if p is not None}
    if found["vocals"] is None:
        n = min(mixture.shape[-1], stems["instrumental"].shape[-1])
        stems["vocals"] = mixture[:, :n] - stems["instrumental"][:, :n]
        notes.append("no vocals estimate: vocals = mixture - instrumental")
    return stems, notes


def _aligned(mixture: np.ndarray, truth: dict, est: dict) -> tuple[int, list[str]]:
    """The scored length (the shortest signal) and a note when anything is trimmed to it."""
    references = {"mixture": mixture.shape[-1], **{k: v.shape[-1] for k, v in truth.items()}}
    reference = min(references.values())
    reasons = [f"references differ in length ({', '.join(f'{k} {v}' for k, v in references.items())} samples)"] \
        if len(set(references.values())) > 1 else []
    for stem, wave in est.items():
        diff = wave.shape[-1] - reference
        if diff:
            reasons.append(f"{stem} estimate {abs(diff)} samples {'longer' if diff > 0 else 'shorter'} than the reference")
    n = min(reference, *(wave.shape[-1] for wave in est.values()))
    return n, [f"{', '.join(reasons)}: scored on the first {n} samples"] if reasons else []


def _system_name(estimates: str | Path | None, separator: Separator | None) -> str:
    if separator is not None:
        return "+".join(getattr(separator, "names", None) or ["separator"])
    return Path(estimates).resolve().name


def run_evaluation(folder: str | Path, estimates: str | Path | None = None, separator: Separator | None = None,
                   sample_rate: int = 44100, progress: bool = False, limit: int = 0,
                   metrics: Sequence[str] | None = None, name: str | None = None) -> Evaluation:
    """Score every ``folder/<song>/{mixture,vocals[,instrumental]}`` (MUSDB18-HQ layout; the
    instrumental is mixture - vocals when absent) and fingerprint the songs.

    Estimates come from ``estimates/<song>_{Instruments,Vocals}[_<models>].<ext>`` (vocals =
    mixture - instrumental when absent; other rates and channel counts converted as
    :func:`ftlib.audio.load` does) or from running ``separator`` on each mixture. Signals of
    different lengths are trimmed to the shortest. Every conversion and trim is said in the song's
    ``note``. A song without an estimate is refused before anything is scored. ``limit`` keeps the
    first songs only (0: all); ``metrics`` as in :func:`score_song`.
    """
    if (estimates is None) == (separator is None):
        raise ValueError("give exactly one of estimates= and separator=")
    songs = scan_songs(folder)
    songs = songs[:limit] if limit else songs
    if estimates is not None:
        _check_estimates(Path(estimates), songs)
    rows, fingerprints = [], []
    for song in tqdm(songs, desc="songs", disable=not progress):
        mixture, truth = _load_truth(song, sample_rate)
        if separator is not None:
            est, notes = separator.separate(mixture, progress=progress), []
        else:
            est, notes = _read_estimates(Path(estimates), song["name"], mixture, sample_rate)
        n, trimmed = _aligned(mixture, truth, est)
        row = score_song(song["name"], {k: v[:, :n] for k, v in truth.items()}, {k: v[:, :n] for k, v in est.items()},
                         mixture[:, :n], sample_rate, metrics)
        row["note"] = "; ".join(filter(None, [*notes, *trimmed, row["note"]]))
        rows.append(row)
        fingerprints.append({**song_fingerprint(song), "samples": int(mixture.shape[-1])})
    source = str(estimates) if estimates is not None else ", ".join(getattr(separator, "names", []))
    return Evaluation(name or _system_name(estimates, separator), rows,
                      {"sample_rate": sample_rate, "songs": fingerprints}, source, sample_rate)


def evaluate_folder(folder: str | Path, estimates: str | Path | None = None, separator: Separator | None = None,
                    sample_rate: int = 44100, progress: bool = False, limit: int = 0,
                    metrics: Sequence[str] | None = None) -> list[dict]:
    """:func:`run_evaluation`'s rows, one per song, followed by the ``"summary"`` row (:func:`summary_row`)."""
    rows = run_evaluation(folder, estimates, separator, sample_rate, progress, limit, metrics).rows
    return rows + [summary_row(rows)]


# ---------------------------------------------------------------------------------- output

def _cell(value) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(value)
    return "" if value is None else str(value)


def write_csv(rows: Sequence[dict], path: str | Path) -> Path:
    """Per-song rows as CSV, every column (undefined values empty), written atomically."""
    fields = list(dict.fromkeys(key for row in rows for key in row))
    with replacing(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(fields)
        writer.writerows([[_cell(row.get(f)) for f in fields] for row in rows])
    return Path(path)


def _number(value, width: int = 8, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a".rjust(width)
    return f"{value:{width}.{digits}f}"


def format_table(rows: list[dict], columns: list[str] | None = None) -> str:
    """A fixed-width text table of score rows (undefined values ``n/a``); ``columns`` default to
    every column but the note."""
    cols = ["song"] + (columns or [k for k in rows[0] if k not in ("song", "note")])
    width = {c: max(len(c), 8) for c in cols}
    width["song"] = max(width["song"], *(len(str(r["song"])) for r in rows))
    lines = ["  ".join(c.rjust(width[c]) for c in cols)]
    for r in rows:
        lines.append("  ".join(str(r[c]).rjust(width[c]) if c == "song" else _number(r.get(c), width[c]) for c in cols))
    return "\n".join(lines)


def format_notes(rows: Sequence[dict]) -> str:
    """One line per song whose row has a note (conversions, trims, undefined values); "" if none."""
    return "\n".join(f"note: {r['song']}: {r['note']}" for r in rows if r.get("note"))


def _interval(ci) -> str:
    return f"[{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "[n/a]"


def format_summary(rows: list[dict], **bootstrap) -> str:
    """Metric x stem: the estimate's mean (cSDR: median) over songs with its bootstrap interval,
    the input's, the gain and how many songs each value covers. ``rows``: per-song rows (a final
    ``"summary"`` row is ignored)."""
    songs = [r for r in rows if r.get("song") != "summary"]
    summary = summarise(songs, **bootstrap)
    options = {**BOOTSTRAP, **bootstrap}
    lines = [f"{'metric':9}  {'stem':12}  {'estimate [95% CI]':>26}  {'input':>8}  {'gain':>8}  {'songs':>5}"]
    for key, label in METRICS.items():
        for stem in STEMS:
            if f"{key}_{stem}" not in summary:
                continue
            stat = "median" if key in MEDIAN else "mean"
            est, base = summary[f"{key}_{stem}"], summary[f"input_{key}_{stem}"]
            gain = est[stat] - base[stat] if est["songs"] and base["songs"] else float("nan")
            lines.append(f"{label:9}  {stem:12}  {_number(est[stat])} {_interval(est[stat + '_ci']):>17}  "
                         f"{_number(base[stat])}  {_number(gain)}  {est['songs']:5d}")
    partial = [f"{column_label(c)} covers {s['songs']} of {len(songs)} songs, skipping {', '.join(s['skipped'])} "
               "(see the notes)" for c, s in summary.items() if s["skipped"] and column_parts(c)[0] == "estimate"]
    lines.append(f"over {len(songs)} song{'s' * (len(songs) != 1)}: mean over songs, cSDR median over songs of the "
                 f"median over 1-s windows; {options['confidence']:.0%} percentile bootstrap intervals\n"
                 f"({options['n_resamples']} resamples over songs, seed {options['seed']}); dB for SDR, cSDR, SI-SDR, "
                 "0-100 for fullness, bleedless, L1-freq; higher is better everywhere")
    lines += partial
    return "\n".join(lines)
