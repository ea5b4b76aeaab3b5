"""Recipes and their parts: losses, finetuning groups, adversarial steps, curriculum, EMA, precision."""
import json

import pytest
import torch

from ftlib import checkpoint, losses, models
from ftlib.data.pretrain import MaskedPretrainDataset, PretrainConfig
from ftlib.data.voxaug import ValidationCrops, VoxAugConfig, VoxAugDataset
from ftlib.train import TrainConfig, context_length_study, finetune, fit, latest_checkpoint, recipes
from ftlib.train.adversarial import AdversarialConfig, AdversarialLoss, AdversarialSeparation
from ftlib.train.ema import EMA


def _model(seed=0, **overrides):
    torch.manual_seed(seed)
    return models.build("frame_transformer", "tiny", **overrides)


def _log(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _batch(seed=0, frames=16):
    g = torch.Generator().manual_seed(seed)
    mixture = torch.rand(2, 2, 64, frames, generator=g)
    return {"mixture": mixture, "target": mixture * torch.rand(2, 2, 64, frames, generator=g)}


@pytest.fixture
def voxaug(tiny_dataset, tiny_cache):
    return VoxAugDataset(tiny_dataset, tiny_cache, VoxAugConfig(cropsize=16, items_per_epoch=12))


# ------------------------------------------------------------------------------------ losses

def test_separation_loss_defaults_to_plain_l1_and_spectral_terms_vanish_at_the_target():
    model, batch = _model(), _batch()
    with torch.no_grad():
        assert float(losses.SeparationLoss()(model, batch)[0]) == pytest.approx(float(losses.separation_l1(model, batch)[0]))
    loss = losses.SeparationLoss(mel=1.0, multi_resolution=1.0, num_mels=16, sample_rate=8000)
    target = batch["target"]
    assert all(float(v) < 1e-6 for v in loss.terms(target, target).values())
    terms = loss.terms(target * 0.5, target)
    assert set(terms) == {"l1", "mel", "multi_resolution"} and all(float(v) > 0 for v in terms.values())


def test_stft_loss_resynthesises_with_the_mixture_phase(tiny_dataset, tiny_cache):
    from ftlib.audio import Spectrogram

    spec = Spectrogram(n_fft=128, hop_length=64)
    t = torch.arange(4096) / 8000
    wave = torch.stack([torch.sin(2 * torch.pi * 440 * t), 0.5 * torch.sin(2 * torch.pi * 1234 * t)])
    complex_spec = spec.stft(wave)[None, :, :-1]  # [1, C, F, T], Nyquist dropped as models see it
    back = losses.resynthesise(complex_spec.abs(), complex_spec.angle(), 128, 64)
    assert back.shape[0] == 2 and torch.allclose(back, wave[:, :back.shape[-1]], atol=1e-2)  # Nyquist leakage only

    data = VoxAugDataset(tiny_dataset, tiny_cache, VoxAugConfig(cropsize=16, items_per_epoch=4, return_phase=True))
    batch = {k: torch.stack([data[i][k] for i in range(2)]) for k in ("mixture", "target", "phase")}
    assert batch["phase"].shape == batch["mixture"].shape and float(batch["phase"].abs().max()) <= 3.1416
    loss = losses.SeparationLoss(l1=0.0, stft=1.0, n_fft=128, hop_length=64, stft_resolutions=((32, 8), (64, 16)))
    target = batch["target"]
    assert float(loss.terms(target, target, batch["phase"])["stft"]) < 1e-4
    model = _model()
    value, _ = loss(model, batch)
    value.backward()
    assert float(value.detach()) > 0 and any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    with pytest.raises(ValueError, match="return_phase"):
        loss(model, {"mixture": batch["mixture"], "target": target})


def test_masked_l1_ignores_unmasked_frames():
    batch = {**_batch(), "token_mask": torch.zeros(2, 16, dtype=torch.bool)}
    batch["token_mask"][:, 4:8] = True

    class Fixed(torch.nn.Module):
        def __init__(self, mask):
            super().__init__()
            self.mask = mask

        def forward(self, x):
            return self.mask

    mask = torch.rand(2, 2, 64, 16)
    changed = mask.clone()
    changed[..., :4] = 1 - changed[..., :4]  # only unmasked frames differ
    a, b = losses.masked_l1(Fixed(mask), batch)[0], losses.masked_l1(Fixed(changed), batch)[0]
    assert float(a) == pytest.approx(float(b))
    changed[..., 5] = 1 - changed[..., 5]
    assert float(losses.masked_l1(Fixed(changed), batch)[0]) != pytest.approx(float(a))


# -------------------------------------------------------------------------------- finetuning

def test_llrd_scales_the_learning_rate_down_towards_the_input():
    model = _model()
    groups = finetune.param_groups(model, "llrd", decay=0.5)
    names = {id(p): n for n, p in model.named_parameters()}
    scale = {names[id(p)]: g["lr_scale"] for g in groups for p in g["params"]}
    assert len(scale) == len(names)
    assert scale["out.weight"] == 1.0
    assert scale["encoders.0.conv1.weight"] < scale["encoders.2.conv1.weight"] < scale["decoders.1.conv1.weight"] <= 1.0


@pytest.mark.parametrize("method", ["transformer", "last_decoders"])
def test_partial_finetuning_moves_only_the_chosen_modules(voxaug, tmp_path, method):
    model = _model()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    groups = finetune.param_groups(model, method, last_decoders=1)
    trained = {n for n, p in model.named_parameters() if p.requires_grad}
    fit(model, losses.separation_l1, voxaug, TrainConfig(steps=3, batch_size=2, lr=1e-2, warmup_steps=1,
                                                         weight_decay=0.1), tmp_path / "run", param_groups=groups)
    moved = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert moved and moved <= trained
    assert any("encoders.0" in n for n in before) and not any("encoders.0.conv" in n for n in moved)
    if method == "transformer":
        assert all("_tfs." in n for n in trained)
    else:
        assert all(n.startswith(("decoders.1", "decoder_tfs.1", "out")) for n in trained)


# ------------------------------------------------------------------------------- adversarial

def _pair(l1_weight=1.0):
    discriminator = models.build("patch_discriminator", "tiny", in_channels=2)
    return AdversarialSeparation(_model(), discriminator, AdversarialConfig(l1_weight=l1_weight))


def test_generator_receives_the_adversarial_gradient_and_the_discriminator_does_not_move():
    pair, batch = _pair(l1_weight=0.0), _batch()
    loss, _ = pair(batch["mixture"], batch["target"], "generator")
    loss.backward()
    assert all(p.grad is None for p in pair.discriminator.parameters())
    grads = [p.grad for p in pair.generator.parameters() if p.grad is not None]
    assert grads and sum(float(g.abs().sum()) for g in grads) > 0


def test_discriminator_step_leaves_the_generator_alone_and_learns_the_right_labels():
    pair, batch = _pair(), _batch()
    loss, _ = pair(batch["mixture"], batch["target"], "discriminator")
    loss.backward()
    assert all(p.grad is None for p in pair.generator.parameters())
    opt = torch.optim.Adam(pair.discriminator.parameters(), lr=1e-3)
    for _ in range(30):
        opt.zero_grad()
        pair(batch["mixture"], batch["target"], "discriminator")[0].backward()
        opt.step()
    with torch.no_grad():
        estimate = pair.generator(batch["mixture"]) * batch["mixture"]
        real = pair.discriminator(batch["mixture"], batch["target"]).mean()
        fake = pair.discriminator(batch["mixture"], estimate).mean()
    assert real > fake  # real pairs score higher: labels are not inverted


def test_adversarial_loss_alternates_by_step():
    loss = AdversarialLoss(discriminator_every=3)
    phases = []
    for step in range(6):
        loss.begin_step(step)
        phases.append(loss.phase)
    assert phases == ["discriminator", "generator", "generator"] * 2


def test_adversarial_recipe_checkpoints_the_generator_and_resumes_exactly(tmp_path):
    cfg = recipes.RecipeConfig.preset("tiny", recipe="adversarial", train=dict(steps=6, checkpoint_every=2),
                                      context_cropsizes=(16,))
    straight = recipes.run(cfg, tmp_path / "a")
    recipes.run(cfg, tmp_path / "b", stop_after=3)
    resumed = recipes.run(cfg, tmp_path / "b")
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    saved = checkpoint.load(tmp_path / "a" / "checkpoints" / "best")
    assert saved.model_name == "frame_transformer"
    records = [r for r in _log(tmp_path / "a") if "loss" in r]
    assert {"d_real", "d_fake", "g_adversarial"} <= set().union(*records)
    assert json.loads((tmp_path / "a" / "context_length.json").read_text())[0]["cropsize"] == 16


# ------------------------------------------------------------------- curriculum, EMA, precision

def test_curriculum_switches_crop_size_and_batch_and_resumes_across_stages(tiny_dataset, tiny_cache, tmp_path):
    def data(cropsize):
        return VoxAugDataset(tiny_dataset, tiny_cache, VoxAugConfig(cropsize=cropsize, items_per_epoch=12))

    cfg = TrainConfig(steps=6, lr=1e-3, warmup_steps=1, log_every=1, checkpoint_every=1,
                      curriculum=((0, 16, 2), (3, 32, 1, 2)))
    straight = fit(_model(), losses.separation_l1, data, cfg, tmp_path / "a")
    log = [r for r in _log(tmp_path / "a") if "loss" in r]
    assert [(r["cropsize"], r["batch"]) for r in log] == [(16, 2)] * 3 + [(32, 2)] * 3
    fit(_model(), losses.separation_l1, data, cfg, tmp_path / "b", stop_after=4)
    resumed = fit(_model(seed=5), losses.separation_l1, data, cfg, tmp_path / "b")
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name


def test_curriculum_is_validated():
    with pytest.raises(ValueError, match="start at step 0"):
        TrainConfig(curriculum=((5, 16, 2),))
    with pytest.raises(ValueError, match="cropsize >= 1"):
        TrainConfig(curriculum=((0, 0, 2),))


def test_ema_averages_and_resumes_exactly(voxaug, tmp_path):
    model = torch.nn.Linear(2, 2)
    ema = EMA(model, decay=0.5)
    with torch.no_grad():
        model.weight.add_(1.0)
    start = ema.shadow["weight"].clone()
    ema.update(model)
    d = min(0.5, 2 / 11)
    assert torch.allclose(ema.shadow["weight"], d * start + (1 - d) * model.weight)

    cfg = TrainConfig(steps=6, batch_size=2, lr=1e-2, warmup_steps=1, ema_decay=0.9, checkpoint_every=2)
    straight = fit(_model(), losses.separation_l1, voxaug, cfg, tmp_path / "a")
    raw = checkpoint.load(latest_checkpoint(tmp_path / "a"))
    assert not all(torch.equal(a, b) for a, b in zip(straight.state_dict().values(), raw.state_dict().values()))
    ema_saved = checkpoint.load(tmp_path / "a" / "checkpoints" / "ema")
    assert all(torch.equal(a, b) for a, b in zip(straight.state_dict().values(), ema_saved.state_dict().values()))
    fit(_model(), losses.separation_l1, voxaug, cfg, tmp_path / "b", stop_after=3)
    resumed = fit(_model(), losses.separation_l1, voxaug, cfg, tmp_path / "b")
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name


class _InfGradient(torch.autograd.Function):
    """Identity forward; backward sends an infinite gradient (a finite loss that overflows)."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * float("inf")


class _OverflowAt:
    """Separation L1 whose gradient overflows at one step (None: never); records the autocast dtypes."""

    def __init__(self, step):
        self.overflow_step, self.step, self.autocast = step, -1, set()

    def begin_step(self, step):
        self.step = step

    def __call__(self, model, batch):
        self.autocast.add(torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None)
        loss, metrics = losses.separation_l1(model, batch)
        return (_InfGradient.apply(loss) if self.step == self.overflow_step else loss), metrics


def test_fp16_scales_the_loss_skips_overflowing_steps_and_resumes_the_scaler(voxaug, tmp_path):
    cfg = TrainConfig(steps=4, batch_size=2, warmup_steps=1, log_every=1, mixed_precision="fp16",
                      checkpoint_every=1, keep_last=4)
    loss_fn = _OverflowAt(1)
    straight = fit(_model(), loss_fn, voxaug, cfg, tmp_path / "a")
    assert loss_fn.autocast == {torch.float16}
    assert [r["skipped_steps"] for r in _log(tmp_path / "a")] == [0, 1, 1, 1]
    checkpoints = tmp_path / "a" / "checkpoints"
    assert checkpoint.load_state(checkpoints / "step-0000004")["scaler"]["scale"] == 2.0 ** 15  # halved once
    before, after = (checkpoint.load(checkpoints / f"step-000000{i}") for i in (1, 2))
    assert all(torch.equal(a, b) for a, b in zip(before.state_dict().values(), after.state_dict().values()))
    fit(_model(), _OverflowAt(1), voxaug, cfg, tmp_path / "b", stop_after=2)
    resumed = fit(_model(), _OverflowAt(1), voxaug, cfg, tmp_path / "b")
    assert checkpoint.load_state(tmp_path / "b" / "checkpoints" / "step-0000004")["scaler"]["scale"] == 2.0 ** 15
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name


def test_bf16_mixed_precision_trains_with_finite_losses(voxaug, tmp_path):
    cfg = TrainConfig(steps=3, batch_size=2, warmup_steps=1, log_every=1, mixed_precision="bf16")
    loss_fn = _OverflowAt(None)
    model = fit(_model(), loss_fn, voxaug, cfg, tmp_path / "run")
    assert loss_fn.autocast == {torch.bfloat16}
    assert all(r["skipped_steps"] == 0 and r["loss"] == r["loss"] for r in _log(tmp_path / "run"))
    assert all(p.dtype == torch.float32 for p in model.parameters())  # weights stay float32


# ------------------------------------------------------------------ recipes and validation

def test_pretrain_recipe_scores_masked_frames_and_finetune_starts_from_it(tmp_path):
    pre = recipes.RecipeConfig.preset("tiny", recipe="pretrain",
                                      data=dict(token_frames=4, folders=["instrumentals", "vocals"]))
    pretrained = recipes.run(pre, tmp_path / "pre")
    assert "unmasked_l1" in _log(tmp_path / "pre")[0] and not (tmp_path / "pre" / "context_length.json").exists()
    best = tmp_path / "pre" / "checkpoints" / "best"
    fine = recipes.RecipeConfig.preset("tiny", init_from=str(best), finetune="llrd", train=dict(steps=1, lr=1e-9))
    model = recipes.run(fine, tmp_path / "fine")
    saved = checkpoint.load(best)
    delta = max(float((a - b).abs().max()) for a, b in zip(model.state_dict().values(), saved.state_dict().values()))
    assert delta < 1e-6  # a near-zero learning rate keeps the pretrained weights: it did start from them
    assert any(not torch.equal(a, b) for a, b in zip(pretrained.state_dict().values(), _model().state_dict().values()))


def test_recipe_config_errors_name_the_field():
    with pytest.raises(ValueError, match="recipe must be one of"):
        recipes.RecipeConfig(recipe="gan")
    with pytest.raises(ValueError, match="needs init_from"):
        recipes.RecipeConfig(finetune="llrd")
    with pytest.raises(ValueError, match="train: .*steps"):
        recipes.RecipeConfig(train={"steps": 0})


def test_context_length_study_scores_each_crop_size(tiny_dataset, tiny_cache):
    valid = ValidationCrops(tiny_dataset / "valid", tiny_cache, cropsize=16)
    rows = context_length_study(_model(), valid.at, losses.separation_l1, cropsizes=(16, 64, 10**6))
    assert [r["cropsize"] for r in rows] == [16, 64]  # a crop longer than every song is left out
    assert rows[0]["items"] > rows[1]["items"] > 0 and all(r["valid_loss"] > 0 for r in rows)


def test_masked_pretrain_validation_is_fixed(tiny_dataset, tiny_cache):
    cfg = PretrainConfig(cropsize=16, token_frames=4, folders=("valid",), items_per_epoch=4)
    a, b = MaskedPretrainDataset(tiny_dataset, tiny_cache, cfg), MaskedPretrainDataset(tiny_dataset, tiny_cache, cfg)
    assert all(torch.equal(a[i]["mixture"], b[i]["mixture"]) for i in range(4))


def test_stft_loss_makes_the_recipe_return_the_mixture_phase():
    cfg = recipes.RecipeConfig.preset("tiny", loss={"stft": 0.1})
    train, _ = recipes.build_data(cfg, recipes.dataset_root(cfg), recipes.spectrogram_cache(cfg))
    assert "phase" in train[0]
    loss_fn, _ = recipes.build_loss(cfg)
    assert (loss_fn.config.n_fft, loss_fn.config.hop_length) == (128, 64)  # follows the recipe's spectrogram


def test_train_command_parses_dotted_overrides_and_names_bad_ones():
    from ftlib.errors import FtlibError
    from ftlib.train.__main__ import overrides

    parsed = overrides(["train.steps=10", "recipe=pretrain", 'data.folders=["a", "b"]', "train.lr=3e-4"])
    assert parsed == {"train": {"steps": 10, "lr": 3e-4}, "recipe": "pretrain", "data": {"folders": ["a", "b"]}}
    with pytest.raises(FtlibError, match="NAME=VALUE"):
        overrides(["steps"])
