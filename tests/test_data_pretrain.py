"""Masked pretraining: token (BERT 80/10/10) and span masking, the dataset item and its batches."""
import shutil

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from ftlib.data.pretrain import MaskedPretrainDataset, PretrainConfig, mask_spans, mask_tokens
from ftlib.errors import ConfigError, DataError
from ftlib.train.sampler import StepBatchSampler


@pytest.fixture(scope="module")
def music(tiny_dataset, tmp_path_factory):
    root = tmp_path_factory.mktemp("music")
    (root / "unlabeled" / "album").mkdir(parents=True)
    for i, path in enumerate(sorted(tiny_dataset.glob("instrumentals/*.wav"))):
        shutil.copy(path, root / "unlabeled" / "album" / f"track{i}.wav")
    return root


def test_token_masking_follows_the_bert_split():
    rng = np.random.default_rng(0)
    clean = rng.uniform(0, 0.9, (1, 4, 64 * 100)).astype(np.float32)
    ones = changed = kept = 0
    for _ in range(20):
        masked, mask = mask_tokens(clean, rng, 64, 0.2, (0.8, 0.1, 0.1))
        tokens = mask.reshape(100, 64)
        assert tokens.all(axis=1).sum() == 20 and (tokens.all(axis=1) | ~tokens.any(axis=1)).all(), "whole tokens"
        assert np.array_equal(masked[..., ~mask], clean[..., ~mask])
        for t in np.flatnonzero(tokens[:, 0]):
            span, orig = masked[..., t * 64:(t + 1) * 64], clean[..., t * 64:(t + 1) * 64]
            ones, kept = ones + bool((span == 1.0).all()), kept + bool(np.array_equal(span, orig))
            changed += not (span == 1.0).all() and not np.array_equal(span, orig)
    assert ones + changed + kept == 400
    assert abs(ones / 400 - 0.8) < 0.06 and abs(changed / 400 - 0.1) < 0.05 and abs(kept / 400 - 0.1) < 0.05
    assert mask_tokens(clean[..., :128], rng, 64, 0.01, (1.0, 0.0, 0.0))[1].sum() == 64, "at least one token"


def test_span_masking_covers_the_rate_with_every_fill():
    rng = np.random.default_rng(1)
    clean = rng.uniform(0, 0.9, (2, 8, 200)).astype(np.float32)
    for fill in ("one", "zero", "noise", "mean", "min", "max"):
        masked, mask = mask_spans(clean, rng, 0.2, (4, 16), (fill,))
        assert mask.sum() >= 40 and np.array_equal(masked[..., ~mask], clean[..., ~mask])
        inside = masked[..., mask]
        if fill == "one":
            assert (inside == 1.0).all()
        elif fill == "zero":
            assert (inside == 0.0).all()
        else:
            assert 0 <= inside.min() and inside.max() <= 1


@pytest.mark.parametrize("masking", ["token", "span"])
def test_pretraining_items_and_batches(music, tiny_cache, masking):
    cfg = PretrainConfig.preset("tiny", masking=masking, eq_prob=0.5, swap_prob=0.5, mixup_prob=0.5)
    ds = MaskedPretrainDataset(music, tiny_cache, cfg)
    item = ds[(0, 3)]
    assert set(item) == {"mixture", "target", "token_mask"}
    assert item["mixture"].shape == item["target"].shape == (2, 64, 16)
    assert item["token_mask"].shape == (16,) and item["token_mask"].dtype == torch.bool and item["token_mask"].any()
    assert abs(float(item["target"].max()) - 1.0) < 1e-5, "the clean crop's maximum is 1, masked input is 1.0"
    outside = ~item["token_mask"]
    assert torch.equal(item["mixture"][..., outside], item["target"][..., outside])
    assert torch.equal(MaskedPretrainDataset(music, tiny_cache, cfg)[(0, 3)]["mixture"], item["mixture"])
    batch = next(iter(DataLoader(ds, batch_sampler=StepBatchSampler(len(ds), 4))))
    assert batch["token_mask"].shape == (4, 16) and batch["mixture"].shape == (4, 2, 64, 16)


def test_pretraining_config_and_folder_errors(music, tiny_cache, tmp_path):
    with pytest.raises(ConfigError, match="multiple of token_frames"):
        PretrainConfig(cropsize=100, token_frames=64)
    with pytest.raises(ConfigError, match="bert_split"):
        PretrainConfig(bert_split=(0.5, 0.1, 0.1))
    assert PretrainConfig.from_json(PretrainConfig(masking="span").to_json()).masking == "span"
    (tmp_path / "unlabeled").mkdir()
    with pytest.raises(DataError, match="no audio files"):
        MaskedPretrainDataset(tmp_path, tiny_cache)
    with pytest.raises(DataError, match="none of the 2 files under unlabeled is usable"):
        MaskedPretrainDataset(music, tiny_cache, PretrainConfig(cropsize=4096, token_frames=64))
