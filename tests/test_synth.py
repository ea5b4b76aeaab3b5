"""Tests of the synthetic song generator (ftlib.data.synth)."""
import shutil
import time

import numpy as np
import pytest
import soundfile as sf

from ftlib.data import synth
from ftlib.data.synth import SynthConfig, dataset_dir, generate, make_instrumental, make_song, make_vocal
from ftlib.errors import ConfigError

TINY = SynthConfig.preset("tiny")
SR = 44100
TINY_FILES = [
    "instrumentals/inst_000.wav", "instrumentals/inst_001.wav",
    "valid/song_000/instrumental.wav", "valid/song_000/mixture.wav", "valid/song_000/vocals.wav",
    "vocals/vocal_000.wav", "vocals/vocal_001.wav",
]


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("synth") / "tiny", TINY)


def _read(path):
    return sf.read(path, dtype="float32")[0]


def _wavs(root):
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*.wav"))


def _read(path):
    return sf.read(str(path), dtype="float32", always_2d=True)[0].T


def _silent_fraction(audio, sr=SR):
    """Fraction of 50 ms frames of ``[C, S]`` audio whose RMS is below -80 dBFS."""
    size = int(0.05 * sr)
    frames = audio[:, :audio.shape[1] // size * size].reshape(audio.shape[0], -1, size)
    return float((np.sqrt((frames ** 2).mean(axis=(0, 2))) < 1e-4).mean())


def _pitch_steps(x, sr=SR, size=4096, hop=512):
    """|pitch change| in cents between consecutive loud frames of mono ``x``, from the strongest
    spectral peak in 80-2000 Hz (any harmonic moves by the same cents); jumps between harmonics dropped."""
    frames = np.lib.stride_tricks.sliding_window_view(x, size)[::hop] * np.hanning(size)
    loud = np.sqrt((frames ** 2).mean(axis=1))
    mag = np.log(np.abs(np.fft.rfft(frames[loud > 0.3 * loud.max()])) + 1e-9)
    lo, hi = int(80 * size / sr), int(2000 * size / sr)
    peak = lo + np.argmax(mag[:, lo:hi], axis=1)
    rows = np.arange(len(peak))
    left, mid, right = mag[rows, peak - 1], mag[rows, peak], mag[rows, peak + 1]
    steps = np.abs(np.diff(1200 * np.log2(peak + 0.5 * (left - right) / (left - 2 * mid + right))))
    return steps[steps < 100]


def test_layout_and_formats(tiny_root):
    assert _wavs(tiny_root) == TINY_FILES
    assert SynthConfig.from_json(tiny_root / "synth.json") == TINY
    for rel in TINY_FILES:
        info = sf.info(str(tiny_root / rel))
        assert (info.channels, info.samplerate, info.subtype) == (2, SR, "FLOAT")
        audio = _read(tiny_root / rel)
        assert audio.shape == (2, round(TINY.duration * SR))
        assert np.isfinite(audio).all() and 0.05 < np.abs(audio).max() <= 1.0


def test_deterministic_per_file_seeds(tiny_root, tmp_path):
    again = generate(tmp_path / "again", TINY)
    for rel in TINY_FILES:
        np.testing.assert_array_equal(_read(again / rel), _read(tiny_root / rel), err_msg=rel)
    # another seed changes every file; fewer stems leave the remaining ones unchanged
    other = generate(tmp_path / "other", TINY.replace(seed=1))
    for rel in TINY_FILES:
        assert not np.array_equal(_read(other / rel), _read(tiny_root / rel)), rel
    fewer = generate(tmp_path / "fewer", TINY.replace(num_instrumentals=1))
    first = "instrumentals/inst_000.wav"
    np.testing.assert_array_equal(_read(fewer / first), _read(tiny_root / first))


def test_valid_song_is_exact_sum_of_fresh_stems(tiny_root):
    song = tiny_root / "valid" / "song_000"
    mixture, vocals, instrumental = (_read(song / f"{k}.wav") for k in ("mixture", "vocals", "instrumental"))
    np.testing.assert_allclose(mixture, instrumental + vocals, atol=1e-6)
    assert np.abs(mixture).max() <= 1.0
    for rel in TINY_FILES[:2] + TINY_FILES[-2:]:
        training = _read(tiny_root / rel)
        assert not np.allclose(training, vocals) and not np.allclose(training, instrumental)


@pytest.mark.parametrize("gain_db", [(-3.0, 3.0), (8.0, 8.0)])
def test_make_song_gain_and_headroom(gain_db):
    song = make_song(np.random.default_rng(5), 2.0, vocal_gain_db=gain_db)
    assert np.array_equal(song["mixture"], song["instrumental"] + song["vocals"])
    assert all(x.dtype == np.float32 and x.shape == (2, 2 * SR) for x in song.values())
    assert np.abs(song["mixture"]).max() <= 1.0
    energy = {k: np.sum(song[k].astype(float) ** 2) for k in ("vocals", "instrumental")}
    ratio_db = 10 * np.log10(energy["vocals"] / energy["instrumental"])
    assert gain_db[0] - 0.01 <= ratio_db <= gain_db[1] + 0.01


def test_vocals_have_rests_and_voice(tiny_root):
    stems = [_read(tiny_root / rel) for rel in TINY_FILES if "vocal" in rel]
    stems += [make_vocal(np.random.default_rng(seed), duration) for seed in range(4) for duration in (3.0, 12.0)]
    for audio in stems:
        assert 0.0 < _silent_fraction(audio) < 0.6
    # instrumentals play throughout
    assert _silent_fraction(make_instrumental(np.random.default_rng(0), 6.0)) < 0.1


def test_vocals_are_low_band_harmonic_with_moving_pitch():
    vocal = make_vocal(np.random.default_rng(3), 8.0)[0]
    power = np.abs(np.fft.rfft(vocal)) ** 2
    freqs = np.fft.rfftfreq(len(vocal), 1 / SR)
    assert power[freqs < 4000].sum() > 0.8 * power.sum()
    assert np.median(_pitch_steps(vocal)) > 2.0  # vibrato: pitch moves frame to frame (drift alone: < 1)
    # an instrument note keeps its pitch
    recipe = synth._recipes(np.random.default_rng(0))["organ"]
    assert np.median(_pitch_steps(synth._note(recipe, 57, 2 * SR, SR))) < 0.3


def test_harmonics_stay_below_nyquist():
    for sr in (8000, 22050, 44100):
        for f0 in (55.0, 440.0, 1500.0):
            count = len(synth._harmonics(lambda k, f: k ** -1.0, f0, 20000, sr))
            assert count >= 1 and (count == 1 or count * f0 < sr / 2)


def test_reuse_and_overwrite(tiny_root, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(tiny_root, root)
    files = [p for p in root.rglob("*") if p.is_file()]
    stamps = {p: p.stat().st_mtime_ns for p in files}
    time.sleep(0.02)
    assert generate(root, TINY) == root
    assert {p: p.stat().st_mtime_ns for p in files} == stamps
    # a missing file is written again, identically, and nothing else
    missing = root / "vocals" / "vocal_001.wav"
    original = _read(missing)
    missing.unlink()
    generate(root, TINY)
    np.testing.assert_array_equal(_read(missing), original)
    assert all(p.stat().st_mtime_ns == stamps[p] for p in files if p not in (missing, root / "synth.json"))
    generate(root, TINY, overwrite=True)
    assert all(p.stat().st_mtime_ns != stamps[p] for p in files)
    # a smaller config drops the stems it no longer names
    generate(root, TINY.replace(num_vocals=1, num_valid=1, valid_duration=1.0, seed=3))
    assert not missing.exists() and SynthConfig.from_json(root / "synth.json").num_vocals == 1


def test_dataset_dir_uses_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FTLIB_CACHE", str(tmp_path))
    path = dataset_dir(TINY)
    assert path.parent == tmp_path / "synth"
    assert path == dataset_dir(SynthConfig.preset("tiny")) != dataset_dir(TINY.replace(seed=1))


def test_config_validation():
    with pytest.raises(ConfigError):
        SynthConfig(num_vocals=0)
    with pytest.raises(ConfigError):
        SynthConfig(vocal_gain_db=(3.0, -3.0))
    with pytest.raises(ConfigError):
        SynthConfig(duration=0.0)
    assert SynthConfig.preset("tiny").num_valid == 1
