"""SDR on signals with known answers, and folder evaluation."""
import numpy as np
import pytest

from ftlib import audio
from ftlib.evaluate import evaluate_folder, format_table, sdr


def test_sdr_known_values():
    rng = np.random.default_rng(0)
    s = rng.standard_normal((2, 44100))
    assert sdr(s, np.zeros_like(s)) == pytest.approx(0.0, abs=1e-6)
    assert sdr(s, 0.9 * s) == pytest.approx(20.0, abs=1e-6)  # error = 0.1 s
    noise = rng.standard_normal(s.shape)
    noise *= np.sqrt((s**2).sum() / (noise**2).sum()) / 10 ** (12 / 20)  # 12 dB below s
    assert sdr(s, s + noise) == pytest.approx(12.0, abs=1e-6)
    assert sdr(s, s) > 100
    with pytest.raises(ValueError, match="shape"):
        sdr(s, s[:, :10])


def test_evaluate_folder_from_estimates(tmp_path):
    rng = np.random.default_rng(1)
    inst, voc = (rng.standard_normal((2, 8000)) * 0.1).astype(np.float32), (rng.standard_normal((2, 8000)) * 0.05).astype(np.float32)
    song = tmp_path / "songs" / "a"
    audio.save(song / "mixture.wav", inst + voc)
    audio.save(song / "vocals.wav", voc)
    audio.save(tmp_path / "est" / "a_Instruments.wav", inst + 0.1 * voc)
    rows = evaluate_folder(tmp_path / "songs", estimates=tmp_path / "est")
    assert [r["song"] for r in rows] == ["a", "mean"]
    assert rows[0]["sdr_instrumental"] == pytest.approx(sdr(inst, inst + 0.1 * voc), abs=1e-4)
    assert rows[0]["sdr_vocals"] == pytest.approx(20.0, abs=1e-3)  # vocals = mixture - estimate = 0.9 voc
    assert rows[0]["input_sdr_vocals"] == pytest.approx(sdr(voc, inst + voc), abs=1e-4)
    assert rows[0]["improvement_vocals"] == pytest.approx(rows[0]["sdr_vocals"] - rows[0]["input_sdr_vocals"])
    assert "improvement_vocals" in format_table(rows)
