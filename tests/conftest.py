"""Shared fixtures: a tiny synthetic dataset, tiny STFT settings and a tiny model."""
import os

import pytest
import torch

from ftlib.audio import SpectrogramConfig
from ftlib.data import synth
from ftlib.data.cache import SpectrogramCache

TINY_SPEC = SpectrogramConfig(n_fft=128, hop_length=64)  # 64 bins = the tiny model's num_bins


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Every test gets its own ftlib cache and runs folder, and torch runs on one thread."""
    monkeypatch.setenv("FTLIB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("FTLIB_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("WANDB_MODE", "offline")


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """A tiny synthetic dataset folder (2 instrumentals, 2 vocals, 1 validation song, 3 s each)."""
    return synth.generate(tmp_path_factory.mktemp("data") / "tiny", synth.SynthConfig.preset("tiny"))


@pytest.fixture
def tiny_cache(tmp_path):
    return SpectrogramCache(tmp_path / "spec", TINY_SPEC)


def pytest_configure(config):
    torch.set_num_threads(min(2, os.cpu_count() or 1))
