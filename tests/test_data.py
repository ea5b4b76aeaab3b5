"""Spectrogram cache (complex64 and float16 storage), item magnitudes, folder sources and the voxaug dataset."""
import logging
import os
import shutil

import numpy as np
import pytest
import soundfile as sf
import torch
from torch.utils.data import DataLoader

from ftlib import audio
from ftlib.data.augment import EPS
from ftlib.data.cache import HalfSpectrogram, SpectrogramCache, WaveformCache
from ftlib.data.sources import scan_songs, scan_stems
from ftlib.data.validation import magnitudes
from ftlib.data.validation import ValidationCrops
from ftlib.data.voxaug import VoxAugConfig, VoxAugDataset
from ftlib.errors import ConfigError, DataError
from ftlib.train.sampler import StepBatchSampler

from conftest import TINY_SPEC


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def test_cache_reuses_and_invalidates(tiny_dataset, tiny_cache):
    path = scan_stems(tiny_dataset).vocals[0]
    first = tiny_cache.get(path)
    assert isinstance(first, np.memmap) and first.dtype == np.complex64 and first.shape[0] == 2
    assert first.shape[1] == TINY_SPEC.n_fft // 2 + 1
    entries = sorted(tiny_cache.root.glob("*.npy"))
    tiny_cache.get(path)
    assert sorted(tiny_cache.root.glob("*.npy")) == entries, "a second get must reuse the entry"
    for other in (SpectrogramCache(tiny_cache.root, TINY_SPEC.replace(hop_length=32)),
                  SpectrogramCache(tiny_cache.root, TINY_SPEC, dtype="float16")):
        assert other.key(path) != tiny_cache.key(path), "settings are part of the key"
    with pytest.raises(ConfigError, match="dtype.*'int8'"):
        SpectrogramCache(tiny_cache.root, TINY_SPEC, dtype="int8")
    stat = os.stat(path)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert tiny_cache.key(path) != entries[0].name


def test_corrupt_cache_entry_is_rebuilt(tiny_dataset, tiny_cache):
    path = scan_stems(tiny_dataset).vocals[0]
    good = np.array(tiny_cache.get(path))
    entry = tiny_cache.root / tiny_cache.key(path)
    entry.write_bytes(entry.read_bytes()[:200])
    np.testing.assert_array_equal(np.array(tiny_cache.get(path)), good)


def test_voxaug_items_are_deterministic_and_valid(tiny_dataset, tiny_cache):
    cfg = VoxAugConfig(cropsize=16, seed=3)
    ds = VoxAugDataset(tiny_dataset, tiny_cache, cfg)
    item = ds[(0, 1)]
    assert item["mixture"].shape == (2, 64, 16) and item["mixture"].dtype == torch.float32
    assert torch.all(item["target"] <= item["mixture"] + 1e-7)
    assert abs(float(item["mixture"].max()) - 1.0) < 1e-5, "mixture is divided by its own maximum"
    again = VoxAugDataset(tiny_dataset, tiny_cache, cfg)[(0, 1)]
    assert torch.equal(item["mixture"], again["mixture"]) and torch.equal(item["target"], again["target"])
    assert not torch.equal(ds[(1, 1)]["mixture"], item["mixture"]), "another epoch gives another item"
    other_seed = VoxAugDataset(tiny_dataset, tiny_cache, cfg.replace(seed=4))[(0, 1)]
    assert not torch.equal(other_seed["mixture"], item["mixture"])


@pytest.mark.parametrize("dtype", ["complex64", "float16"])
def test_voxaug_batches_do_not_depend_on_workers(tiny_dataset, tmp_path, dtype):
    cache = SpectrogramCache(tmp_path / "spec", TINY_SPEC, dtype=dtype)
    ds = VoxAugDataset(tiny_dataset, cache, VoxAugConfig(cropsize=16, items_per_epoch=8))
    sampler = StepBatchSampler(len(ds), 2, seed=1)
    batches = []
    for workers in (0, 2):
        loader = iter(DataLoader(ds, batch_sampler=sampler, num_workers=workers))
        batches.append(torch.cat([next(loader)["mixture"] for _ in range(6)]))
    assert torch.equal(batches[0], batches[1])
    assert len({float(b.sum()) for b in batches[0]}) == len(batches[0]), "no duplicated items"


def test_bad_files_are_listed_and_skipped(tiny_dataset, tiny_cache, tmp_path, caplog):
    root = _copy(tiny_dataset, tmp_path / "data")
    (root / "vocals" / "broken.wav").write_bytes(b"RIFF garbage")
    sf.write(root / "vocals" / "silent.wav", np.zeros((44100, 2), np.float32), 44100)
    sf.write(root / "instrumentals" / "short.wav", np.full((300, 2), 0.1, np.float32), 44100)
    nan = np.full((44100, 2), 0.1, np.float32)
    nan[100] = np.nan
    sf.write(root / "instrumentals" / "nan.wav", nan, 44100, subtype="FLOAT")
    sf.write(root / "vocals" / "empty.wav", np.zeros((0, 2), np.float32), 44100)
    with caplog.at_level(logging.WARNING):
        ds = VoxAugDataset(root, tiny_cache, VoxAugConfig(cropsize=16))
    reasons = {p.name: why for p, why in ds.skipped}
    assert set(reasons) == {"broken.wav", "silent.wav", "short.wav", "nan.wav", "empty.wav"}
    assert "cannot decode" in reasons["broken.wav"] and reasons["silent.wav"] == "silent"
    assert "too short" in reasons["short.wav"] and "NaN" in reasons["nan.wav"]
    assert "no samples" in reasons["empty.wav"]
    summaries = [r for r in caplog.records if r.levelno == logging.WARNING and "skipped" in r.getMessage()]
    assert len(summaries) == 1, "one summary for the whole scan"
    assert all(name in summaries[0].getMessage() for name in reasons)
    assert len(ds.vocals) == 2 and len(ds.instrumentals) == 2


def test_missing_or_empty_folders_are_clear_errors(tiny_dataset, tiny_cache, tmp_path):
    with pytest.raises(DataError, match="nowhere.*not found"):
        VoxAugDataset(tmp_path / "nowhere", tiny_cache)
    root = _copy(tiny_dataset, tmp_path / "data")
    shutil.rmtree(root / "vocals")
    with pytest.raises(DataError, match="vocals.*not found"):
        scan_stems(root)
    (root / "vocals").mkdir()
    sf.write(root / "vocals" / "silent.wav", np.zeros((44100, 2), np.float32), 44100)
    with pytest.raises(DataError, match="vocals: none of the 1 files is usable"):
        VoxAugDataset(root, tiny_cache, VoxAugConfig(cropsize=16))


def test_validation_crops_are_fixed(tiny_dataset, tiny_cache):
    songs = scan_songs(tiny_dataset / "valid")
    assert [s["name"] for s in songs] == ["song_000"]
    a = ValidationCrops(tiny_dataset / "valid", tiny_cache, cropsize=32)
    b = ValidationCrops(tiny_dataset / "valid", tiny_cache, cropsize=32)
    assert len(a) == tiny_cache.get(songs[0]["mixture"]).shape[-1] // 32
    assert torch.equal(a[3]["mixture"], b[3]["mixture"])
    assert torch.all(a[3]["target"] <= a[3]["mixture"] + 1e-7)
    with pytest.raises(DataError, match="at least"):
        ValidationCrops(tiny_dataset / "valid", tiny_cache, cropsize=10**6)


# ------------------------------------------------------------------------------- cache trust

def test_cache_key_sees_content_even_with_same_size_and_mtime(tiny_dataset, tiny_cache, tmp_path):
    path = shutil.copy(scan_stems(tiny_dataset).vocals[0], tmp_path / "v.wav")
    before = tiny_cache.key(path)
    stat = os.stat(path)
    data = bytearray(path.read_bytes())
    data[1000:1004] = b"\x00\x01\x02\x03"  # same size, different samples (as cp -p would leave it)
    path.write_bytes(bytes(data))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert SpectrogramCache(tiny_cache.root, TINY_SPEC).key(path) != before


@pytest.mark.parametrize("dtype", ["complex64", "float16"])
@pytest.mark.parametrize("damage", ["flip", "truncate", "sidecar"])
def test_damaged_entries_are_never_trusted(tiny_dataset, tmp_path, damage, dtype, caplog):
    path = scan_stems(tiny_dataset).vocals[0]
    cache = SpectrogramCache(tmp_path / "spec", TINY_SPEC, dtype=dtype)
    good = np.array(cache.get(path))
    entry = cache.root / cache.key(path)
    data = bytearray(entry.read_bytes())
    if damage == "flip":
        data[len(data) // 2:len(data) // 2 + 8] = bytes(8)  # same size, garbage in the middle
        entry.write_bytes(bytes(data))
    elif damage == "truncate":
        entry.write_bytes(bytes(data[:-4]))
    else:
        entry.with_suffix(".json").unlink()
    with caplog.at_level(logging.WARNING):
        rebuilt = np.array(SpectrogramCache(tmp_path / "spec", TINY_SPEC, dtype=dtype).get(path))  # as a new run would
    np.testing.assert_array_equal(rebuilt, good)
    assert "rebuilding corrupt cache entry" in caplog.text


# ---------------------------------------------------------------------------- float16 storage

def test_float16_cache_is_within_its_stated_error(tiny_dataset, tiny_cache, tmp_path):
    path = scan_stems(tiny_dataset).vocals[0]
    half_cache = SpectrogramCache(tmp_path / "half", TINY_SPEC, dtype="float16")
    half, exact = half_cache.get(path), tiny_cache.get(path)
    assert isinstance(half, HalfSpectrogram) and half.shape == exact.shape
    assert half_cache.info(path)["dtype"] == "float16"
    sizes = [(cache.root / cache.key(path)).stat().st_size for cache in (half_cache, tiny_cache)]
    assert sizes[0] < 0.6 * sizes[1], "float16 entries take about half the space"
    parts, exact_parts = np.asarray(half).view(np.float32), np.asarray(exact).view(np.float32)
    error = np.abs(parts - exact_parts)
    assert np.all(error <= 2**-11 * np.abs(exact_parts) + 2**-25), "rounding: 2**-11 relative, 2**-25 below 6e-5"
    assert error.max() > 0, "the float16 entry really is rounded"
    cfg = VoxAugConfig(cropsize=16, seed=2, two_vocal_prob=0.5, channel_drop_prob=0.5, return_vocals=True)
    items = [VoxAugDataset(tiny_dataset, cache, cfg) for cache in (tiny_cache, half_cache)]
    for i in range(6):  # same draws, so the same crops and gains: items differ by the rounding only
        a, b = items[0][(0, i)], items[1][(0, i)]
        for key in a:
            assert torch.allclose(a[key], b[key], rtol=0, atol=1e-3), key


def test_half_spectrogram_slices_like_the_decoded_array(tiny_dataset, tmp_path):
    half = SpectrogramCache(tmp_path / "half", TINY_SPEC, dtype="float16").get(scan_stems(tiny_dataset).vocals[0])
    full = np.asarray(half)
    assert full.dtype == np.complex64 and full.shape == half.shape and half.ndim == 3 and len(half) == 2
    for key in [(slice(None), slice(None, -1), slice(3, 9)), 1, (0, slice(2, 5)), (Ellipsis, 4),
                (slice(None, None, -1),), (1, Ellipsis, slice(None, None, 3))]:
        part = half[key]
        assert isinstance(part, HalfSpectrogram)
        np.testing.assert_array_equal(np.asarray(part), full[key])


def test_values_beyond_float16_are_stored_as_complex64(tmp_path):
    loud = np.full((4410, 2), 1500, np.float32)  # DC bin: 1500 * 64 (window sum) > 65504, the float16 maximum
    sf.write(tmp_path / "loud.wav", loud, 44100, subtype="FLOAT")
    half = SpectrogramCache(tmp_path / "half", TINY_SPEC, dtype="float16")
    exact = SpectrogramCache(tmp_path / "exact", TINY_SPEC)
    assert half.info(tmp_path / "loud.wav")["dtype"] == "complex64"
    np.testing.assert_array_equal(half.get(tmp_path / "loud.wav"), exact.get(tmp_path / "loud.wav"))


# ----------------------------------------------------------------------------- item magnitudes

@pytest.mark.parametrize("chunk", [40, 1 << 15])
def test_magnitudes_match_the_plain_numpy_computation(tiny_dataset, tmp_path, chunk):
    rng = np.random.default_rng(0)
    shape = (2, 63, 16)  # 63 bins: the last block of rows is partial
    a, b, c = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape) for _ in range(3))
    a, c = a.astype(np.complex64), c.astype(np.complex64)
    b = np.asfortranarray(b.astype(np.complex64))  # frames not contiguous
    half = SpectrogramCache(tmp_path / "half", TINY_SPEC, dtype="float16").get(scan_stems(tiny_dataset).vocals[0])
    d = half[:, 1:64, 5:21]
    drop = np.array([0.5, 0.0], np.float32)  # per-channel gain: right channel dropped
    mixture = [(1.0, a), (drop, b), (-0.25, c), (2.0, d)]
    got = magnitudes(mixture, [(1.0, a)], [(drop, b), (2.0, d)], [], chunk=chunk)
    mix = np.abs(a + drop[:, None, None] * b - 0.25 * c + 2 * np.asarray(d))
    scale = 1 / (mix.max() + EPS)
    expected = [mix, np.minimum(np.abs(a), mix), np.minimum(np.abs(drop[:, None, None] * b + 2 * np.asarray(d)), mix),
                np.zeros(shape)]
    assert len(got) == 4 and all(g.dtype == np.float32 and g.shape == shape for g in got)
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e * scale, rtol=1e-5, atol=1e-7)


def test_parallel_build_keeps_order_and_matches_single_gets(tiny_dataset, tmp_path):
    stems = scan_stems(tiny_dataset)
    paths = stems.vocals + stems.instrumentals + [tmp_path / "missing.wav"]
    cache = SpectrogramCache(tmp_path / "a", TINY_SPEC, workers=4)
    usable, skipped = cache.build(paths, min_frames=16, desc="test")
    assert usable == paths[:-1] and [p for p, _ in skipped] == paths[-1:]
    single = SpectrogramCache(tmp_path / "b", TINY_SPEC, workers=1)
    for p in usable:
        np.testing.assert_array_equal(cache.get(p), single.get(p))


def test_waveform_cache_holds_the_decoded_audio(tiny_dataset, tmp_path):
    path = scan_stems(tiny_dataset).vocals[0]
    wave = WaveformCache(tmp_path / "w", sample_rate=44100).get(path)
    assert isinstance(wave, np.memmap) and wave.dtype == np.float32
    np.testing.assert_array_equal(wave, audio.load(path))


# ------------------------------------------------------------------------- voxaug and voxaug2

def test_voxaug2_cycles_every_vocal_and_resumes_mid_epoch(tiny_dataset, tiny_cache):
    ds = VoxAugDataset(tiny_dataset, tiny_cache, VoxAugConfig(cropsize=16, items_per_epoch=8, vocal_order="cycle"))
    n = len(ds.vocals)
    for index in range(len(ds)):
        assert {ds.vocal_index(e, index, None) for e in range(n)} == set(range(n))
    sampler = StepBatchSampler(len(ds), 2, seed=5)
    straight = iter(DataLoader(ds, batch_sampler=sampler))
    batches = [next(straight)["mixture"] for _ in range(7)]
    resumed = iter(DataLoader(ds, batch_sampler=StepBatchSampler(len(ds), 2, seed=5, start=3)))
    for expected in batches[3:]:  # step 3 lies in the middle of epoch 0 (4 batches per epoch)
        assert torch.equal(next(resumed)["mixture"], expected)


def test_voxaug_options_keep_the_item_contract(tiny_dataset, tiny_cache):
    cfg = VoxAugConfig(cropsize=16, seed=1, two_vocal_prob=0.5, channel_drop_prob=0.5, eq_prob=0.5,
                       width_prob=0.5, swap_prob=0.5, mixup_prob=0.5, return_vocals=True)
    ds = VoxAugDataset(tiny_dataset, tiny_cache, cfg)
    plain = VoxAugDataset(tiny_dataset, tiny_cache, VoxAugConfig(cropsize=16, seed=1))
    for i in range(6):
        item = ds[(0, i)]
        assert set(item) == {"mixture", "target", "vocals"}
        assert all(v.shape == (2, 64, 16) and v.dtype == torch.float32 for v in item.values())
        assert torch.all(item["target"] <= item["mixture"] + 1e-6)
        assert torch.all(item["vocals"] <= item["mixture"] + 1e-6)
        assert torch.equal(item["mixture"], ds[(0, i)]["mixture"])
    assert any(not torch.equal(ds[(0, i)]["mixture"], plain[(0, i)]["mixture"]) for i in range(6))
    silent = VoxAugDataset(tiny_dataset, tiny_cache, VoxAugConfig(cropsize=16, no_vocal_prob=1.0))[(0, 0)]
    assert torch.allclose(silent["target"], silent["mixture"]), "a vocal-free item's target is its mixture"


def test_pairs_are_mixed_in_as_exact_real_crops(tiny_dataset, tiny_cache, tmp_path):
    root = _copy(tiny_dataset, tmp_path / "data")
    shutil.copytree(root / "valid", root / "pairs")
    ds = VoxAugDataset(root, tiny_cache, VoxAugConfig(cropsize=16, pair_prob=1.0))
    song = scan_songs(root / "pairs")[0]
    mix = np.abs(tiny_cache.get(song["mixture"])[:, :-1])
    inst = np.abs(tiny_cache.get(song["instrumental"])[:, :-1])
    item = ds[(0, 2)]
    windows = np.lib.stride_tricks.sliding_window_view(mix, 16, axis=-1)  # [C, F, starts, 16]
    scale = windows.max(axis=(0, 1, 3))
    error = np.abs(windows / scale[:, None] - item["mixture"].numpy()[:, :, None]).max(axis=(0, 1, 3))
    start = int(error.argmin())
    assert error[start] < 1e-5, "the item is a crop of the real mixture"
    expected = np.minimum(inst[..., start:start + 16], mix[..., start:start + 16]) / scale[start]
    np.testing.assert_allclose(item["target"].numpy(), expected, atol=1e-6)
    with pytest.raises(DataError, match="pairs"):
        VoxAugDataset(tiny_dataset, tiny_cache, VoxAugConfig(cropsize=16, pair_prob=0.5))


# --------------------------------------------------------------------------------- validation

def test_validation_set_is_reusable_at_other_crop_sizes(tiny_dataset, tiny_cache):
    big = ValidationCrops(tiny_dataset / "valid", tiny_cache, cropsize=32)
    small = big.at(16)
    assert len(small) == tiny_cache.get(scan_songs(tiny_dataset / "valid")[0]["mixture"]).shape[-1] // 16
    direct = ValidationCrops(tiny_dataset / "valid", tiny_cache, cropsize=16)
    assert torch.equal(small[5]["target"], direct[5]["target"])
    stems = scan_stems(tiny_dataset)
    mixes = ValidationCrops.from_stems(stems.instrumentals, stems.vocals, tiny_cache, cropsize=16, seed=2)
    again = ValidationCrops.from_stems(stems.instrumentals, stems.vocals, tiny_cache, cropsize=16, seed=2)
    assert len(mixes) == len(again) > 0 and torch.equal(mixes[7]["mixture"], again[7]["mixture"])
    assert torch.all(mixes[7]["target"] <= mixes[7]["mixture"] + 1e-6)
