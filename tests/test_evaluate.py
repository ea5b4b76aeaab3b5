"""Every metric on signals with known answers, summaries with intervals, and folder evaluation
with bad input (other lengths, rates and channel counts, silent references, missing estimates)."""
import csv
import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
import scipy.signal as ss

from ftlib import audio, cli
from ftlib.errors import DataError
from ftlib.evaluate import (Evaluation, bleedless, bleedless_fullness, bootstrap_interval, describe, evaluate_folder,
                            file_sha256, format_notes, format_summary, format_table, framewise_sdr, fullness,
                            hearing_filter, l1_freq, log_wmse, run_evaluation, score_song, sdr, si_sdr, summarise,
                            summary_row)

SR = 44100
PERFECT_LOG_WMSE = -4 * math.log(1e-8)


def _noise_below(s: np.ndarray, db: float, rng, orthogonal: bool = False) -> np.ndarray:
    noise = rng.standard_normal(s.shape)
    if orthogonal:
        noise -= (noise.ravel() @ s.ravel()) / (s.ravel() @ s.ravel()) * s
    return noise * np.sqrt((s**2).sum() / (noise**2).sum()) / 10 ** (db / 20)


def _museval_metrics():
    """museval's BSS-eval module, loaded alone: importing the package needs ffmpeg (via stempeg)."""
    spec = importlib.util.find_spec("museval")
    if spec is None:
        pytest.skip("museval is not installed")
    module_spec = importlib.util.spec_from_file_location(
        "museval_metrics", Path(spec.submodule_search_locations[0]) / "metrics.py")
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def test_sdr_known_values():
    rng = np.random.default_rng(0)
    s = rng.standard_normal((2, 44100))
    assert sdr(s, np.zeros_like(s)) == pytest.approx(0.0, abs=1e-6)
    assert sdr(s, 0.9 * s) == pytest.approx(20.0, abs=1e-6)  # error = 0.1 s
    assert sdr(s, s + _noise_below(s, 12, rng)) == pytest.approx(12.0, abs=1e-6)
    assert sdr(s, s) > 100
    with pytest.raises(ValueError, match="shape"):
        sdr(s, s[:, :10])


def test_si_sdr_ignores_scale():
    rng = np.random.default_rng(1)
    s = rng.standard_normal((2, 8000))
    assert si_sdr(s, 0.3 * s) > 100
    noise = _noise_below(s, 9, rng, orthogonal=True)
    assert si_sdr(s, 2 * (s + noise)) == pytest.approx(9.0, abs=1e-6)


def test_framewise_sdr_skips_silent_windows_and_matches_museval():
    rng = np.random.default_rng(2)
    refs = rng.standard_normal((2, 2, 44100 * 3 + 500)) * 0.1  # 3 windows, a trailing partial one dropped
    refs[0, :, 44100:88200] = 0  # vocals silent in window 1: museval skips it for every stem
    ests = refs + rng.standard_normal(refs.shape) * np.array([0.01, 0.05])[:, None, None]
    frames = framewise_sdr(refs, ests)
    assert frames.shape == (2, 3) and np.isnan(frames[:, 1]).all() and np.isfinite(frames[:, [0, 2]]).all()
    assert frames[0, 0] == pytest.approx(sdr(refs[0, :, :44100], ests[0, :, :44100]), abs=1e-6)
    # what museval.evaluate(mode="v4") computes: BSS-eval v4 images, 1-s windows, whole-track filters
    expected = _museval_metrics().bss_eval(refs.transpose(0, 2, 1), ests.transpose(0, 2, 1), window=44100,
                                           hop=44100, framewise_filters=False, bsseval_sources_version=False)[0]
    np.testing.assert_allclose(frames, expected, atol=1e-6)


def test_summary_takes_the_median_of_csdr_and_the_mean_of_the_rest():
    rows = [{"song": str(i), "sdr_vocals": v, "csdr_vocals": v, "input_csdr_vocals": v, "improvement_vocals": v}
            for i, v in enumerate([1.0, 2.0, 6.0])]
    assert summary_row(rows) == {"song": "summary", "sdr_vocals": 3.0, "csdr_vocals": 2.0, "input_csdr_vocals": 2.0,
                                 "improvement_vocals": 3.0}


def test_evaluate_folder_from_estimates(tmp_path):
    rng = np.random.default_rng(1)
    inst = (rng.standard_normal((2, 100000)) * 0.1).astype(np.float32)
    voc = (rng.standard_normal((2, 100000)) * 0.05).astype(np.float32)
    for name in ("a", "b"):
        audio.save(tmp_path / "songs" / name / "mixture.wav", inst + voc)
        audio.save(tmp_path / "songs" / name / "vocals.wav", voc)
    audio.save(tmp_path / "est" / "a_Instruments.wav", inst + 0.1 * voc)
    audio.save(tmp_path / "est" / "b_Instruments_modelx.flac", inst + 0.1 * voc)  # written with --model-names
    rows = evaluate_folder(tmp_path / "songs", estimates=tmp_path / "est")
    assert [r["song"] for r in rows] == ["a", "b", "summary"]
    a = rows[0]
    assert a["sdr_instrumental"] == pytest.approx(sdr(inst, inst + 0.1 * voc), abs=1e-4)
    assert a["sdr_vocals"] == pytest.approx(20.0, abs=1e-3)  # vocals = mixture - estimate = 0.9 voc
    assert a["input_sdr_vocals"] == pytest.approx(sdr(voc, inst + voc), abs=1e-4)
    assert a["improvement_vocals"] == pytest.approx(a["sdr_vocals"] - a["input_sdr_vocals"])
    assert a["csdr_vocals"] == pytest.approx(20.0, abs=0.1)
    assert a["sisdr_vocals"] > 100  # 0.9 voc: only the scale is wrong
    assert rows[1]["sdr_vocals"] == pytest.approx(20.0, abs=0.1)  # 24-bit flac
    assert "improvement_vocals" in format_table(rows)
    summary = format_summary(rows)
    assert "cSDR" in summary and "SI-SDR" in summary and "2 songs" in summary
    (tmp_path / "est" / "a_Instruments_other.wav").write_bytes(b"")
    with pytest.raises(Exception, match="several estimates"):
        evaluate_folder(tmp_path / "songs", estimates=tmp_path / "est")


# ------------------------------------------------------------------------------- MSST's metrics

def _tone(seconds: float = 2.0, top: int = 40) -> np.ndarray:
    """Harmonics of 220 Hz up to ``top`` (1/k amplitudes), the same in both channels: ``[2, S]``."""
    t = np.arange(int(seconds * SR)) / SR
    wave = sum(np.sin(2 * np.pi * 220 * k * t + k) / k for k in range(1, top + 1)) * 0.1
    return np.stack([wave, wave])


def test_identical_signals_score_perfectly():
    s = _tone()
    assert bleedless_fullness(s, s) == (100.0, 100.0)
    assert l1_freq(s, s) == 100.0
    assert log_wmse(s, s, s) == pytest.approx(PERFECT_LOG_WMSE)  # -4 ln(0 + 1e-8)
    assert sdr(s, s) > 100 and si_sdr(s, s) > 100


@pytest.mark.parametrize("gain", [0.5, 0.9, 1.1, 2.0])
def test_known_gain(gain):
    s = _tone()
    est = gain * s
    # every mel bin moves by 20 log10(gain) dB (the 80-dB floor moves with the maximum)
    change = abs(20 * math.log10(gain))
    expected = (100.0, 100 / (1 + change)) if gain < 1 else (100 / (1 + change), 100.0)
    assert bleedless_fullness(s, est) == pytest.approx(expected, rel=1e-5)
    assert (fullness(s, est), bleedless(s, est)) == pytest.approx(expected[::-1], rel=1e-5)
    # L1 of magnitudes is linear in |gain - 1|: 10 mean|S| follows from the silent estimate's score
    ten_mean = 100 / l1_freq(s, 0 * s) - 1
    assert l1_freq(s, est) == pytest.approx(100 / (1 + abs(gain - 1) * ten_mean), rel=1e-5)
    # against the reference as its own mixture the weighted error is (gain - 1) x the mixture
    assert log_wmse(s, est, s) == pytest.approx(-4 * math.log((gain - 1) ** 2), abs=1e-3)
    assert sdr(s, est) == pytest.approx(-20 * math.log10(abs(gain - 1)), abs=1e-6)
    assert si_sdr(s, est) > 100


def test_added_noise_lowers_bleedless_most():
    s, rng = _tone(), np.random.default_rng(0)
    noise = rng.standard_normal(s.shape) * np.sqrt((s**2).mean())
    scores = []
    for db in (40, 20, 10):
        est = s + noise / 10 ** (db / 20)
        scores.append((*bleedless_fullness(s, est), l1_freq(s, est), log_wmse(s, est, s), sdr(s, est)))
    scores = np.array(scores)  # [noise levels, metrics], quietest noise first
    assert (np.diff(scores, axis=0) < 0).all(), "every metric falls as the noise grows"
    assert (scores[:, 0] < scores[:, 1]).all(), "noise adds energy: bleedless below fullness"
    assert scores[1, 4] == pytest.approx(20, abs=0.05)


def test_missing_bands_lower_fullness_only():
    s = _tone()
    est = ss.sosfiltfilt(ss.butter(8, 2000, fs=SR, output="sos"), s)  # harmonics above 2 kHz removed
    bleed, full = bleedless_fullness(s, est)
    assert full < 20 and bleed > 90  # the filter's edge moves what is left a little
    assert l1_freq(s, est) < 100 and log_wmse(s, est, s) < PERFECT_LOG_WMSE


def test_log_wmse_is_defined_on_silent_references():
    mixture = _tone()
    silent = np.zeros_like(mixture)
    assert log_wmse(silent, silent, mixture) == pytest.approx(PERFECT_LOG_WMSE)
    assert log_wmse(silent, 0.1 * mixture, mixture) == pytest.approx(-4 * math.log(0.01), abs=1e-3)
    assert log_wmse(silent, 0.01 * mixture, mixture) > log_wmse(silent, 0.1 * mixture, mixture)


def test_log_wmse_channel_pairing():
    rng = np.random.default_rng(1)
    ref = rng.standard_normal((2, SR)) * np.array([[0.1], [0.03]])  # channels of different loudness
    mix, est = ref + 0.05 * rng.standard_normal(ref.shape), ref + 0.02 * rng.standard_normal(ref.shape)
    # MSST's cross-channel average equals the per-channel one while no sample is gated: ln(E / r^2) separates
    assert log_wmse(ref, est, mix) == pytest.approx(log_wmse(ref, est, mix, cross_channel=False), abs=1e-4)


def test_hearing_filter_shape():
    taps = hearing_filter()
    assert taps.shape == (4000,) and taps.argmax() == 1999
    freqs, response = ss.freqz(taps, worN=[50, 1000, 3000, 16000], fs=SR)
    db = 20 * np.log10(np.abs(response))
    assert db[0] < db[1] - 10, "the 120 Hz high-pass cuts 50 Hz"
    assert db[2] > db[1], "the 1.5 kHz shelf lifts 3 kHz"
    assert db[3] < db[2] - 3, "the 10 kHz low-pass (twice) cuts 16 kHz"
    assert hearing_filter(22050).shape == (4000,)  # cut-offs clamped below Nyquist


# ------------------------------------------------------------------------- songs and summaries

def test_silent_reference_skips_the_sdr_family_with_a_note():
    mixture = _tone()
    truth = {"vocals": np.zeros_like(mixture), "instrumental": mixture}
    row = score_song("instrumental-only", truth, {"vocals": 0.01 * mixture, "instrumental": 0.99 * mixture}, mixture)
    for column in ("sdr_vocals", "csdr_vocals", "sisdr_vocals", "input_sdr_vocals", "improvement_vocals"):
        assert math.isnan(row[column]), column
    assert math.isnan(row["csdr_instrumental"])  # museval skips windows where any reference stem is silent
    assert math.isfinite(row["sdr_instrumental"]) and math.isfinite(row["log_wmse_vocals"])
    assert math.isfinite(row["fullness_vocals"]) and row["bleedless_vocals"] < 100
    assert "vocals reference silent" in row["note"] and "cSDR of instrumental undefined" in row["note"]
    good = score_song("ok", {"vocals": 0.5 * mixture, "instrumental": 0.5 * mixture},
                      {"vocals": 0.5 * mixture, "instrumental": 0.5 * mixture}, mixture)
    rows = [good, row]
    summary = summarise(rows)
    assert summary["sdr_vocals"]["songs"] == 1 and summary["sdr_vocals"]["skipped"] == ["instrumental-only"]
    assert summary["log_wmse_vocals"]["songs"] == 2
    assert summary_row(rows)["sdr_vocals"] == pytest.approx(good["sdr_vocals"])  # NaN left out, not propagated
    text = format_summary(rows)
    assert "SDR vocals (dB) covers 1 of 2 songs, skipping instrumental-only" in text and "nan" not in text
    assert "n/a" in format_table(rows)


def test_score_song_metric_subset():
    s = _tone(1.0)
    row = score_song("x", {"vocals": s, "instrumental": s}, {"vocals": s, "instrumental": s}, 2 * s, metrics=["sdr"])
    assert set(row) == {"song", "note", "sdr_vocals", "sdr_instrumental", "input_sdr_vocals", "input_sdr_instrumental",
                        "improvement_vocals", "improvement_instrumental"}
    with pytest.raises(ValueError, match="unknown metrics"):
        score_song("x", {"vocals": s, "instrumental": s}, {"vocals": s, "instrumental": s}, s, metrics=["pesq"])


def test_bootstrap_intervals_are_seeded_and_cover_the_statistic():
    values = np.random.default_rng(0).normal(5.0, 2.0, 30)
    low, high = bootstrap_interval(values)
    assert low < values.mean() < high and bootstrap_interval(values) == (low, high)
    assert bootstrap_interval(values, seed=1) != (low, high)
    low, high = bootstrap_interval(values, "median", confidence=0.5)
    assert low <= np.median(values) <= high
    assert bootstrap_interval([1.0]) is None and bootstrap_interval([2.0, 2.0]) == (2.0, 2.0)
    stats = describe([1.0, np.nan, 3.0], ["a", "b", "c"])
    assert stats["songs"] == 2 and stats["skipped"] == ["b"] and stats["mean"] == 2.0 and stats["median"] == 2.0


# ----------------------------------------------------------------------------- folders, bad input

def _songs(root: Path, names=("a", "b", "c"), seconds: float = 1.5) -> tuple[dict, dict]:
    """Songs ``root/<name>/{mixture,vocals}.wav``; returns their instrumentals and vocals."""
    rng = np.random.default_rng(7)
    inst, voc = {}, {}
    for i, name in enumerate(names):
        n = int(seconds * SR)
        inst[name] = (rng.standard_normal((2, n)) * 0.1).astype(np.float32)
        voc[name] = (_tone(seconds, 10 + i) * 0.5).astype(np.float32)
        audio.save(root / name / "mixture.wav", inst[name] + voc[name])
        audio.save(root / name / "vocals.wav", voc[name])
    return inst, voc


def test_bad_estimates_are_converted_trimmed_and_noted(tmp_path):
    inst, voc = _songs(tmp_path / "songs")
    est = tmp_path / "est"
    audio.save(est / "a_Instruments.wav", np.pad(inst["a"] + 0.1 * voc["a"], ((0, 0), (0, 500))))  # 500 too long
    audio.save(est / "b_Instruments.wav", (inst["b"] + 0.1 * voc["b"])[:, :-300])  # 300 short
    resampled = ss.resample_poly(inst["c"][:1] + 0.1 * voc["c"][:1], 160, 147, axis=-1)  # mono at 48 kHz
    audio.save(est / "c_Instruments.wav", resampled, sample_rate=48000)
    audio.save(est / "c_Vocals.wav", 0.9 * voc["c"])
    result = run_evaluation(tmp_path / "songs", estimates=est)
    a, b, c = result.rows
    assert "instrumental estimate 500 samples longer than the reference: scored on the first" in a["note"]
    assert "no vocals estimate" in a["note"] and "instrumental estimate 300 samples shorter" in b["note"]
    assert "at 48000 Hz, resampled to 44100 Hz" in c["note"] and "1 channel(s), duplicated to 2" in c["note"]
    assert a["sdr_vocals"] == pytest.approx(20.0, abs=0.05)  # vocals = mixture - instrumental = 0.9 voc
    assert c["sdr_vocals"] == pytest.approx(20.0, abs=1e-3)
    assert all(math.isfinite(r[k]) for r in result.rows for k in r if k not in ("song", "note"))
    assert "note: a: " in format_notes(result.rows)
    (est / "b_Instruments.wav").unlink()
    (est / "c_Instruments.wav").unlink()
    with pytest.raises(DataError, match="for 2 of 3 songs: 'b', 'c'"):
        run_evaluation(tmp_path / "songs", estimates=est)


def test_evaluation_fingerprint_and_json_round_trip(tmp_path):
    inst, voc = _songs(tmp_path / "songs", names=("a", "b"))
    audio.save(tmp_path / "songs" / "b" / "vocals.wav", np.zeros_like(voc["b"]))  # a silent reference
    for name in ("a", "b"):
        audio.save(tmp_path / "est" / f"{name}_Instruments.wav", inst[name] + 0.1 * voc[name])
    result = run_evaluation(tmp_path / "songs", estimates=tmp_path / "est")
    songs = result.fingerprint["songs"]
    assert [s["name"] for s in songs] == ["a", "b"] and songs[0]["samples"] == voc["a"].shape[-1]
    assert songs[0]["sha256"]["vocals"] == file_sha256(tmp_path / "songs" / "a" / "vocals.wav")
    assert result.system == "est" and result.fingerprint["sample_rate"] == SR
    result.save(tmp_path / "e.json")
    data = json.loads((tmp_path / "e.json").read_text())
    assert data["songs"][1]["sdr_vocals"] is None and data["summary"]["sdr_vocals"]["songs"] == 1
    assert data["summary"]["sdr_vocals"]["mean_ci"] is None  # one song: no interval
    assert data["bootstrap"] == {"method": "percentile", "confidence": 0.95, "n_resamples": 9999, "seed": 0}
    loaded = Evaluation.load(tmp_path / "e.json")
    assert loaded.fingerprint == result.fingerprint and math.isnan(loaded.rows[1]["sdr_vocals"])
    assert loaded.rows[0]["fullness_vocals"] == result.rows[0]["fullness_vocals"]
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(DataError, match="not an ftlib evaluation"):
        Evaluation.load(tmp_path / "bad.json")


def test_cli_evaluate_writes_every_metric(tmp_path, capsys):
    inst, voc = _songs(tmp_path / "songs", names=("a", "b"))
    for name in ("a", "b"):
        audio.save(tmp_path / "est" / f"{name}_Instruments.wav", inst[name] + 0.1 * voc[name])
    code = cli.main(["evaluate", str(tmp_path / "songs"), "-e", str(tmp_path / "est"), "--quiet",
                     "--csv", str(tmp_path / "s.csv"), "--json", str(tmp_path / "s.json")])
    assert code == 0
    out = capsys.readouterr().out
    assert "fullness_vocals" in out and "log-WMSE" in out and "95% percentile bootstrap" in out
    rows = list(csv.DictReader((tmp_path / "s.csv").open()))
    assert [r["song"] for r in rows] == ["a", "b"]
    for stem in ("vocals", "instrumental"):
        for metric in ("fullness", "bleedless", "l1_freq", "log_wmse", "sisdr", "csdr", "sdr"):
            assert math.isfinite(float(rows[0][f"{metric}_{stem}"]))
            assert f"input_{metric}_{stem}" in rows[0]
    assert Evaluation.load(tmp_path / "s.json").system == "est"
