"""SDR, cSDR and SI-SDR on signals with known answers, and folder evaluation."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from ftlib import audio
from ftlib.evaluate import evaluate_folder, format_summary, format_table, framewise_sdr, sdr, si_sdr, summary_row


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
