"""Augmentations: configs, the small functions, and waveform-domain voxaug items."""
import numpy as np
import pytest
import torch

from ftlib.data.augment import (AugmentConfig, compress, pitch_stretch, random_eq, shift_bins, stereo_width, stretch_frames,
                                 swap_channels)
from ftlib.data.voxaug import VoxAugConfig, VoxAugDataset
from ftlib.errors import ConfigError


def test_configs_validate_and_round_trip():
    with pytest.raises(ConfigError, match="mix_domain='waveform'"):
        VoxAugConfig(compress_prob=0.5)
    with pytest.raises(ConfigError, match="eq_prob"):
        AugmentConfig(eq_prob=1.5)
    with pytest.raises(ConfigError, match="vocal_gain_db"):
        VoxAugConfig(vocal_gain_db=(3.0, -3.0))
    with pytest.raises(ConfigError, match="vocal_order"):
        VoxAugConfig(vocal_order="shuffle")
    cfg = VoxAugConfig(32, mix_domain="waveform", pitch_prob=0.2, stretch_rate=(0.9, 1.1), vocal_order="cycle")
    assert cfg.cropsize == 32, "the original fields stay positional"
    assert VoxAugConfig.from_json(cfg.to_json()) == cfg
    assert VoxAugConfig.preset("tiny").cropsize == 16 and VoxAugConfig().pitch_prob == 0.0


def test_spectral_augmentations():
    rng = np.random.default_rng(0)
    spec = (rng.standard_normal((2, 64, 8)) + 1j * rng.standard_normal((2, 64, 8))).astype(np.complex64)
    eq = random_eq(spec, rng, (-6.0, 6.0), bands=8)
    gain_db = 20 * np.log10(np.abs(eq) / np.abs(spec))
    assert gain_db.min() >= -6.01 and gain_db.max() <= 6.01
    assert np.allclose(gain_db[0, :, 0], gain_db[1, :, 5], atol=1e-4), "one curve over frequency"
    assert np.abs(np.diff(gain_db[0, 32:, 0])).max() < 1.0, "smooth (control points are log-spaced)"
    assert np.allclose(stereo_width(spec, 1.0), spec, atol=1e-6)
    mono = stereo_width(spec, 0.0)
    assert np.allclose(mono[0], mono[1])
    assert np.array_equal(swap_channels(spec)[0], spec[1])


def test_spectral_pitch_shift_and_time_stretch():
    spec = np.zeros((2, 256, 12), np.complex64)
    spec[:, 40] = np.exp(1j * np.linspace(0, 3, 12))  # a partial at bin 40
    up = shift_bins(spec, 12.0)
    assert np.abs(up).argmax(axis=1).tolist() == [[80] * 12] * 2 and np.abs(up).max() == pytest.approx(1.0)
    assert np.allclose(np.angle(up[:, 80]), np.angle(spec[:, 40]), atol=1e-5), "phase of the source bin"
    down = shift_bins(spec, -12.0)
    assert np.abs(down).argmax(axis=1).tolist() == [[20] * 12] * 2
    assert np.abs(shift_bins(spec, 24.0)[:, 160]).min() > 0.99 and not np.abs(shift_bins(spec, 24.0)[:, 250:]).any()
    ramp = np.broadcast_to(np.arange(12, dtype=np.float32), (2, 256, 12)).astype(np.complex64)
    fast = stretch_frames(ramp, 6)  # 12 frames played in 6
    assert fast.shape == (2, 256, 6) and np.allclose(np.abs(fast[0, 0]), np.linspace(0, 11, 6), atol=1e-5)
    assert np.allclose(stretch_frames(ramp, 12), ramp)


def test_spectral_pitch_and_stretch_in_voxaug_items(tiny_dataset, tiny_cache):
    plain = VoxAugDataset(tiny_dataset, tiny_cache, VoxAugConfig(cropsize=16, items_per_epoch=4, seed=3))
    shifted = VoxAugDataset(tiny_dataset, tiny_cache, VoxAugConfig(cropsize=16, items_per_epoch=4, seed=3, pitch_prob=1.0,
                                                                   stretch_prob=1.0, stretch_rate=(0.8, 1.25)))
    off = VoxAugDataset(tiny_dataset, tiny_cache, VoxAugConfig(cropsize=16, items_per_epoch=4, seed=3, pitch_prob=0.0,
                                                               stretch_rate=(0.9, 1.1)))
    for i in range(4):
        a, b = plain[i], shifted[i]
        assert b["mixture"].shape == a["mixture"].shape and not torch.equal(a["mixture"], b["mixture"])
        assert torch.all(b["target"] <= b["mixture"] + 1e-6)
        assert torch.equal(off[i]["mixture"], a["mixture"]), "disabled augmentations draw nothing"


def test_pitch_stretch_and_compression_on_a_tone():
    sr = 16000
    t = np.arange(sr) / sr
    tone = np.stack([np.sin(2 * np.pi * 440 * t)] * 2).astype(np.float32) * 0.5
    shifted = pitch_stretch(tone, sr, semitones=12.0)
    peak_hz = np.argmax(np.abs(np.fft.rfft(shifted[0, 4000:12000]))) * sr / 8000
    assert abs(peak_hz - 880) < 20 and abs(shifted.shape[-1] - sr) < 100
    assert abs(pitch_stretch(tone, sr, rate=1.25).shape[-1] - sr / 1.25) < 100
    loud_soft = tone * np.where(t < 0.5, 1.0, 0.1).astype(np.float32)
    squashed = compress(loud_soft, sr, threshold_db=-30.0, ratio=8.0)
    level = lambda x, a, b: np.sqrt(np.mean(x[:, int(a * sr):int(b * sr)] ** 2))  # noqa: E731
    assert level(squashed, 0.2, 0.45) / level(squashed, 0.7, 0.95) < 5.0, "20 dB apart before, much less after"


def test_waveform_domain_items_are_augmented_and_reproducible(tiny_dataset, tiny_cache):
    cfg = VoxAugConfig(cropsize=16, seed=4, mix_domain="waveform", pitch_prob=1.0, stretch_prob=1.0,
                       compress_prob=1.0, eq_prob=1.0)
    ds = VoxAugDataset(tiny_dataset, tiny_cache, cfg)
    assert ds.crops.cache is not tiny_cache and ds.crops.min_length == 15 * 64
    first = [ds[(0, i)] for i in range(2)]
    again = VoxAugDataset(tiny_dataset, tiny_cache, cfg)
    for i, item in enumerate(first):
        assert item["mixture"].shape == (2, 64, 16) and torch.all(item["target"] <= item["mixture"] + 1e-6)
        assert torch.equal(item["mixture"], again[(0, i)]["mixture"])
    plain = VoxAugDataset(tiny_dataset, tiny_cache, VoxAugConfig(cropsize=16, seed=4, mix_domain="waveform"))[(0, 0)]
    assert plain["mixture"].shape == (2, 64, 16)
    assert not torch.allclose(plain["mixture"], first[0]["mixture"])
