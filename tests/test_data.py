"""Spectrogram cache, folder sources and the voxaug dataset."""
import logging
import os
import shutil

import numpy as np
import pytest
import soundfile as sf
import torch
from torch.utils.data import DataLoader

from ftlib.data.cache import SpectrogramCache
from ftlib.data.sources import scan_songs, scan_stems
from ftlib.data.voxaug import ValidationCrops, VoxAugConfig, VoxAugDataset
from ftlib.errors import DataError
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
    other = SpectrogramCache(tiny_cache.root, TINY_SPEC.replace(hop_length=32))
    assert other.key(path) != tiny_cache.key(path), "settings are part of the key"
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


def test_voxaug_batches_do_not_depend_on_workers(tiny_dataset, tiny_cache):
    ds = VoxAugDataset(tiny_dataset, tiny_cache, VoxAugConfig(cropsize=16, items_per_epoch=8))
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
    with caplog.at_level(logging.WARNING):
        ds = VoxAugDataset(root, tiny_cache, VoxAugConfig(cropsize=16))
    reasons = {p.name: why for p, why in ds.skipped}
    assert set(reasons) == {"broken.wav", "silent.wav", "short.wav"}
    assert "cannot decode" in reasons["broken.wav"] and reasons["silent.wav"] == "silent"
    assert "too short" in reasons["short.wav"]
    assert "broken.wav" in caplog.text
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
