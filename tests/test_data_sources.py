"""Folder layouts (stems in sub-folders, pairs, MUSDB18-HQ, unlabeled) and train/validation splits."""
import logging
import shutil

import numpy as np
import pytest
import torch

from ftlib.data.sources import scan_musdb, scan_pairs, scan_stems, scan_unlabeled
from ftlib.data.splits import load_or_make_split, load_split, save_split, split_songs
from ftlib.data.validation import ValidationCrops
from ftlib.data.voxaug import VoxAugConfig, VoxAugDataset
from ftlib.errors import DataError


@pytest.fixture(scope="module")
def layouts(tiny_dataset, tmp_path_factory):
    """Stems in artist sub-folders, a MUSDB18-HQ folder and an unlabeled folder, from the tiny dataset."""
    root = tmp_path_factory.mktemp("layouts")
    stems = scan_stems(tiny_dataset)
    for kind, files in (("instrumentals", stems.instrumentals), ("vocals", stems.vocals)):
        for i, path in enumerate(files):
            for artist in ("ann", "bob", "cat"):
                (root / kind / artist).mkdir(parents=True, exist_ok=True)
                shutil.copy(path, root / kind / artist / f"song{i}.wav")
    (root / "vocals" / ".hidden").mkdir()
    shutil.copy(stems.vocals[0], root / "vocals" / ".hidden" / "x.wav")
    song = tiny_dataset / "valid" / "song_000"
    musdb = root / "musdb" / "train" / "song_000"
    musdb.mkdir(parents=True)
    for name in ("mixture", "vocals"):
        shutil.copy(song / f"{name}.wav", musdb / f"{name}.wav")
    for name in ("drums", "bass", "other"):
        shutil.copy(song / "instrumental.wav", musdb / f"{name}.wav")
    (root / "unlabeled" / "live").mkdir(parents=True)
    shutil.copy(song / "mixture.wav", root / "unlabeled" / "live" / "a.wav")
    return root


def test_stems_in_sub_folders_and_keep(layouts, tmp_path):
    stems = scan_stems(layouts)
    assert len(stems.instrumentals) == 6 and len(stems.vocals) == 6, "recursive, hidden folders ignored"
    kept = scan_stems(layouts, keep=[str(layouts / "vocals" / "bob" / "song0.wav"), *stems.instrumentals[:1]])
    assert [p.name for p in kept.vocals] == ["song0.wav"] and kept.instrumentals == stems.instrumentals[:1]
    assert [p.name for p in scan_unlabeled(layouts / "unlabeled")] == ["a.wav"]
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(DataError, match="no audio files"):
        scan_unlabeled(tmp_path / "empty")


def test_split_by_folder_keeps_artists_apart_and_is_reproducible(layouts):
    stems = scan_stems(layouts)
    files = stems.instrumentals + stems.vocals
    train, valid = split_songs(files, valid_fraction=0.3, seed=1, group_by="folder")
    assert sorted(train + valid) == sorted(files) and valid
    assert {p.parent.name for p in train}.isdisjoint({p.parent.name for p in valid})
    assert (train, valid) == split_songs(files, valid_fraction=0.3, seed=1, group_by="folder")
    by_song = split_songs(files, valid_fraction=0.5, seed=0, group_by="song")
    assert {p.stem for p in by_song[0]}.isdisjoint({p.stem for p in by_song[1]}), "a song's stems stay together"
    with pytest.raises(DataError, match="2 groups"):
        split_songs(files[:1], valid_fraction=0.5)


def test_split_files_round_trip_and_guard_reproducibility(layouts, tmp_path, caplog):
    files = scan_stems(layouts).vocals
    path = tmp_path / "split.json"
    train, valid = load_or_make_split(path, files[:4], layouts, valid_fraction=0.25, seed=3, group_by="folder")
    assert '"vocals/' in path.read_text(), "stored relative to the root"
    with caplog.at_level(logging.WARNING):
        assert load_or_make_split(path, files, layouts, 0.5, seed=9) == (train, valid), "an existing split wins"
    assert "not used" in caplog.text
    assert load_split(path, layouts) == (train, valid)
    moved = tmp_path / "copy"
    shutil.copytree(layouts / "vocals", moved / "vocals")
    assert load_split(path, moved)[1] == [moved / p.relative_to(layouts) for p in valid], "relative paths move"
    save_split(path, train + [layouts / "vocals" / "gone.wav"], valid, layouts)
    with pytest.raises(DataError, match="gone.wav"):
        load_split(path, layouts)


def test_split_sides_feed_the_datasets(layouts, tiny_cache):
    stems = scan_stems(layouts)
    train, valid = split_songs(stems.instrumentals + stems.vocals, 0.34, seed=0, group_by="folder")
    ds = VoxAugDataset(layouts, tiny_cache, VoxAugConfig(cropsize=16, items_per_epoch=4), files=train)
    assert set(ds.instrumentals + ds.vocals) == set(train)
    held = scan_stems(layouts, keep=valid)
    crops = ValidationCrops.from_stems(held.instrumentals, held.vocals, tiny_cache, cropsize=16)
    assert {t[0] for s in crops.segments for t in s.mixture} <= set(valid)


def test_musdb_layout_gives_instrumental_as_mixture_minus_vocals(layouts, tiny_dataset, tiny_cache):
    songs = scan_musdb(layouts / "musdb")
    assert [s["name"] for s in songs] == ["song_000"] and "instrumental" not in songs[0]
    assert scan_pairs(layouts / "musdb" / "train")[0]["vocals"] == songs[0]["vocals"]
    derived = ValidationCrops(layouts / "musdb" / "train", tiny_cache, cropsize=16)
    real = ValidationCrops(tiny_dataset / "valid", tiny_cache, cropsize=16)
    assert len(derived) == len(real)
    for i in (0, len(real) // 2):
        assert torch.allclose(derived[i]["target"], real[i]["target"], atol=1e-4)
    cfg = VoxAugConfig(cropsize=16, pair_prob=1.0, pairs_folder=str(layouts / "musdb" / "train"))
    item = VoxAugDataset(tiny_dataset, tiny_cache, cfg)[(0, 0)]
    assert torch.all(item["target"] <= item["mixture"] + 1e-6)
    with pytest.raises(DataError, match="train/ and test/"):
        scan_musdb(layouts / "musdb", split="test")
    assert np.isfinite(item["mixture"].numpy()).all()
