"""Complex masks: the frame transformer's complex-mask head, and the Separator (streaming, ensembles,
TTA, post-processing) on complex-mask models, the RoFormers included."""
import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from ftlib import checkpoint, models
from ftlib.audio import Spectrogram, SpectrogramConfig
from ftlib.errors import ConfigError
from ftlib.separation import Separator, predict_mask
from ftlib.separation import stream as streaming

from conftest import TINY_SPEC


def _complex_model(seed: int = 0) -> nn.Module:
    """A tiny complex-mask frame transformer without attention (a few frames of receptive field)."""
    torch.manual_seed(seed)
    return models.build("frame_transformer", "tiny", transformer_from_level=99, output="complex_mask").eval()


def _wave(seconds: float = 0.25, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal((2, int(44100 * seconds))) * 0.1).astype(np.float32)


def _spec(wave: np.ndarray) -> torch.Tensor:
    """The complex STFT the tiny models see: ``[C, 64, T]`` (Nyquist dropped)."""
    return Spectrogram.to_model(Spectrogram(TINY_SPEC).stft(torch.from_numpy(wave)))


def _expected(wave: np.ndarray, mask: torch.Tensor) -> np.ndarray:
    spec = Spectrogram(TINY_SPEC)
    return spec.istft(spec.stft(torch.from_numpy(wave)) * Spectrogram.from_model(mask), length=wave.shape[-1]).numpy()


@dataclasses.dataclass
class _AllBins:
    """The config of a test model that sees every bin of its own STFT, like the RoFormers."""

    in_channels: int = 2
    stft_n_fft: int = 128
    stft_hop_length: int = 32
    stft_win_length: int = 128

    @property
    def num_bins(self) -> int:
        return self.stft_n_fft // 2 + 1


class _Constant(nn.Module):
    """A complex-mask model returning ``value`` everywhere."""

    task = "complex_separation"

    def __init__(self, value: complex):
        super().__init__()
        self.config, self.value = _AllBins(), value
        self.p = nn.Parameter(torch.zeros(1))

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        assert spec.is_complex()
        return torch.full_like(spec, self.value)


class _Oracle(nn.Module):
    """Returns ``target / mixture`` of a known song: each input frame (a chunk of the mixture's STFT,
    scaled by an unknown factor, or zeros beyond the song) is located by its direction in the song."""

    task = "complex_separation"

    def __init__(self, mixture: torch.Tensor, target: torch.Tensor):
        super().__init__()
        self.config = _AllBins()
        self.p = nn.Parameter(torch.zeros(1))
        frames = mixture.flatten(0, 1).T  # [T, C * F]
        self.directions = frames / torch.linalg.vector_norm(frames, dim=1, keepdim=True)
        self.mask = target / mixture  # [C, F, T]

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        out = torch.zeros_like(spec)
        for b, chunk in enumerate(spec):
            columns = chunk.flatten(0, 1).T  # [W, C * F]
            norms = torch.linalg.vector_norm(columns, dim=1)
            where = (columns / norms.clamp_min(1e-30)[:, None] @ self.directions.conj().T).abs().argmax(1)
            inside = norms > 0
            out[b][..., inside] = self.mask[..., where[inside]]
        return out


# ------------------------------------------------------------------------------ complex head

def test_frame_transformer_complex_head_shapes_gradients_and_determinism():
    model = _complex_model()
    for frames in (1, 7, 16):
        x = torch.randn(2, 2, 64, frames, dtype=torch.complex64)
        mask = model(x)
        assert mask.shape == x.shape and mask.dtype == torch.complex64
    assert model.task == "complex_separation" and model.config.input_maps == 6
    model.train()
    model(torch.randn(2, 2, 64, 9, dtype=torch.complex64)).abs().square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    x = torch.randn(1, 2, 64, 10, dtype=torch.complex64)
    torch.testing.assert_close(_complex_model().eval()(x), _complex_model().eval()(x), rtol=0, atol=0)
    with pytest.raises(ValueError, match="complex STFT"):
        model(x.abs())
    with pytest.raises(ValueError, match="real magnitude"):
        models.build("frame_transformer", "tiny")(x)
    with pytest.raises(ConfigError, match="complex-mask head"):
        models.build("frame_transformer", "tiny", output="complex_mask", time_embedding=True)


def test_complex_head_checkpoint_round_trip(tmp_path):
    model = _complex_model()
    rebuilt = checkpoint.load(checkpoint.save(model, tmp_path / "ckpt")).eval()
    x = torch.randn(1, 2, 64, 9, dtype=torch.complex64)
    assert rebuilt.task == "complex_separation"
    torch.testing.assert_close(rebuilt(x), model(x), rtol=0, atol=0)


def test_small_complex_preset_is_the_small_model_with_a_complex_head():
    small, complex_ = (models.lookup("frame_transformer")[0].preset(p) for p in ("small", "small_complex"))
    assert complex_ == small.replace(output="complex_mask")


# ------------------------------------------------------------------------------ separator

@pytest.mark.parametrize("options", [{}, {"tta_shift": True, "tta_swap": True}, {"postprocess": True}],
                         ids=["plain", "tta", "postprocess"])
def test_a_complex_mask_of_ones_returns_the_mixture(options):
    wave = _wave(seed=1)
    stems = Separator(_Constant(1 + 0j), cropsize=8, padding=2, **options).separate(wave)
    np.testing.assert_allclose(stems["instrumental"], wave, atol=1e-5)
    np.testing.assert_allclose(stems["vocals"], 0 * wave, atol=1e-5)


def test_the_oracle_complex_mask_reproduces_the_stems_through_the_streaming_path(monkeypatch):
    monkeypatch.setattr(streaming, "BLOCK", 700)  # many blocks, chunks straddling them
    instrumental, vocals = _wave(seed=2), _wave(seed=3)
    mixture = instrumental + vocals
    spec = Spectrogram(SpectrogramConfig(n_fft=128, hop_length=32))
    oracle = _Oracle(spec.stft(torch.from_numpy(mixture)), spec.stft(torch.from_numpy(instrumental)))
    for options in ({}, {"tta_shift": True, "normalise": "song"}):
        stems = Separator(oracle, cropsize=16, padding=4, batch_size=3, **options).separate(mixture)
        np.testing.assert_allclose(stems["instrumental"], instrumental, atol=2e-5)
        np.testing.assert_allclose(stems["vocals"], vocals, atol=2e-5)
    # the best magnitude mask keeps the mixture's phase: far from the stems on overlapping noise
    magnitude_only = Separator(_Constant(0.5), cropsize=16, padding=4).separate(mixture)["instrumental"]
    assert np.abs(magnitude_only - instrumental).max() > 100 * 2e-5


@pytest.mark.parametrize("tta", ["tta_shift", "tta_swap"])
def test_complex_models_take_test_time_augmentation(tta):
    import torch.nn.functional as F

    model, wave = _complex_model(), _wave(seed=4)
    spec = _spec(wave)
    plain = predict_mask(model, spec, 16, 4)
    variant = {"tta_shift": lambda: predict_mask(model, F.pad(spec, (8, 0)), 16, 4)[..., 8:],
               "tta_swap": lambda: predict_mask(model, spec.flip(0), 16, 4).flip(0)}[tta]()
    assert plain.is_complex()
    stems = Separator(model, TINY_SPEC, cropsize=16, padding=4, **{tta: True}).separate(wave)
    np.testing.assert_allclose(stems["instrumental"], _expected(wave, (plain + variant) / 2), atol=1e-5)


def test_complex_and_magnitude_models_ensemble():
    torch.manual_seed(5)
    magnitude = models.build("frame_transformer", "tiny", transformer_from_level=99).eval()
    complex_, wave = _complex_model(1), _wave(seed=5)
    spec = _spec(wave)
    masks = [predict_mask(magnitude, spec.abs(), 16, 4), predict_mask(complex_, spec, 16, 4)]
    options = dict(spectrogram=TINY_SPEC, cropsize=16, padding=4)
    stems = Separator([magnitude, complex_], weights=[1, 3], **options).separate(wave)
    np.testing.assert_allclose(stems["instrumental"], _expected(wave, (masks[0] + 3 * masks[1]) / 4), atol=1e-5)
    for mode in ("min", "max"):
        with pytest.raises(ConfigError, match="complex-mask models"):
            Separator([magnitude, complex_], ensemble=mode, **options)


def test_a_mid_side_model_separates_and_ensembles_with_its_real_mask():
    torch.manual_seed(6)
    mid_side = models.build("conv_unet", "tiny", mid_side=True).eval()
    magnitude = models.build("conv_unet", "tiny").eval()
    wave = _wave(seed=7)
    spec = _spec(wave)
    masks = [predict_mask(mid_side, spec, 16, 4), predict_mask(magnitude, spec.abs(), 16, 4)]
    assert not masks[0].is_complex()
    options = dict(spectrogram=TINY_SPEC, cropsize=16, padding=4)
    stems = Separator(mid_side, **options).separate(wave)
    np.testing.assert_allclose(stems["instrumental"], _expected(wave, masks[0]), atol=1e-5)
    lowest = Separator([mid_side, magnitude], ensemble="min", **options).separate(wave)
    np.testing.assert_allclose(lowest["instrumental"], _expected(wave, torch.minimum(*masks)), atol=1e-5)


def test_roformers_separate_with_their_own_stft_and_vocal_masks():
    torch.manual_seed(0)
    model = models.build("bs_roformer", "tiny").eval()
    wave = _wave(0.05, seed=6)
    frames = wave.shape[-1] // model.config.stft_hop_length + 1
    # one chunk holding the whole song: the separator's answer is the model's on the whole STFT
    stems = Separator(model, cropsize=frames, padding=0, normalise="song").separate(wave)
    spec = model.stft(torch.from_numpy(wave)[None])
    with torch.no_grad():
        vocal_mask = model(spec / spec.abs().max())
    assert vocal_mask.is_complex() and model.config.target_stem == "vocals"
    expected = model.istft((1 - vocal_mask) * spec, wave.shape[-1])[0].numpy()
    np.testing.assert_allclose(stems["instrumental"], expected, atol=1e-5)
    np.testing.assert_allclose(stems["vocals"], wave - expected, atol=1e-5)
    every_stem = models.build("bs_roformer", "tiny", stems=("bass", "vocals"), target_stem="")
    torch.testing.assert_close(models.instrumental_mask(every_stem, torch.ones(1, 2, 2, 65, 3, dtype=torch.complex64)),
                               torch.zeros(1, 2, 65, 3, dtype=torch.complex64))
    with pytest.raises(ConfigError, match="'bass'"):
        models.instrumental_mask(models.build("bs_roformer", "tiny", stems=("bass",), target_stem="bass"),
                                 torch.ones(1, 2, 65, 3, dtype=torch.complex64))
