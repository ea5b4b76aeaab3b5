"""Log-mel analysis (librosa parity, band placement, shapes) and the Griffin-Lim vocoder."""
import librosa
import numpy as np
import pytest
import torch

from ftlib.errors import AudioError, ConfigError
from ftlib.mel import GriffinLim, MelConfig, MelSpectrogram, Vocoder, resize_width

TINY = MelConfig.preset("tiny")


def _tone(freq: float, seconds: float = 1.0, config: MelConfig = TINY) -> np.ndarray:
    t = np.arange(int(seconds * config.sample_rate)) / config.sample_rate
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.mark.slow  # librosa's first call compiles numba code
def test_matches_librosa_melspectrogram():
    rng = np.random.default_rng(0)
    audio = (_tone(440.0) + 0.1 * rng.standard_normal(TINY.sample_rate)).astype(np.float32)
    ours = torch.exp(MelSpectrogram(TINY)(torch.from_numpy(audio)))[0, 0].numpy()
    ref = librosa.feature.melspectrogram(y=audio, sr=TINY.sample_rate, n_fft=TINY.n_fft, hop_length=TINY.hop_length,
                                         n_mels=TINY.n_mels, power=1.0)
    np.testing.assert_allclose(ours, np.maximum(ref, TINY.log_floor), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("freq", [300.0, 1500.0])
def test_sine_peak_lands_in_its_band(freq):
    mel = MelSpectrogram(TINY)(torch.from_numpy(_tone(freq)))[0, 0]
    centres = librosa.mel_frequencies(n_mels=TINY.n_mels + 2, fmin=TINY.fmin, fmax=TINY.top_hz)[1:-1]
    peak = int(mel.mean(dim=-1).argmax())
    assert peak == int(np.abs(centres - freq).argmin())


def test_shapes_for_every_input_rank():
    spec = MelSpectrogram(TINY)
    frames = 1000 // TINY.hop_length + 1
    assert spec(torch.randn(1000)).shape == (1, 1, TINY.n_mels, frames)
    assert spec(torch.randn(3, 1000)).shape == (3, 1, TINY.n_mels, frames)
    stereo = torch.randn(2, 2, 1000)
    assert spec(stereo).shape == (2, 1, TINY.n_mels, frames)
    torch.testing.assert_close(spec(stereo), spec(stereo.mean(dim=1)))
    with pytest.raises(AudioError):
        spec(torch.randn(1, 1, 1, 10))


def test_overrides_and_floor():
    spec = MelSpectrogram(TINY, n_mels=16, log_floor=1e-3)
    out = spec(torch.zeros(500))
    assert out.shape[2] == 16
    torch.testing.assert_close(out, torch.full_like(out, float(np.log(1e-3))))
    with pytest.raises(ConfigError):
        MelConfig(fmax=30000.0)


def test_resize_width_interpolates_along_time():
    mel = torch.linspace(0, 1, 9).repeat(2, 1, 4, 1)  # [2, 1, 4, 9], a ramp over time
    out = resize_width(mel, 5)
    assert out.shape == (2, 1, 4, 5)
    assert torch.all(out[..., 1:] > out[..., :-1])
    torch.testing.assert_close(resize_width(mel, 9), mel)


def test_griffin_lim_keeps_pitch():
    freq = 440.0
    vocoder = GriffinLim(TINY, n_iter=16)
    assert isinstance(vocoder, Vocoder)
    audio = vocoder(MelSpectrogram(TINY)(torch.from_numpy(_tone(freq))))
    assert audio.shape == (1, TINY.sample_rate)
    spectrum = np.abs(np.fft.rfft(audio[0].numpy()))
    peak_hz = spectrum.argmax() * TINY.sample_rate / audio.shape[-1]
    assert abs(peak_hz - freq) < 0.06 * freq  # within the tiny config's mel band width


# ------------------------------------------------------------------------------ mel chunk dataset

def _write(folder, name, seconds, freq=220.0, sample_rate=16000):
    from ftlib import audio

    t = np.arange(int(seconds * sample_rate)) / sample_rate
    return audio.save(folder / name, (0.3 * np.sin(2 * np.pi * freq * t))[None].astype(np.float32), sample_rate)


@pytest.fixture
def corpus(tmp_path):
    """Two pooled folders of tones: 2 files (one in a sub-folder) and 1 file."""
    a, b = tmp_path / "a", tmp_path / "b"
    (a / "sub").mkdir(parents=True)
    b.mkdir()
    _write(a, "x.wav", 1.0, 220.0)
    _write(a / "sub", "y.wav", 0.8, 440.0)
    _write(b, "z.wav", 1.2, 880.0)
    return [a, b]


def _count_computes(monkeypatch):
    from ftlib.data.mel_chunks import MelCache

    calls = []
    original = MelCache.compute
    monkeypatch.setattr(MelCache, "compute", lambda self, path: calls.append(path) or original(self, path))
    return calls


def test_chunks_pool_folders_and_are_seeded(corpus):
    from ftlib.data.mel_chunks import MelChunkConfig, MelChunkDataset
    from ftlib.paths import cache_dir

    data = MelChunkDataset(corpus, TINY, MelChunkConfig(frames=24, min_frames=8, multiple=4, items_per_epoch=16))
    assert len(data.files) == 3 and len(data) == 16 and data.cache.root == cache_dir() / "mel"
    assert all(isinstance(np.load(p, mmap_mode="r"), np.memmap) for p in data.cache.root.glob("*.npy"))
    item = data[(2, 5)]
    assert item["mel"].shape == (1, TINY.n_mels, 24) and item["mel"].dtype == torch.float32
    torch.testing.assert_close(data[(2, 5)]["mel"], item["mel"])
    lengths = {int(data[(0, i)]["frames"]) for i in range(16)}
    assert lengths <= {8, 12, 16, 20, 24} and len(lengths) > 1
    short = next(data[(0, i)] for i in range(16) if data[(0, i)]["frames"] < 24)
    assert torch.all(short["mel"][..., int(short["frames"]):] == float(np.log(TINY.log_floor)))
    assert any(not torch.equal(data[(0, i)]["mel"], data[(1, i)]["mel"]) for i in range(4))
    valid = data.fixed(4, seed=3)
    assert all(torch.equal(a["mel"], b["mel"]) for a, b in zip(valid, data.fixed(4, seed=3)))
    assert not torch.equal(valid[0]["mel"], data.fixed(4, seed=4)[0]["mel"])


def test_cache_is_reused_and_rebuilt_on_change(corpus, monkeypatch):
    from ftlib.data.mel_chunks import MelChunkConfig, MelChunkDataset

    calls = _count_computes(monkeypatch)
    config = MelChunkConfig(frames=16)
    MelChunkDataset(corpus, TINY, config)
    assert len(calls) == 3
    MelChunkDataset(corpus, TINY, config)
    assert len(calls) == 3  # every entry reused
    _write(corpus[1], "z.wav", 1.5, 660.0)  # new content
    data = MelChunkDataset(corpus, TINY, config)
    assert len(calls) == 4 and calls[-1].name == "z.wav"
    assert max(data.file_frames) == int(1.5 * TINY.sample_rate) // TINY.hop_length + 1
    MelChunkDataset(corpus, TINY.replace(n_mels=16), config)
    assert len(calls) == 7  # another mel setting: new entries for every file


def test_bad_files_are_skipped_and_empty_folders_refused(corpus, caplog):
    from ftlib.data.mel_chunks import MelChunkConfig, MelChunkDataset
    from ftlib.errors import DataError

    (corpus[0] / "broken.wav").write_bytes(b"not audio at all")
    (corpus[0] / "empty.wav").write_bytes(b"")
    _write(corpus[0], "short.wav", 0.05)
    with caplog.at_level("WARNING"):
        data = MelChunkDataset(corpus, TINY, MelChunkConfig(frames=16))
    assert {p.name for p, _ in data.skipped} == {"broken.wav", "empty.wav", "short.wav"}
    assert all(name in caplog.text for name in ("broken.wav", "empty.wav", "short.wav"))
    assert len(data.files) == 3
    bad = corpus[1].parent / "bad"
    bad.mkdir()
    (bad / "broken.wav").write_bytes(b"junk")
    with pytest.raises(DataError, match=str(bad)):
        MelChunkDataset([corpus[0], bad], TINY, MelChunkConfig(frames=16))
    with pytest.raises(DataError, match="no usable audio"):  # single files: skipped, but the pool may not be empty
        MelChunkDataset([bad / "broken.wav", corpus[0] / "short.wav"], TINY, MelChunkConfig(frames=16))


def test_synthetic_corpus_feeds_the_dataset():
    from ftlib.data import synth
    from ftlib.data.mel_chunks import MelChunkConfig, MelChunkDataset, synthetic_corpus

    folders = synthetic_corpus(synth.SynthConfig.preset("tiny", duration=1.0, valid_duration=1.0, sample_rate=16000))
    assert [f.name for f in folders["train"]] == ["instrumentals", "vocals"]
    assert [f.name for f in folders["valid"]] == ["mixture.wav"]
    data = MelChunkDataset(folders["train"], TINY, MelChunkConfig(frames=32, items_per_epoch=4))
    assert len(data.files) == 4 and float(data[(0, 0)]["mel"].max()) > float(np.log(TINY.log_floor))
    valid = MelChunkDataset(folders["valid"] + folders["valid"], TINY, MelChunkConfig(frames=32))
    assert valid.files == folders["valid"]  # single files pooled, duplicates once
