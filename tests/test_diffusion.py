"""Diffusion: schedules, forward noising, eps/v/x0 conversions, samplers (oracle denoisers), the
timestep-conditioned frame transformer, conditional separation through Separator, the idea dataset."""
import math

import numpy as np
import pytest
import torch

from ftlib import audio, checkpoint, diffusion, models
from ftlib.data import mel_chunks
from ftlib.data.sources import scan_songs, scan_stems
from ftlib.errors import CheckpointError, ConfigError
from ftlib.layers import FrameTransformerBlock
from ftlib.mel import MelConfig
from ftlib.recipes import diffusion_separation
from ftlib.separation import Separator, load_model

from conftest import TINY_SPEC


def _process(**overrides):
    return diffusion.Diffusion(diffusion.DiffusionConfig.preset("tiny", **overrides))


def _denoiser(condition=True, **overrides):
    config = models.lookup("frame_transformer")[0].preset("tiny", **overrides)
    torch.manual_seed(0)
    return models.from_config("frame_transformer",
                              diffusion.denoiser_config(config, config.in_channels if condition else 0))


def _oracle(process, x0):
    """A denoiser that knows x0: returns the true eps (or v) of any x_t."""
    def denoise(x_t, t, condition=None):
        eps = process.eps_from_x0(x_t, t, x0)
        return eps if process.config.objective == "eps" else process.v_from(x0, t, eps)
    return denoise


# ---------------------------------------------------------------------------------- schedule

@pytest.mark.parametrize("schedule", ["linear", "cosine"])
@pytest.mark.parametrize("timesteps", [10, 1000])
def test_alpha_bar_decreases_inside_zero_one(schedule, timesteps):
    process = diffusion.Diffusion(schedule=schedule, timesteps=timesteps, sampling_steps=5)
    ab = process.alpha_bar
    assert ab.shape == (timesteps,) and bool((ab > 0).all() and (ab < 1).all())
    assert bool((ab[1:] < ab[:-1]).all())
    assert bool((process.betas > 0).all() and (process.betas <= 0.999).all())


def test_cosine_and_linear_endpoints():
    linear, cosine = (diffusion.Diffusion(schedule=s).alpha_bar for s in ("linear", "cosine"))
    assert linear[0] > 0.999 and cosine[0] > 0.999  # the first step barely adds noise
    assert cosine[-1] < linear[-1] < 1e-3  # both end in (nearly) pure noise; cosine all the way
    assert cosine[499] > 2 * linear[499]  # cosine destroys information more slowly in the middle
    short = diffusion.Diffusion(schedule="linear", timesteps=100, sampling_steps=5).alpha_bar
    assert abs(math.log(short[-1]) - math.log(linear[-1])) < 0.5 * abs(math.log(linear[-1]))  # betas scaled by 1000/T


def test_q_sample_mean_and_std():
    process = _process(timesteps=100)
    gen = torch.Generator().manual_seed(0)
    x0 = torch.full((20000, 1), 0.7, dtype=torch.float64)
    for step in (0, 30, 99):
        t = torch.full((len(x0),), step)
        x_t = process.q_sample(x0, t, torch.randn(x0.shape, generator=gen, dtype=torch.float64))
        ab = float(process.alpha_bar[step])
        assert abs(float(x_t.mean()) - math.sqrt(ab) * 0.7) < 0.03
        assert abs(float(x_t.std()) - math.sqrt(1 - ab)) < 0.03


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_eps_v_x0_conversions_invert_each_other(schedule):
    process = diffusion.Diffusion(schedule=schedule, timesteps=200, sampling_steps=5)
    gen = torch.Generator().manual_seed(1)
    x0, eps = (torch.randn(8, 2, 4, 3, generator=gen, dtype=torch.float64) for _ in range(2))
    t = torch.randint(0, 200, (8,), generator=gen)
    x_t = process.q_sample(x0, t, eps)
    v = process.v_from(x0, t, eps)
    torch.testing.assert_close(process.x0_from_eps(x_t, t, eps), x0)
    torch.testing.assert_close(process.eps_from_x0(x_t, t, x0), eps)
    torch.testing.assert_close(process.x0_from_v(x_t, t, v), x0)
    torch.testing.assert_close(process.eps_from_v(x_t, t, v), eps)
    v_process = diffusion.Diffusion(schedule=schedule, timesteps=200, sampling_steps=5, objective="v")
    for p, output in ((process, eps), (v_process, v)):
        got_x0, got_eps = p.predict(output, x_t, t, clip=0)
        torch.testing.assert_close(got_x0, x0)
        torch.testing.assert_close(got_eps, eps)


def test_config_validation():
    with pytest.raises(ConfigError, match="schedule"):
        diffusion.DiffusionConfig(schedule="sigmoid")
    with pytest.raises(ConfigError, match="objective"):
        diffusion.DiffusionConfig(objective="x0")
    with pytest.raises(ConfigError, match="sampling_steps"):
        diffusion.DiffusionConfig(timesteps=10, sampling_steps=20)
    with pytest.raises(ConfigError, match="DDIM steps"):
        _process().sample_steps("ddim", 500)
    with pytest.raises(ConfigError, match="timestep"):
        diffusion.denoiser_config(models.lookup("temporal_unet")[0].preset("tiny"))


# ---------------------------------------------------------------------------------- samplers

@pytest.mark.parametrize("objective", ["eps", "v"])
@pytest.mark.parametrize("sampler,steps,eta", [("ddpm", None, 0.0), ("ddim", 5, 0.0), ("ddim", 3, 1.0)])
def test_oracle_denoiser_recovers_x0(objective, sampler, steps, eta):
    process = _process(timesteps=50, objective=objective)
    x0 = torch.rand(3, 2, 8, 5, generator=torch.Generator().manual_seed(2)) * 1.8 - 0.9
    out = process.sample(_oracle(process, x0), x0.shape, sampler=sampler, steps=steps, eta=eta,
                         generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(out, x0, atol=1e-4, rtol=0)


def test_ddim_with_eta_zero_is_deterministic_and_seeded():
    process = _process()
    denoiser = _denoiser(condition=False)
    shape = (2, 2, 64, 6)
    a, b, c = (process.sample(denoiser, shape, sampler="ddim", steps=4, eta=0.0,
                              generator=torch.Generator().manual_seed(s)) for s in (7, 7, 8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert process.sample_steps("ddim", 4) == [49, 33, 16, 0]


def test_ddpm_equals_ddim_with_eta_one_over_every_step():
    process = _process(timesteps=20)
    denoiser = _denoiser(condition=False)
    shape = (1, 2, 64, 4)
    ddpm = process.sample(denoiser, shape, sampler="ddpm", generator=torch.Generator().manual_seed(0))
    ddim = process.sample(denoiser, shape, sampler="ddim", steps=20, eta=1.0,
                          generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(ddpm, ddim, atol=1e-4, rtol=1e-4)


def test_trajectory_records_every_step():
    process = _process()
    x, history = process.sample(_denoiser(condition=False), (1, 2, 64, 4), steps=4, trajectory=True,
                                generator=torch.Generator().manual_seed(0))
    assert [h["t"] for h in history] == process.sample_steps("ddim", 4)
    assert history[0]["x_t"].shape == x.shape and float(history[-1]["x0"].abs().max()) <= 1.0


# ---------------------------------------------------------------------------------- denoiser

def test_default_frame_transformer_is_unchanged():
    model = models.build("frame_transformer", "tiny")
    assert model.task == "separation" and not any("time" in k for k in model.state_dict())
    with pytest.raises(ValueError, match="no time embedding"):
        model(torch.rand(1, 2, 64, 4), t=torch.zeros(1, dtype=torch.long))


def test_timestep_embedding_changes_the_output_and_gets_gradients():
    model = _denoiser(condition=False, transformer_from_level=1)
    x = torch.randn(2, 2, 64, 8)
    out_early, out_late = model(x, torch.tensor([1, 1])), model(x, torch.tensor([40, 40]))
    assert (out_early - out_late).abs().max() > 1e-4
    out_early.square().mean().backward()
    grads = [p.grad for name, p in model.named_parameters() if "time" in name]
    blocks = [m for m in model.modules() if isinstance(m, FrameTransformerBlock)]
    # the embedding MLP (2 linears) and one projection per block, weights and biases
    assert len(blocks) == 3 and len(grads) == 4 + 2 * len(blocks)
    assert all(g is not None and g.abs().sum() > 0 for g in grads)
    with pytest.raises(ValueError, match="pass the timestep"):
        model(x)


def test_conditioning_shapes_and_unbounded_output():
    model = _denoiser(condition=True)
    assert model.config.condition_channels == 2 and model.task == "denoiser"
    x, cond, t = torch.randn(3, 2, 64, 7), torch.randn(3, 2, 64, 7), torch.tensor([0, 5, 9])
    out = model(x, t, condition=cond)
    assert out.shape == x.shape and (out.min() < 0 or out.max() > 1)
    assert not torch.equal(out, model(x, t, condition=cond + 1))
    with pytest.raises(ValueError, match="condition"):
        model(x, t)
    with pytest.raises(ValueError, match="condition must be"):
        model(x, t, condition=cond[:, :1])
    assert model(x, torch.tensor(3), condition=cond).shape == x.shape  # a scalar t applies to the batch


def test_denoiser_checkpoint_round_trip(tmp_path):
    model = _denoiser(condition=True, source_attention=True, input_attention_maps=1)
    x, cond, t = torch.randn(2, 2, 64, 5), torch.randn(2, 2, 64, 5), torch.tensor([3, 30])
    checkpoint.save(model, tmp_path / "ckpt")
    loaded = checkpoint.load(tmp_path / "ckpt")
    assert loaded.config == model.config and loaded.task == "denoiser"
    torch.testing.assert_close(loaded(x, t, condition=cond), model(x, t, condition=cond))
    with pytest.raises(CheckpointError, match="not a separation mask model"):
        load_model(tmp_path / "ckpt")


def test_diffusion_is_a_training_loss_with_gradients():
    process, model = _process(objective="v"), _denoiser(condition=False)
    torch.manual_seed(0)
    loss, metrics = process(model, {"x0": torch.rand(2, 2, 64, 6) * 2 - 1})
    loss.backward()
    assert math.isfinite(float(loss.detach())) and math.isfinite(float(metrics["x0_mse"]))
    assert model.time_embed.mlp[0].weight.grad.abs().sum() > 0


# -------------------------------------------------------------------------------- separation

@pytest.mark.parametrize("domain", ["mask", "log"])
def test_separation_encoding_round_trips_to_the_target(domain):
    recipe = diffusion_separation.SeparationDiffusion(_process(), diffusion_separation.ObjectiveConfig(domain=domain))
    gen = torch.Generator().manual_seed(0)
    mixture = torch.rand(2, 2, 16, 8, generator=gen) * 0.9 + 0.1
    target = mixture * torch.rand(2, 2, 16, 8, generator=gen)
    x0 = recipe.encode(mixture, target)
    assert x0.min() >= -1 and x0.max() <= 1
    torch.testing.assert_close(recipe.mask(mixture, x0) * mixture, target.clamp_min(1e-4 if domain == "log" else 0))
    torch.testing.assert_close(diffusion_separation.from_log(diffusion_separation.to_log(mixture)), mixture)
    loss, _ = recipe(_denoiser(condition=True, num_bins=16, channel_multipliers=(1, 2)),
                     {"mixture": mixture, "target": target})
    assert math.isfinite(float(loss.detach()))


def test_diffusion_separator_plugs_into_the_chunked_separator(tiny_dataset):
    process = _process(timesteps=4, sampling_steps=2)
    objective = diffusion_separation.SeparationDiffusion(process)
    denoiser = _denoiser(condition=True)
    with pytest.raises(ConfigError, match="time_embedding"):
        diffusion_separation.DiffusionSeparator(models.build("frame_transformer", "tiny"), objective)
    wave = audio.load(scan_songs(tiny_dataset / "valid")[0]["mixture"])[:, :44100]
    run = [Separator(diffusion_separation.DiffusionSeparator(denoiser, objective, "ddim", 2), spectrogram=TINY_SPEC,
                     cropsize=64, padding=8).separate(wave) for _ in range(2)]
    assert run[0]["instrumental"].shape == wave.shape and np.array_equal(run[0]["vocals"], run[1]["vocals"])
    config = diffusion_separation.Config.preset("tiny", data=dict(root=str(tiny_dataset)),
                                                diffusion=dict(timesteps=4, sampling_steps=2))
    points = diffusion_separation.evaluate_samplers(denoiser, config, [("ddim", 2), ("ddpm", 4)], cropsize=256, padding=8)
    assert [(p["sampler"], p["steps"]) for p in points] == [("ddim", 2), ("ddpm", 4)]
    assert all(math.isfinite(p["sdr_vocals"]) and len(p["rows"]) == 1 for p in points)


# -------------------------------------------------------------------------------------- idea

def test_mel_idea_dataset_items(tiny_dataset):
    stems = scan_stems(tiny_dataset)
    config = mel_chunks.IdeaConfig.preset("tiny")
    data = mel_chunks.MelIdeaDataset(stems.instrumentals + stems.vocals, MelConfig.preset("tiny"), config)
    item = data[(0, 3)]["x0"]
    assert item.shape == (1, 32, config.width) and float(item.max()) == 1.0 and float(item.min()) >= -1
    assert torch.equal(item, data[(0, 3)]["x0"]) and not torch.equal(item, data[(1, 3)]["x0"])
    log_mel = torch.randn(2, 1, 8, 4)
    peak = log_mel.amax(dim=(1, 2, 3), keepdim=True)
    torch.testing.assert_close(mel_chunks.x0_to_mel(mel_chunks.mel_to_x0(log_mel, config), config), log_mel - peak)
