"""ftlib.audio: decoding, channel/rate handling, saving, and the STFT transform."""
import numpy as np
import pytest
import soundfile as sf
import torch

from ftlib import audio
from ftlib.audio import Spectrogram, SpectrogramConfig
from ftlib.errors import AudioError, ConfigError


def _noise(channels=2, samples=44100, seed=0):
    return (np.random.default_rng(seed).standard_normal((channels, samples)) * 0.1).astype(np.float32)


@pytest.mark.parametrize("n_fft,hop", [(2048, 1024), (1024, 256), (128, 64)])
def test_stft_round_trip_is_exact(n_fft, hop):
    x = torch.from_numpy(_noise(samples=30000))
    spec = Spectrogram(n_fft=n_fft, hop_length=hop)
    y = spec.istft(spec.stft(x), length=x.shape[-1])
    assert (y - x).norm() / x.norm() < 1e-5


def test_stft_shapes_and_nyquist_drop_restore():
    spec = Spectrogram()
    s = spec.stft(torch.from_numpy(_noise(samples=44100)))
    assert s.shape == (2, 1025, spec.num_frames(44100)) and s.is_complex()
    mag, phase = spec.magphase(s)
    assert torch.allclose(mag * phase, s, atol=1e-5)
    model_view = Spectrogram.to_model(mag)
    assert model_view.shape[-2] == 1024 == spec.num_bins
    restored = Spectrogram.from_model(model_view, nyquist=mag[..., -1:, :])
    assert torch.equal(restored, mag)
    assert torch.equal(Spectrogram.from_model(model_view)[..., -1, :], model_view[..., -1, :])


def test_save_load_wav_and_flac(tmp_path):
    x = _noise()
    audio.save(tmp_path / "a.wav", x)
    np.testing.assert_array_equal(audio.load(tmp_path / "a.wav"), x)
    audio.save(tmp_path / "a.flac", x)
    np.testing.assert_allclose(audio.load(tmp_path / "a.flac"), x, atol=1e-6)
    assert not list(tmp_path.glob(".*")), "temporary files left behind"


def test_mono_is_duplicated_and_rate_resampled(tmp_path):
    t = np.arange(22050) / 22050
    sf.write(tmp_path / "mono.wav", (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 22050)
    x = audio.load(tmp_path / "mono.wav")
    assert x.shape == (2, 44100) and x.dtype == np.float32
    np.testing.assert_array_equal(x[0], x[1])
    peak_bin = np.abs(np.fft.rfft(x[0])).argmax()
    assert abs(peak_bin * 44100 / 44100 - 440) < 2  # a 1-s signal: bin index = Hz


def test_bad_audio_errors_name_the_file(tmp_path):
    with pytest.raises(AudioError, match="missing.wav"):
        audio.load(tmp_path / "missing.wav")
    (tmp_path / "junk.wav").write_bytes(b"this is not audio at all")
    with pytest.raises(AudioError, match="junk.wav.*cannot decode"):
        audio.load(tmp_path / "junk.wav")
    sf.write(tmp_path / "empty.wav", np.zeros((0, 2), np.float32), 44100)
    with pytest.raises(AudioError, match="empty.wav.*no samples"):
        audio.load(tmp_path / "empty.wav")
    nan = _noise()
    nan[0, 100] = np.nan
    sf.write(tmp_path / "nan.wav", nan.T, 44100, subtype="FLOAT")
    with pytest.raises(AudioError, match="nan.wav.*NaN"):
        audio.load(tmp_path / "nan.wav")
    with pytest.raises(AudioError, match="shape"):
        audio.save(tmp_path / "x.wav", np.zeros((1, 2, 3)))


def test_spectrogram_config_validation():
    with pytest.raises(ConfigError, match="n_fft"):
        SpectrogramConfig(n_fft=1001)
    with pytest.raises(ConfigError, match="hop_length"):
        SpectrogramConfig(hop_length=0)
    assert SpectrogramConfig.from_json(SpectrogramConfig(n_fft=512, hop_length=128).to_json()).n_fft == 512


@pytest.mark.parametrize("fmt,subtype", [("ogg", "VORBIS"), ("mp3", "MPEG_LAYER_III"), ("flac", "PCM_16")])
def test_compressed_formats_decode(tmp_path, fmt, subtype):
    t = np.arange(44100) / 44100
    tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    sf.write(tmp_path / f"tone.{fmt}", np.stack([tone, tone]).T, 44100, format=fmt.upper(), subtype=subtype)
    x = audio.load(tmp_path / f"tone.{fmt}")
    assert x.shape[0] == 2 and abs(x.shape[1] - 44100) < 3000 and x.dtype == np.float32
    assert np.abs(np.fft.rfft(x[0])).argmax() * 44100 / x.shape[1] == pytest.approx(440, abs=3)
