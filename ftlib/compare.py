"""Paired comparisons of separation systems scored on the same songs (:class:`ftlib.evaluate.Evaluation`).

For every metric and every system after the first (the baseline): the per-song differences
``system - baseline``, their mean and median with percentile bootstrap intervals over songs (seeded,
:data:`ftlib.evaluate.BOOTSTRAP`), the songs the system wins, loses and ties, and a two-sided
Wilcoxon signed-rank test of the differences. Every metric is higher-is-better, so a positive
difference favours the system.

Zero differences (a song both systems score equally) are dropped before ranking (Wilcoxon's own
treatment, ``zero_method="wilcox"``) and counted as ties; tied non-zero differences share their mean
rank. ``scipy.stats.wilcoxon`` then takes the exact null distribution for up to 50 distinct non-zero
differences, exhaustive permutations for up to 13 with ties or zeros, and the tie-corrected normal
approximation otherwise. When every song ties there is no evidence of a difference: p is 1 and the
note says so. A song where a metric is undefined for either system (a silent reference) drops out
of that metric's pairs; the counts say how many songs each figure covers. The p-values are not
corrected for the many metrics and systems compared.

Evaluations of different songs are refused (:func:`check_same_songs`): names, reference-file
hashes and lengths in samples must agree.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy import stats

from ftlib.atomic import write_json
from ftlib.errors import DataError
from ftlib.evaluate import BOOTSTRAP, Evaluation, column_label, column_parts, describe, metric_columns, write_csv

__all__ = ["Comparison", "best_counts", "check_same_songs", "compare", "format_comparison", "paired_differences",
           "signed_rank_test", "song_differences", "unique_names"]

FORMAT = "ftlib-comparison"
TEST = {"name": "Wilcoxon signed-rank", "zero_method": "wilcox", "alternative": "two-sided", "method": "auto"}


# ------------------------------------------------------------------------------------ songs

def _song_mismatch(name: str, a: dict, b: dict) -> str:
    """Why two fingerprint entries of one song differ ("" when they agree)."""
    reasons = []
    files = sorted(set(a.get("sha256", {})) | set(b.get("sha256", {})))
    changed = [f for f in files if a.get("sha256", {}).get(f) != b.get("sha256", {}).get(f)]
    if changed:
        reasons.append(f"{', '.join(changed)} reference content differs")
    if "samples" in a and "samples" in b and a["samples"] != b["samples"]:
        reasons.append(f"{a['samples']} against {b['samples']} samples")
    return "; ".join(reasons)


def song_differences(evaluations: Sequence[Evaluation]) -> list[str]:
    """Every way the evaluations' songs differ (missing songs, other content or length, another
    sample rate), each naming the song and the systems; empty when they are the same songs."""
    problems = []
    rates = {e.system: e.fingerprint.get("sample_rate") for e in evaluations if e.fingerprint.get("sample_rate")}
    if len(set(rates.values())) > 1:
        problems.append("sample rates differ (" + ", ".join(f"{s}: {r} Hz" for s, r in rates.items()) + ")")
    index = [{s["name"]: s for s in e.fingerprint.get("songs", [])} for e in evaluations]
    for name in sorted(set().union(*index)):
        missing = [e.system for e, songs in zip(evaluations, index) if name not in songs]
        if missing:
            problems.append(f"song {name!r} missing from {', '.join(missing)}")
            continue
        for e, songs in zip(evaluations[1:], index[1:]):
            reason = _song_mismatch(name, index[0][name], songs[name])
            if reason:
                problems.append(f"song {name!r} differs between {evaluations[0].system} and {e.system}: {reason}")
    return problems


def check_same_songs(evaluations: Sequence[Evaluation]) -> None:
    """Raise DataError naming every song that differs unless all evaluations are of the same songs."""
    problems = song_differences(evaluations)
    if problems:
        raise DataError("the evaluations are not of the same songs: " + "; ".join(problems) +
                        "; evaluate every system on the same song folder")


def unique_names(names: Sequence[str]) -> list[str]:
    """``["a", "b", "a"]`` -> ``["a", "b", "a (2)"]``."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name} ({seen[name]})")
    return out


# ------------------------------------------------------------------------------- statistics

def signed_rank_test(differences: np.ndarray) -> dict:
    """Two-sided Wilcoxon signed-rank test of paired differences (module docstring for zeros and ties):
    ``{"statistic", "p", "note"}``; p is None without any difference to test."""
    d = np.asarray(differences, np.float64)
    d = d[~np.isnan(d)]
    if len(d) == 0:
        return {"statistic": None, "p": None, "note": "no song defines the metric for both systems"}
    if not np.any(d):
        return {"statistic": 0.0, "p": 1.0, "note": "every song ties"}
    result = stats.wilcoxon(d, zero_method=TEST["zero_method"], alternative=TEST["alternative"], method=TEST["method"])
    return {"statistic": float(result.statistic), "p": float(result.pvalue), "note": ""}


def paired_differences(baseline: np.ndarray, other: np.ndarray, songs: Sequence[str], **bootstrap) -> dict:
    """``other - baseline`` per song (``[N]`` each, NaN: undefined) summarised: :func:`describe`'s
    mean, median, intervals and counts, plus ``wins``, ``losses``, ``ties``, the Wilcoxon test
    and the per-song ``differences``."""
    d = np.asarray(other, np.float64) - np.asarray(baseline, np.float64)
    defined = d[~np.isnan(d)]
    out = describe(d, songs, **bootstrap)
    out.update(wins=int((defined > 0).sum()), losses=int((defined < 0).sum()), ties=int((defined == 0).sum()),
               test=signed_rank_test(d), differences={s: float(v) for s, v in zip(songs, d)})
    return out


def best_counts(values: np.ndarray) -> list[int]:
    """Songs on which each system scores highest, ``[systems, songs]`` -> ``[systems]``; a tie for
    the best counts for every tied system; songs undefined for any system are left out."""
    values = np.asarray(values, np.float64)
    kept = values[:, ~np.isnan(values).any(0)]
    if kept.shape[1] == 0:
        return [0] * len(values)
    return [int(n) for n in (kept == kept.max(0)).sum(1)]


# ------------------------------------------------------------------------------- comparison

@dataclasses.dataclass
class Comparison:
    """Systems compared metric by metric against the first (see the module docstring).

    ``values``: column -> ``[systems, songs]`` per-song scores (NaN: undefined); ``summaries``:
    column -> system -> :func:`ftlib.evaluate.describe` plus ``best``; ``paired``: column ->
    system (all but the first) -> :func:`paired_differences`.
    """

    systems: list[str]
    songs: list[str]
    columns: list[str]
    values: dict[str, np.ndarray]
    summaries: dict[str, dict[str, dict]]
    paired: dict[str, dict[str, dict]]
    fingerprint: dict
    bootstrap: dict
    dropped: list[str] = dataclasses.field(default_factory=list)  # columns not every evaluation has

    @property
    def baseline(self) -> str:
        return self.systems[0]

    def rows(self) -> list[dict]:
        """One row per metric column and system: its mean and median (with intervals) and, against
        the baseline, the differences, wins/losses/ties and the test (what ``--csv`` writes)."""
        out = []
        for column in self.columns:
            _, metric, stem = column_parts(column)
            for system in self.systems:
                s = self.summaries[column][system]
                row = {"metric": metric, "stem": stem, "system": system, "baseline": self.baseline,
                       "songs": s["songs"], **_flat(s, ""), "best": s["best"]}
                p = self.paired[column].get(system)
                if p is not None:
                    row.update(paired_songs=p["songs"], **_flat(p, "diff_"), wins=p["wins"], losses=p["losses"],
                               ties=p["ties"], wilcoxon_statistic=p["test"]["statistic"], p_value=p["test"]["p"],
                               note=p["test"]["note"])
                out.append(row)
        return out

    def to_json(self) -> dict:
        metrics = {}
        for c in self.columns:
            metrics[c] = {"label": column_label(c),
                          "values": {s: dict(zip(self.songs, v.tolist())) for s, v in zip(self.systems, self.values[c])},
                          "summary": self.summaries[c], "paired": self.paired[c]}
        return {"format": FORMAT, "version": 1, "systems": self.systems, "baseline": self.baseline, "songs": self.songs,
                "fingerprint": self.fingerprint, "bootstrap": {"method": "percentile", **self.bootstrap}, "test": TEST,
                "dropped_columns": self.dropped, "metrics": metrics}

    def save(self, path: str | Path) -> Path:
        """Write :meth:`to_json` atomically (undefined values as null)."""
        return write_json(path, self.to_json())

    def save_csv(self, path: str | Path) -> Path:
        return write_csv(self.rows(), path)


def _flat(stats_: dict, prefix: str) -> dict:
    out = {}
    for stat in ("mean", "median"):
        ci = stats_[f"{stat}_ci"] or (float("nan"), float("nan"))
        out.update({f"{prefix}{stat}": stats_[stat], f"{prefix}{stat}_low": ci[0], f"{prefix}{stat}_high": ci[1]})
    return out


def compare(evaluations: Sequence[Evaluation], columns: Sequence[str] | None = None, **bootstrap) -> Comparison:
    """Compare evaluations of the same songs, the first being the baseline.

    ``columns``: metric columns such as ``"sdr_vocals"`` (default: every estimate column all the
    evaluations have; the others are listed in ``dropped``). ``bootstrap``: ``confidence``,
    ``n_resamples``, ``seed``. Raises DataError when the songs differ.
    """
    if not evaluations:
        raise ValueError("give at least one evaluation")
    check_same_songs(evaluations)
    systems = unique_names([e.system for e in evaluations])
    songs = [s["name"] for s in evaluations[0].fingerprint["songs"]]
    have = [set(metric_columns(e.rows, ("estimate",))) for e in evaluations]
    every = [c for c in metric_columns(evaluations[0].rows, ("estimate",)) if all(c in h for h in have)]
    dropped = sorted(set().union(*have) - set(every))
    if columns is not None:
        absent = [c for c in columns if c not in every]
        if absent:
            raise DataError(f"not every evaluation has {', '.join(absent)}; available: {', '.join(every)}")
    columns = list(columns or every)
    by_song = [{r["song"]: r for r in e.rows} for e in evaluations]
    options = {**BOOTSTRAP, **bootstrap}
    values, summaries, paired = {}, {}, {}
    for c in columns:
        values[c] = np.array([[_value(rows.get(song, {}).get(c)) for song in songs] for rows in by_song])
        best = best_counts(values[c])
        summaries[c] = {s: {**describe(v, songs, **options), "best": b} for s, v, b in zip(systems, values[c], best)}
        paired[c] = {s: paired_differences(values[c][0], v, songs, **options) for s, v in zip(systems[1:], values[c][1:])}
    return Comparison(systems, songs, columns, values, summaries, paired, evaluations[0].fingerprint, options, dropped)


def from_rows(systems: dict[str, Sequence[dict]], columns: Sequence[str] | None = None, **bootstrap) -> Comparison:
    """:func:`compare` of per-song score rows (``system -> rows`` with a ``"song"`` key, as
    :func:`ftlib.evaluate.evaluate_folder` and the recipes' ``evaluate`` return them; a
    ``"summary"`` row is ignored), the songs matched by name: for systems scored in one process on
    one folder, where there are no files to fingerprint. Raises DataError when the names differ."""
    evaluations = []
    for system, rows in systems.items():
        rows = [r for r in rows if r.get("song") != "summary"]
        evaluations.append(Evaluation(system, list(rows), {"songs": [{"name": r["song"]} for r in rows]}))
    return compare(evaluations, columns, **bootstrap)


def verdict(comparison: Comparison, column: str = "sdr_vocals", system: str | None = None) -> str:
    """One sentence on ``system`` (default: the second) against the baseline for one metric column
    (:func:`difference_sentence`)."""
    system = system or comparison.systems[1]
    return difference_sentence(comparison.paired[column][system], column_label(column), system, comparison.baseline)


def difference_sentence(paired: dict, label: str, system: str, baseline: str, lower_is_better: bool = False,
                        unit: str = "songs") -> str:
    """``label: system - baseline = mean [interval] over n songs, higher on w/n, Wilcoxon p = ...: call``
    from a :func:`paired_differences` result; the call is "within noise" when the interval includes
    0, else which system is better (``lower_is_better`` for errors and losses); ``unit``: what was
    paired (songs, chunks)."""
    ci = paired["mean_ci"]
    if ci is None:
        call = f"too few {unit} to tell"
    elif ci[0] <= 0 <= ci[1]:
        call = "within noise (the interval includes 0)"
    else:
        better = (paired["mean"] < 0) if lower_is_better else (paired["mean"] > 0)
        call = f"{system} is {'better' if better else 'worse'} (the interval excludes 0)"
    wins = paired["losses"] if lower_is_better else paired["wins"]  # songs where the system scores better
    total = paired["wins"] + paired["losses"] + paired["ties"]
    return (f"{label}: {system} - {baseline} = {_num(paired['mean'], True)} {_ci(ci)} over {paired['songs']} {unit}, "
            f"{'lower' if lower_is_better else 'higher'} on {wins}/{total}, Wilcoxon p = {_p(paired['test']['p'])}: "
            f"{call}")


def _value(value) -> float:
    return float("nan") if value is None else float(value)


# ------------------------------------------------------------------------------------ table

def _num(value, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:+.2f}" if signed else f"{value:.2f}"


def _ci(ci) -> str:
    return f"[{ci[0]:+.2f}, {ci[1]:+.2f}]" if ci else "[n/a]"


def _p(p) -> str:
    return "n/a" if p is None else f"{p:.2g}"


def format_comparison(comparison: Comparison) -> str:
    """A table a paper can quote: per metric, each system's mean, median and best-song count, and
    against the baseline the mean and median difference with intervals, W/L/T and the p-value."""
    c = comparison
    width = max(8, *(len(s) for s in c.systems))
    head = (f"{'system':<{width}}  {'mean':>7}  {'median':>7}  {'best':>4}  {'songs':>5}  {'Δ mean [95% CI]':>24}  "
            f"{'Δ median [95% CI]':>24}  {'W/L/T':>9}  {'p':>7}")
    lines = []
    for column in c.columns:
        lines += ["", f"{column_label(column)}, Δ = system - {c.baseline}", head]
        for system in c.systems:
            s, p = c.summaries[column][system], c.paired[column].get(system)
            line = (f"{system:<{width}}  {_num(s['mean']):>7}  {_num(s['median']):>7}  {s['best']:>4}  "
                    f"{(p or s)['songs']:>5}")
            if p is not None:
                wlt = f"{p['wins']}/{p['losses']}/{p['ties']}"
                line += (f"  {_num(p['mean'], True):>7} {_ci(p['mean_ci']):>16}  {_num(p['median'], True):>7} "
                         f"{_ci(p['median_ci']):>16}  {wlt:>9}  {_p(p['test']['p']):>7}")
                line += f"  ({p['test']['note']})" if p["test"]["note"] else ""
            lines.append(line)
    b = c.bootstrap
    lines += ["", f"{len(c.songs)} songs; higher is better for every metric; best: songs on which the system scores "
              "highest (ties count for each);",
              "songs: songs defining the metric (for both systems in the Δ rows); "
              f"{b['confidence']:.0%} percentile bootstrap intervals over songs ({b['n_resamples']} resamples, "
              f"seed {b['seed']});",
              f"W/L/T: songs the system wins, loses and ties against {c.baseline}; p: two-sided Wilcoxon signed-rank "
              "test of the per-song differences",
              "(zero differences dropped), not corrected for multiple comparisons"]
    if c.dropped:
        lines.append(f"not compared (missing from some evaluation): {', '.join(c.dropped)}")
    return "\n".join(lines).lstrip("\n")

