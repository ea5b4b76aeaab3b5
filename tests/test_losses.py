"""Losses: separation terms, the STFT term's resynthesis, masked pretraining, and what each must ignore."""
import pytest
import torch

from ftlib import losses, models
from ftlib.data.voxaug import VoxAugConfig, VoxAugDataset


def _model(seed=0, **overrides):
    torch.manual_seed(seed)
    return models.build("frame_transformer", "tiny", **overrides)


def _batch(seed=0, frames=16):
    g = torch.Generator().manual_seed(seed)
    mixture = torch.rand(2, 2, 64, frames, generator=g)
    return {"mixture": mixture, "target": mixture * torch.rand(2, 2, 64, frames, generator=g)}


def test_separation_loss_defaults_to_plain_l1_and_spectral_terms_vanish_at_the_target():
    model, batch = _model(), _batch()
    with torch.no_grad():
        assert float(losses.SeparationLoss()(model, batch)[0]) == pytest.approx(float(losses.separation_l1(model, batch)[0]))
    loss = losses.SeparationLoss(mel=1.0, multi_resolution=1.0, n_mels=16, sample_rate=8000)
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


def test_negative_sdr_is_the_sdr_in_db_and_stays_bounded_on_silence():
    g = torch.Generator().manual_seed(0)
    target = torch.randn(3, 1000, generator=g)
    noise = torch.randn(3, 1000, generator=g)
    noise = noise / noise.norm(dim=-1, keepdim=True) * target.norm(dim=-1, keepdim=True) * 0.1  # 20 dB down
    zero = torch.zeros(3)
    assert float(losses.negative_sdr(target + noise, target, zero)) == pytest.approx(-20.0, abs=1e-3)
    silent = torch.zeros(1, 1000)
    bounded = losses.negative_sdr(target[:1], silent, torch.tensor([10.0]))
    assert float(bounded) == pytest.approx(10 * torch.log10(1 + target[:1].square().sum() / 10).item(), rel=1e-5)


def test_sdr_loss_scores_both_stems_and_needs_phase_and_mixture():
    batch = _batch(frames=8)
    batch["phase"] = torch.rand(2, 2, 64, 8, generator=torch.Generator().manual_seed(1)) * 6 - 3
    preset = losses.SeparationLossConfig.preset("sdr", n_fft=128, hop_length=64)
    loss = losses.SeparationLoss(preset)
    assert preset.needs_phase and not losses.SeparationLossConfig().needs_phase
    mixture, target = batch["mixture"], batch["target"]
    perfect = loss.terms(target, target, batch["phase"], mixture)["sdr"]
    worse = loss.terms(target * 0.8, target, batch["phase"], mixture)["sdr"]
    assert float(perfect) < -25 and float(worse) > float(perfect)  # the floor caps a perfect score near -30 dB
    model = _model()
    value, _ = loss(model, batch)
    value.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    with pytest.raises(ValueError, match="needs the mixture"):
        loss.terms(target, target, batch["phase"])
    with pytest.raises(ValueError, match="return_phase"):
        loss(model, {"mixture": mixture, "target": target})


def test_pretraining_l1_ignores_unmasked_frames():
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
    a, b = losses.pretraining_l1(Fixed(mask), batch)[0], losses.pretraining_l1(Fixed(changed), batch)[0]
    assert float(a) == pytest.approx(float(b))
    changed[..., 5] = 1 - changed[..., 5]
    assert float(losses.pretraining_l1(Fixed(changed), batch)[0]) != pytest.approx(float(a))


def _complex_batch(seed=0, frames=8):
    g = torch.Generator().manual_seed(seed)
    shape = (2, 2, 64, frames)
    target, vocals = (torch.complex(torch.randn(*shape, generator=g), torch.randn(*shape, generator=g)) for _ in "tv")
    return {"mixture": target + vocals, "target": target}


def test_complex_mask_models_train_on_complex_spectra_without_a_phase():
    batch = _complex_batch()
    model = _model(output="complex_mask")
    mixture, target = batch["mixture"], batch["target"]
    error = target * (1 + 0.1j) - target
    expected = (error.real.abs().sum() + error.imag.abs().sum()) / (2 * error.numel())
    torch.testing.assert_close(losses.spectral_l1(target * (1 + 0.1j), target), expected)
    for preset in ("default", "sdr", "stft", "spectral"):
        loss = losses.SeparationLoss(losses.SeparationLossConfig.preset(preset, n_fft=128, hop_length=64, n_mels=16,
                                                                         sample_rate=8000))
        perfect = loss.terms(target, target, mixture=mixture)
        worse = loss.terms(target * 0.8j, target, mixture=mixture)  # right magnitudes, wrong phase
        for name, value in perfect.items():
            bound = -25 if name == "sdr" else 1e-5  # the SDR floor caps a perfect score near -30 dB
            assert float(value) < bound and float(worse[name]) > float(value), name
        value, _ = loss(model, batch)
        model.zero_grad()
        value.backward()
        assert all(p.grad is not None for p in model.parameters())


def test_a_real_mask_of_a_complex_batch_is_scored_on_magnitudes():
    batch = _complex_batch(seed=1)
    model = models.build("conv_unet", "tiny", mid_side=True)
    magnitude = batch["mixture"].abs()
    mask = model(batch["mixture"])
    expected = (mask * magnitude - torch.minimum(batch["target"].abs(), magnitude)).abs().mean()
    torch.testing.assert_close(losses.separation_l1(model, batch)[0], expected)
    torch.testing.assert_close(losses.SeparationLoss()(model, batch)[0], expected)
    parts = losses.masked_mixture(model, batch)
    torch.testing.assert_close(parts["phase"], batch["mixture"].angle())
    stft = losses.SeparationLoss(losses.SeparationLossConfig.preset("stft", n_fft=128, hop_length=64))
    value, _ = stft(model, batch)  # the waveform terms resynthesise with the mixture's phase
    value.backward()
    assert torch.isfinite(value) and all(p.grad is not None for p in model.parameters())
