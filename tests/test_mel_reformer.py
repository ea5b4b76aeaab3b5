"""mel_reformer: shapes, folding, gradients, determinism, save/load, causality, length head, KV
cache, attention against a plain softmax reference, and the mel-expansion losses."""
import json
import math

import pytest
import torch

from ftlib import checkpoint, models
from ftlib.data.mel_chunks import FixedChunks
from ftlib.errors import ConfigError
from ftlib.losses import frame_mask, masked_mean_l1, multiscale_l1, spectral_gradient_l1
from ftlib.recipes.mel_expansion import MelExpansionLoss, MelLossConfig, expand, mel_l1, reconstruct
from ftlib.models.mel_reformer import Attention, MelReformer, MelReformerConfig
from ftlib.train import TrainConfig, fit


def _model(seed: int = 0, **overrides) -> MelReformer:
    torch.manual_seed(seed)
    return models.build("mel_reformer", "tiny", **overrides).eval()


def _mel(batch: int = 2, frames: int = 12, seed: int = 1, n_mels: int = 32) -> torch.Tensor:
    return torch.randn(batch, 1, n_mels, frames, generator=torch.Generator().manual_seed(seed)) * 2 - 5


@pytest.mark.parametrize("fold", [1, 3, 4])
@pytest.mark.parametrize("frames", [1, 7, 16])
def test_shapes_for_lengths_and_fold_sizes(fold, frames):
    model = _model(fold=fold)
    mel = _mel(frames=frames)
    tokens = model.fold_tokens(mel)
    assert tokens.shape == (2, math.ceil(frames / fold), 32 * fold)
    torch.testing.assert_close(model.unfold_tokens(tokens)[..., :frames], mel)
    estimate, log_frames = model(mel)
    assert estimate.shape == mel.shape and log_frames.shape == (2,)
    assert model.idea(mel).shape == (2, 1, 32, model.config.idea_width)


def test_token_layout_stacks_adjacent_columns():
    model = _model(fold=2)
    mel = torch.arange(3 * 4, dtype=torch.float32).reshape(1, 1, 3, 4)  # 3 bands, 4 frames
    model.config.n_mels = 3
    tokens = model.fold_tokens(mel)
    assert tokens.shape == (1, 2, 6)
    assert tokens[0, 0].tolist() == [0, 1, 4, 5, 8, 9]  # frames 0 and 1 of every band


def test_gradients_reach_every_parameter():
    model = _model().train()
    mel, frames = _mel(frames=10), torch.tensor([10, 6])
    loss, metrics = MelExpansionLoss(MelLossConfig.preset("sharp"))(model, {"mel": mel, "frames": frames})
    loss.backward()
    assert set(metrics) == {"l1", "length", "multiscale", "gradient"}
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_deterministic_under_a_seed():
    mel = _mel()
    a, b, c = _model(0)(mel)[0], _model(0)(mel)[0], _model(1)(mel)[0]
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.allclose(a, c)


def test_save_load_round_trip(tmp_path):
    model = _model(fold=3, dim=48)
    checkpoint.save(model, tmp_path / "ckpt")
    loaded = checkpoint.load(tmp_path / "ckpt").eval()
    assert isinstance(loaded, MelReformer) and loaded.config == model.config
    mel = _mel(frames=9)
    torch.testing.assert_close(loaded(mel)[0], model(mel)[0], rtol=0, atol=0)
    torch.testing.assert_close(loaded.generate(loaded.idea(mel), 9)[0], model.generate(model.idea(mel), 9)[0], rtol=0, atol=0)
    assert json.loads((tmp_path / "ckpt" / "config.json").read_text())


def test_changing_a_future_token_leaves_earlier_outputs():
    model = _model()
    memory, _ = model.encode(model.idea(_mel(frames=24)))
    cross = model.cross_keys_values(memory)
    frames = torch.tensor([24, 24])
    inputs = model.fold_tokens(model.standardise(_mel(frames=24, seed=3)))
    changed = inputs.clone()
    changed[:, 4] += 1.0
    before, after = model.decode(inputs, cross, frames), model.decode(changed, cross, frames)
    torch.testing.assert_close(before[:, :4], after[:, :4], rtol=0, atol=1e-6)
    assert not torch.allclose(before[:, 4:], after[:, 4:])


def test_generate_uses_the_length_head():
    model = _model()
    idea = model.idea(_mel())
    head = model.length_head[-1]
    for frames in (13, 40):
        with torch.no_grad():
            head.weight.zero_()
            head.bias.fill_(math.log(frames))
        mel, got = model.generate(idea)
        assert got.tolist() == [frames, frames] and mel.shape == (2, 1, 32, frames)
    mel, got = model.generate(idea, frames=torch.tensor([5, 9]))  # a known length overrides the head
    assert got.tolist() == [5, 9] and mel.shape[-1] == 9
    assert torch.all(mel[0, ..., 5:] == model.config.floor) and not torch.all(mel[1, ..., 5:] == model.config.floor)


def test_cached_generation_matches_recomputing_the_prefix():
    model = _model(fold=2)
    idea = model.idea(_mel(frames=20))
    cached, frames = model.generate(idea, frames=torch.tensor([40, 31]), use_cache=True)
    full, frames_full = model.generate(idea, frames=torch.tensor([40, 31]), use_cache=False)
    assert torch.equal(frames, frames_full) and cached.shape == (2, 1, 32, 40)
    torch.testing.assert_close(cached, full, rtol=1e-5, atol=1e-5)


def test_generation_longer_than_max_tokens_is_refused():
    model = _model(max_tokens=4)
    with pytest.raises(ConfigError, match="max_tokens"):
        model.generate(model.idea(_mel()), frames=17)
    with pytest.raises(ConfigError, match="max_tokens"):
        model(_mel(frames=17))
    with pytest.raises(ConfigError, match="idea_width"):
        model.encode(_mel(frames=5))


@pytest.mark.parametrize("causal", [False, True])
def test_attention_matches_plain_softmax(causal):
    torch.manual_seed(0)
    attn = Attention(dim=16, num_heads=4).eval()
    x, source = torch.randn(2, 7, 16), torch.randn(2, 7, 16)
    keys, values = attn.keys_values(source)
    q = attn.q(x).reshape(2, 7, 4, 4).transpose(1, 2)
    scores = q @ keys.transpose(-1, -2) / math.sqrt(4)
    if causal:
        scores = scores.masked_fill(torch.ones(7, 7, dtype=torch.bool).triu(1), float("-inf"))
    reference = attn.o((scores.softmax(-1) @ values).transpose(1, 2).reshape(2, 7, 16))
    torch.testing.assert_close(attn(x, keys, values, causal=causal), reference, rtol=1e-5, atol=1e-6)


def test_losses_ignore_padding_and_score_blur():
    target = _mel(frames=16)
    mask = frame_mask(torch.tensor([16, 10]), 16)
    estimate = target + 0.1 * torch.randn_like(target)
    padded = estimate.clone()
    padded[1, ..., 10:] = 50.0
    for fn in (masked_mean_l1, multiscale_l1, spectral_gradient_l1):
        torch.testing.assert_close(fn(padded, target, mask), fn(estimate, target, mask))
    blurred = torch.nn.functional.avg_pool2d(target, 3, stride=1, padding=1, count_include_pad=False)
    assert spectral_gradient_l1(blurred, target, mask) > spectral_gradient_l1(target, target, mask) == 0


def test_fit_trains_and_helpers_run(tmp_path):
    items = [{"mel": _mel(1, 16, seed=i)[0], "frames": torch.tensor(16 - 4 * (i % 2))} for i in range(8)]
    data = FixedChunks(items)
    model = fit(_model().train(), MelExpansionLoss(), data, TrainConfig.preset("tiny", steps=4), tmp_path / "run",
                valid_data=data, valid_loss_fn=mel_l1)
    log = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert {"loss", "l1", "length"} <= set(log[0]) and math.isfinite(log[-1]["valid_loss"])
    batch = {k: torch.stack([it[k] for it in items[:2]]) for k in items[0]}
    assert reconstruct(model, batch["mel"], batch["frames"]).shape == batch["mel"].shape
    mel, frames = expand(model, batch["mel"], batch["frames"], known_length=True)
    assert frames.tolist() == [16, 12] and mel.shape == (2, 1, 32, 16)
    assert model.training  # helpers restore the mode


def test_config_validation():
    with pytest.raises(ConfigError, match="divisible"):
        MelReformerConfig.preset("tiny", num_heads=3)
    with pytest.raises(ConfigError, match="fold"):
        MelReformerConfig.preset("tiny", fold=0)
