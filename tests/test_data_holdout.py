"""Validation songs from held-out stems: grouped splits, mixed songs, reuse, and the separation recipe
on a folder that has only instrumentals/ and vocals/."""
import json
import logging

import numpy as np
import pytest
import soundfile as sf

from ftlib import recipes
from ftlib.data.holdout import group_of, make_validation_songs
from ftlib.data.sources import report_conversions, scan_songs
from ftlib.errors import DataError


def _stems(root, names, seconds=2.0, rate=44100, channels=2):
    rng = np.random.default_rng(len(names))
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        t = np.arange(int(seconds * rate)) / rate
        wave = 0.1 * np.sin(2 * np.pi * rng.uniform(100, 800) * t) + 0.01 * rng.standard_normal(len(t))
        sf.write(path, np.repeat(wave[:, None], channels, 1).astype(np.float32), rate)


@pytest.fixture
def stems(tmp_path):
    root = tmp_path / "songs"
    _stems(root, [f"instrumentals/{game}__{k}.wav" for game in ("doom", "quake", "myst", "zork") for k in range(3)]
           + [f"vocals/singer{s}/{k}.wav" for s in range(5) for k in range(2)] + ["vocals/solo - take1.wav",
                                                                                    "vocals/solo - take2.wav"])
    return root


def test_groups_are_sub_folders_and_name_prefixes(tmp_path):
    folder = tmp_path / "vocals"
    assert group_of(folder / "amy" / "take 3.wav", folder) == "amy/take 3"
    assert group_of(folder / "artist - song.wav", folder) == "artist"
    assert group_of(folder / "game__track.wav", folder) == "game"


def test_held_out_groups_become_songs_and_never_reach_training(stems, tmp_path):
    train, folder = make_validation_songs(stems, tmp_path / "run", songs=3, seed=0)
    split = json.loads((tmp_path / "run" / "split.json").read_text())
    held = [stems / p for p in split["valid"]]
    assert len(split["songs"]) >= 3 and len(scan_songs(folder)) == len(split["songs"])
    kind = lambda p: stems / p.relative_to(stems).parts[0]  # noqa: E731  (instrumentals/ or vocals/)
    assert not {group_of(p, kind(p)) for p in train} & {group_of(p, kind(p)) for p in held}
    song = split["songs"][0]
    mixture, _ = sf.read(folder / song["name"] / "mixture.wav")
    vocals, _ = sf.read(folder / song["name"] / "vocals.wav")
    instrumental, _ = sf.read(folder / song["name"] / "instrumental.wav")
    np.testing.assert_allclose(mixture, vocals + instrumental, atol=1e-6)
    # made once: a second call reuses the split and its songs
    again, _ = make_validation_songs(stems, tmp_path / "run", songs=5, seed=9)
    assert again == train and json.loads((tmp_path / "run" / "split.json").read_text()) == split


def test_too_few_stems_to_hold_out_are_refused_before_training(tmp_path):
    root = tmp_path / "few"
    _stems(root, ["instrumentals/a.wav", "instrumentals/b.wav", "vocals/x.wav", "vocals/y.wav"])
    with pytest.raises(DataError, match=r"few/instrumentals: 2 usable files .* at least 7"):
        make_validation_songs(root, tmp_path / "run", songs=6)


def test_mono_and_48_khz_stems_are_listed_as_converted(tmp_path, caplog):
    root = tmp_path / "mixed"
    _stems(root, ["instrumentals/a.wav"], rate=48000)
    _stems(root, ["vocals/b.wav"], channels=1)
    with caplog.at_level(logging.WARNING):
        notes = report_conversions(root)
    assert any("a.wav: 48000 Hz, resampled to 44100" in n for n in notes)
    assert any("b.wav: 1 channel(s), duplicated to 2" in n for n in notes)
    assert "2 stem(s) are converted" in caplog.text


@pytest.mark.slow
def test_separation_recipe_holds_out_songs_in_the_run_folder(stems, tmp_path):
    config = recipes.separation.Config.preset("tiny", data=dict(root=str(stems), valid_songs=3),
                                              evaluation=dict(songs=3, context_cropsizes=()))
    recipes.run(config, tmp_path / "run")
    saved = recipes.config_from_run(tmp_path / "run")
    assert saved.data.split == str((tmp_path / "run" / "split.json").resolve())
    assert saved.data.valid_path() == (tmp_path / "run" / "valid").resolve()
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert len(metrics["songs"]) == 3 and np.isfinite(metrics["sdr_vocals"])
    held = set(json.loads((tmp_path / "run" / "split.json").read_text())["valid"])
    assert not held & {p.relative_to(stems).as_posix() for p in saved.data.train_files()}
