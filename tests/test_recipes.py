"""Recipes: every recipe trains, evaluates and resumes in its tiny preset; finetuning groups; the
adversarial option; configs with nested sections and presets; ``ftlib train``."""
import json
import math

import pytest
import torch

from ftlib import checkpoint, cli, losses, models, recipes
from ftlib.config import ConfigError
from ftlib.data.pretrain import MaskedPretrainDataset, PretrainConfig
from ftlib.data.voxaug import VoxAugConfig, VoxAugDataset
from ftlib.errors import FtlibError
from ftlib.evaluate import Evaluation
from ftlib.recipes import finetune
from ftlib.recipes.adversarial import AdversarialConfig, AdversarialLoss, AdversarialSeparation
from ftlib.train import TrainConfig, fit


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


# ----------------------------------------------------------------------------- every recipe

# the separation recipes' tiny runs take seconds each: they run in the full tier
_SLOW_RECIPES = {"separation", "diffusion_separation"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in _SLOW_RECIPES else n
                                  for n in recipes.RECIPES])
def test_every_recipe_trains_evaluates_and_resumes_in_its_tiny_preset(name, tmp_path):
    module = recipes.get(name)
    config = module.Config.preset("tiny", train=dict(steps=4, checkpoint_every=2))
    straight = recipes.run(config, tmp_path / "a")
    recipes.run(config, tmp_path / "b", stop_after=2)
    assert not (tmp_path / "b" / "metrics.json").exists()  # stopped early: no evaluation yet
    resumed = recipes.run(config, tmp_path / "b")
    for (key, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), key
    metrics = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert metrics["recipe"] == name and len(metrics) > 2
    assert type(recipes.config_from_run(tmp_path / "a")) is module.Config
    assert recipes.config_from_run(tmp_path / "a") == config


@pytest.mark.parametrize("name", list(recipes.RECIPES))
def test_presets_round_trip_through_json_and_override_only_what_differs(name):
    module = recipes.get(name)
    assert {"tiny", "cpu", "gpu"} <= set(module.Config.PRESETS)
    for preset in recipes.presets(name):
        config = module.Config.preset(preset)
        assert module.Config.from_json(config.to_json()) == config
    default, tiny = module.Config(), module.Config.preset("tiny", seed=7)
    assert tiny.seed == 7 and tiny.train.lr == default.train.lr  # untouched fields keep the defaults


def test_config_errors_name_the_section_and_field():
    with pytest.raises(ConfigError, match=r"Config.train: TrainConfig has no field\(s\) stepz"):
        recipes.separation.Config.preset("tiny", train={"stepz": 3})
    with pytest.raises(ConfigError, match="steps"):
        recipes.separation.Config.preset("tiny", train={"steps": 0})
    with pytest.raises(ConfigError, match="needs model.init_from"):
        recipes.separation.Config.preset("tiny", finetune={"method": "llrd"})
    with pytest.raises(ConfigError, match="unknown model"):
        recipes.separation.Config.preset("tiny", model={"name": "nope"})
    with pytest.raises(ConfigError, match="unknown recipe"):
        recipes.get("gan")


def test_stft_loss_makes_the_recipe_return_the_mixture_phase():
    config = recipes.separation.Config.preset("tiny", loss={"stft": 0.1})
    parts = recipes.separation.build(config)
    assert "phase" in parts.train_data[0]
    assert (parts.loss_fn.config.n_fft, parts.loss_fn.config.hop_length) == (128, 64)  # follows the recipe's STFT


@pytest.mark.slow
def test_pretraining_scores_masked_frames_and_finetuning_starts_from_it(tmp_path):
    pretrained = recipes.run(recipes.pretraining.Config.preset("tiny"), tmp_path / "pre")
    assert "unmasked_l1" in _log(tmp_path / "pre")[0] and not (tmp_path / "pre" / "context_length.json").exists()
    best = tmp_path / "pre" / "checkpoints" / "best"
    fine = recipes.separation.Config.preset("tiny", model=dict(init_from=str(best)), finetune=dict(method="llrd"),
                                            train=dict(steps=1, lr=1e-9))
    model = recipes.run(fine, tmp_path / "fine")
    saved = checkpoint.load(best)
    delta = max(float((a - b).abs().max()) for a, b in zip(model.state_dict().values(), saved.state_dict().values()))
    assert delta < 1e-6  # a near-zero learning rate keeps the pretrained weights: it did start from them
    assert any(not torch.equal(a, b) for a, b in zip(pretrained.state_dict().values(), _model().state_dict().values()))


def test_masked_pretrain_validation_is_fixed(tiny_dataset, tiny_cache):
    cfg = PretrainConfig(cropsize=16, token_frames=4, folders=("valid",), items_per_epoch=4)
    a, b = MaskedPretrainDataset(tiny_dataset, tiny_cache, cfg), MaskedPretrainDataset(tiny_dataset, tiny_cache, cfg)
    assert all(torch.equal(a[i]["mixture"], b[i]["mixture"]) for i in range(4))


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


@pytest.mark.slow
def test_adversarial_option_checkpoints_the_generator_and_resumes_exactly(tmp_path):
    config = recipes.separation.Config.preset("tiny", adversarial=dict(enabled=True),
                                              train=dict(steps=6, checkpoint_every=2),
                                              evaluation=dict(context_cropsizes=(16,)))
    straight = recipes.run(config, tmp_path / "a")
    recipes.run(config, tmp_path / "b", stop_after=3)
    resumed = recipes.run(config, tmp_path / "b")
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    saved = checkpoint.load(tmp_path / "a" / "checkpoints" / "best")
    assert saved.model_name == "frame_transformer"
    records = [r for r in _log(tmp_path / "a") if "loss" in r]
    assert {"d_real", "d_fake", "g_adversarial"} <= set().union(*records)
    assert json.loads((tmp_path / "a" / "context_length.json").read_text())[0]["cropsize"] == 16


@pytest.mark.slow
def test_separation_keeps_the_crop_size_with_the_best_median_vocal_sdr(tmp_path, monkeypatch):
    from ftlib.recipes import separation
    config = separation.Config.preset("tiny", train=dict(steps=2), evaluation=dict(context_cropsizes=(32,), cropsize=0))
    model = recipes.run(config, tmp_path)
    # the loss favours 16 frames (the training crop size), the songs favour 32
    monkeypatch.setattr(separation, "context_length_study", lambda model, at, loss, sizes: [
        {"cropsize": c, "valid_loss": c / 100, "items": 1} for c in sizes])
    calls = []

    def scores(folder, separator, limit):
        calls.append((separator.cropsize, separator.padding))
        rows = [{"song": "a", "sdr_vocals": separator.cropsize / 10}, {"song": "b", "sdr_vocals": 0.0}]
        return Evaluation("model", rows, {"songs": [{"name": "a"}, {"name": "b"}]})

    monkeypatch.setattr(separation, "run_evaluation", scores)
    out = separation.evaluate(model, config, tmp_path)
    assert [(r["cropsize"], r["vocals_sdr"]) for r in out["context_length"]] == [(16, 0.8), (32, 1.6)]
    assert calls == [(16, 4), (32, 8)]  # the songs at the chosen crop size are not separated twice
    assert (out["cropsize"], out["sdr_vocals"]) == (32, 1.6)  # the mean over the songs
    assert out["fingerprint"]["songs"] == [{"name": "a"}, {"name": "b"}] and len(out["songs"]) == 2
    header = checkpoint.read_header(tmp_path / "checkpoints" / "best")
    assert header["inference"]["best_cropsize"] == 32
    out = separation.evaluate(model, config.replace(evaluation=dict(songs=0)), tmp_path)
    assert model.inference["best_cropsize"] == 16 and "vocals_sdr" not in out["context_length"][0]


@pytest.mark.slow
def test_a_run_evaluates_and_returns_the_checkpoint_it_leaves_for_separating(tmp_path, monkeypatch):
    from ftlib.recipes import separation
    trained, evaluated = separation.train, []

    def last_step_unlike_best(config, run_dir, stop_after=None):
        model = trained(config, run_dir, stop_after)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(1.0)
        return model

    monkeypatch.setattr(separation, "train", last_step_unlike_best)
    monkeypatch.setattr(separation, "evaluate", lambda model, config, run_dir: evaluated.append(model) or {})
    model = recipes.run(separation.Config.preset("tiny", train=dict(steps=2)), tmp_path)
    best = checkpoint.load(tmp_path / "checkpoints" / "best")
    assert evaluated == [model]
    for (name, a), b in zip(best.state_dict().items(), model.state_dict().values()):
        assert torch.equal(a, b), name


# --------------------------------------------------------------------------------- ftlib train

def test_train_command_parses_dotted_overrides_and_names_bad_ones():
    parsed = cli.parse_set(["train.steps=10", "seed=3", 'data.synth.vocal_gain_db=[-1, 1]', "train.lr=3e-4",
                            "model.preset=small"])
    assert parsed == {"train": {"steps": 10, "lr": 3e-4}, "seed": 3, "data": {"synth": {"vocal_gain_db": [-1, 1]}},
                      "model": {"preset": "small"}}
    with pytest.raises(FtlibError, match="NAME=VALUE"):
        cli.parse_set(["steps"])


def test_train_command_lists_recipes_and_trains_a_preset_into_a_run_folder(tmp_path, capsys):
    assert cli.main(["train", "--list"]) == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in recipes.RECIPES) and "tiny, cpu, gpu" in listed
    run_dir = tmp_path / "run"
    assert cli.main(["train", "pretraining", "--preset", "tiny", "--set", "train.steps=3", "--run-dir", str(run_dir)]) == 0
    assert [r["step"] for r in _log(run_dir) if "loss" in r][-1] == 3
    assert json.loads((run_dir / "config.json").read_text())["recipe"] == "pretraining"
    assert cli.main(["train", "--preset", "tiny", "--set", "train.stepz=3", "--run-dir", str(tmp_path / "x")]) == 2


@pytest.mark.slow
@pytest.mark.parametrize("name,overrides", [("frame_transformer", {"output": "complex_mask"}), ("bs_roformer", {}),
                                            ("mel_roformer", {}), ("conv_unet", {"mid_side": True})],
                         ids=["frame_transformer_complex", "bs", "mel", "conv_unet_mid_side"])
def test_separation_recipe_trains_and_evaluates_complex_mask_models(name, overrides, tmp_path):
    config = recipes.separation.Config.preset("tiny", model=dict(name=name, preset="tiny", overrides=overrides),
                                              train=dict(steps=2), evaluation=dict(context_cropsizes=(16,)))
    parts = recipes.separation.build(config)
    assert models.is_complex(parts.model) and parts.model.config.num_bins == 64
    item = parts.train_data[0]
    assert item["mixture"].is_complex() and item["target"].is_complex() and "phase" not in item
    assert parts.valid_data[0]["mixture"].is_complex()
    recipes.run(config, tmp_path)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert all(math.isfinite(row["sdr_vocals"]) for row in metrics["songs"])
    loaded = checkpoint.load(tmp_path / "checkpoints" / "best")
    assert models.is_complex(loaded) and loaded.config == parts.model.config


def test_the_adversarial_option_refuses_complex_mask_models():
    config = recipes.separation.Config.preset("tiny", adversarial=dict(enabled=True),
                                              model=dict(overrides={"output": "complex_mask"}))
    with pytest.raises(ConfigError, match="complex-mask"):
        recipes.separation.build(config)
