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


@pytest.fixture(autouse=True)
def _cpu_unless_gpu_test(request, monkeypatch):
    """Tests run in-process on the CPU, even on a GPU machine, unless marked ``gpu``: their
    expectations (bitwise resume, float32 tolerances) are CPU ones. Notebook and process tests run
    in their own processes, on whatever device the machine has, or pass the CPU explicitly."""
    if request.node.get_closest_marker("gpu") is None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """A tiny synthetic dataset folder (2 instrumentals, 2 vocals, 1 validation song, 3 s each)."""
    return synth.generate(tmp_path_factory.mktemp("data") / "tiny", synth.SynthConfig.preset("tiny"))


@pytest.fixture
def tiny_cache(tmp_path):
    return SpectrogramCache(tmp_path / "spec", TINY_SPEC)


def pytest_configure(config):
    torch.set_num_threads(min(2, os.cpu_count() or 1))
