"""Band-split RoFormers (bs_roformer, mel_roformer) and importing MSST checkpoints of them.

The import tests build a small reference network written here from the papers' equations, with the
parameter names of MSST's modules, save its state dict the way MSST does, import it with
``ftlib import-msst`` and compare ftlib's forward pass with the reference one.
"""
import json
import math

import librosa
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from ftlib import checkpoint, cli, models, msst
from ftlib.audio import SpectrogramConfig
from ftlib.errors import CheckpointError, ConfigError
from ftlib.models.bs_roformer import PAPER_FREQS_PER_BANDS, fixed_bands, mel_bands
from ftlib.models.inspect import count_parameters

FAMILIES = ["bs_roformer", "mel_roformer"]


def _spec(model, frames=9, batch=2):
    cfg = model.config
    return torch.randn(batch, cfg.in_channels, cfg.num_bins, frames, dtype=torch.complex64)


# ----------------------------------------------------------------------------------- the models

@pytest.mark.parametrize("frames", [1, 7, 33])
@pytest.mark.parametrize("family", FAMILIES)
def test_complex_mask_shapes_for_odd_frame_counts(family, frames):
    model = models.build(family, "tiny").eval()
    spec = _spec(model, frames)
    mask = model(spec)
    assert mask.shape == spec.shape and mask.dtype == torch.complex64 and torch.isfinite(torch.view_as_real(mask)).all()
    every = models.build(family, "tiny", in_channels=1, stems=("drums", "vocals"), target_stem="").eval()
    spec = _spec(every, frames, batch=1)
    assert every(spec).shape == (1, 2, 1, every.config.num_bins, frames)
    with pytest.raises(ValueError, match="complex STFT"):
        model(spec.abs())


@pytest.mark.parametrize("family", FAMILIES)
def test_target_stem_selects_one_estimator(family):
    torch.manual_seed(0)
    every = models.build(family, "tiny", stems=("bass", "vocals"), target_stem="").eval()
    vocals = models.from_config(family, every.config.replace(target_stem="vocals")).eval()
    vocals.load_state_dict(every.state_dict())
    spec = _spec(every)
    torch.testing.assert_close(vocals(spec), every(spec)[:, 1], rtol=0, atol=0)


@pytest.mark.parametrize("options", [{}, {"skip_connections": True, "mask_hidden_layers": 2, "time_depth": 2},
                                     {"output_norm": "each", "mask_hidden_layers": 0}], ids=str)
@pytest.mark.parametrize("family", FAMILIES)
def test_gradients_reach_every_parameter(family, options):
    torch.manual_seed(0)
    model = models.build(family, "tiny", stems=("vocals", "other"), target_stem="", **options)
    torch.view_as_real(model(_spec(model))).square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


@pytest.mark.parametrize("family", FAMILIES)
def test_deterministic_under_seed(family):
    outs = []
    for _ in range(2):
        torch.manual_seed(123)
        model = models.build(family, "tiny").eval()
        torch.manual_seed(7)
        outs.append(model(_spec(model, 10, 1)))
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)


@pytest.mark.parametrize("family", FAMILIES)
def test_fused_attention_equals_explicit_softmax(family):
    torch.manual_seed(0)
    model = models.build(family, "tiny", depth=2).eval()
    spec = _spec(model, 20, 1)
    with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):  # raises rather than fall back to the math path
        fused = model(spec)
    layers = [m for m in model.modules() if hasattr(m, "force_explicit")]
    assert len(layers) == 4
    for layer in layers:
        layer.force_explicit = True
    torch.testing.assert_close(model(spec), fused, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("family", FAMILIES)
def test_checkpoint_round_trip(family, tmp_path):
    torch.manual_seed(0)
    model = models.build(family, "tiny", stems=("vocals", "other"), target_stem="other").eval()
    rebuilt = checkpoint.load(checkpoint.save(model, tmp_path / "ckpt")).eval()
    assert type(rebuilt) is type(model) and rebuilt.config == model.config and rebuilt.task == "complex_separation"
    spec = _spec(model, 5, 1)
    torch.testing.assert_close(rebuilt(spec), model(spec), rtol=0, atol=0)


def test_mel_bands_cover_every_bin():
    for sample_rate, n_fft, num_bands in [(44100, 2048, 60), (44100, 128, 8), (22050, 512, 32), (44100, 4096, 128)]:
        bands = mel_bands(sample_rate, n_fft, num_bands)
        covered = np.zeros(n_fft // 2 + 1, dtype=int)
        for band in bands:
            assert band and band == sorted(band) and band[-1] - band[0] == len(band) - 1  # contiguous
            covered[band] += 1
        assert len(bands) == num_bands and covered.min() >= 1 and covered.max() >= 2  # bands overlap
        assert bands[0][0] == 0 and bands[-1][-1] == n_fft // 2
    model = models.build("mel_roformer", "tiny")
    assert torch.equal(model.bands_per_bin, torch.from_numpy(np.bincount(model.band_index.numpy())).float())
    with pytest.raises(ConfigError, match="empty"):
        models.build("mel_roformer", "tiny", num_bands=60)  # 65 bins cannot hold 60 mel triangles
    fixed = fixed_bands(PAPER_FREQS_PER_BANDS)
    assert len(fixed) == 62 and sum(fixed, []) == list(range(1025))


def test_config_is_validated():
    with pytest.raises(ConfigError, match="sum to"):
        models.build("bs_roformer", "tiny", freqs_per_bands=(32, 32))
    with pytest.raises(ConfigError, match="target_stem"):
        models.build("mel_roformer", "tiny", target_stem="drums")
    with pytest.raises(ConfigError, match="head_dim"):
        models.build("bs_roformer", "tiny", head_dim=7)


def test_stft_settings_round_trip_and_the_separator_takes_complex_models():
    from ftlib.separation.separator import check_model, model_spectrogram

    model = models.build("bs_roformer", "tiny")
    audio = torch.randn(2, 2, 1000)
    spec = model.stft(audio)
    assert spec.shape == (2, 2, 65, 1000 // 32 + 1)
    torch.testing.assert_close(model.istft(spec, 1000), audio, rtol=1e-4, atol=1e-5)
    assert check_model(model) is model
    assert model_spectrogram(model) == SpectrogramConfig(n_fft=128, hop_length=32, win_length=128)


def test_preset_sizes():
    # ViperX's BS-RoFormer and Kimberley Jensen's Mel-Band RoFormer as MSST configures them
    assert count_parameters("bs_roformer") == 159_758_028
    assert count_parameters("mel_roformer") == 228_202_788
    assert count_parameters("bs_roformer", "tiny") < 50_000 and count_parameters("mel_roformer", "tiny") < 50_000


@pytest.mark.parametrize("preset, family", [("gpu_bs_roformer", "bs_roformer"), ("gpu_mel_roformer", "mel_roformer")])
def test_gpu_recipe_presets_train_the_roformers_on_the_papers_stft(preset, family):
    from ftlib.recipes import separation
    config = separation.Config.preset(preset)
    with torch.device("meta"):  # the real size, without its memory
        model = separation.build_model(config)
    assert model.model_name == family and models.is_complex(model)
    assert (model.config.stft_hop_length, model.config.stft_n_fft, model.config.nyquist) == (441, 2048, False)
    assert config.voxaug.cropsize * 441 >= 8 * 44100 - 441  # 8-second crops
    assert config.train.steps >= 10_000

# --------------------------------------------------- a reference network in MSST's parameter names

class RMSNorm(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return x * torch.rsqrt(x.square().mean(-1, keepdim=True)) * self.gamma


class Rotary(nn.Module):
    """Rotary positions: feature pairs (2i, 2i+1) as complex numbers turned by position * freqs[i]."""

    def __init__(self, dim):
        super().__init__()
        self.freqs = nn.Parameter(10000.0 ** (-torch.arange(0, dim, 2).float() / dim), requires_grad=False)

    def forward(self, x):  # [..., L, D]
        angles = torch.arange(x.shape[-2]).float()[:, None] * self.freqs
        turned = torch.view_as_complex(x.reshape(*x.shape[:-1], -1, 2).contiguous()) * torch.polar(
            torch.ones_like(angles), angles)
        return torch.view_as_real(turned).flatten(-2)


class Attention(nn.Module):
    def __init__(self, dim, heads, dim_head, rotary):
        super().__init__()
        self.heads, self.dim_head = heads, dim_head
        self.norm = RMSNorm(dim)
        self.to_qkv = nn.Linear(dim, 3 * heads * dim_head, bias=False)
        self.to_gates = nn.Linear(dim, heads)
        self.to_out = nn.Sequential(nn.Linear(heads * dim_head, dim, bias=False), nn.Dropout(0.0))
        self.rotary_embed = rotary

    def forward(self, x):  # [N, L, D]
        x = self.norm(x)
        n, length = x.shape[:2]
        q, k, v = self.to_qkv(x).reshape(n, length, 3, self.heads, self.dim_head).permute(2, 0, 3, 1, 4)
        q, k = self.rotary_embed(q), self.rotary_embed(k)
        weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(self.dim_head), dim=-1)
        out = (weights @ v) * torch.sigmoid(self.to_gates(x)).transpose(1, 2)[..., None]
        return self.to_out(out.transpose(1, 2).reshape(n, length, -1))


class FeedForward(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.net = nn.Sequential(RMSNorm(dim), nn.Linear(dim, 4 * dim), nn.GELU(), nn.Dropout(0.0),
                                 nn.Linear(4 * dim, dim), nn.Dropout(0.0))

    def forward(self, x):
        return self.net(x)


class Transformer(nn.Module):
    def __init__(self, dim, depth, heads, dim_head, rotary, norm_output):
        super().__init__()
        self.layers = nn.ModuleList(nn.ModuleList([Attention(dim, heads, dim_head, rotary), FeedForward(dim)])
                                    for _ in range(depth))
        self.norm = RMSNorm(dim) if norm_output else nn.Identity()

    def forward(self, x):
        for attn, ff in self.layers:
            x = x + attn(x)
            x = x + ff(x)
        return self.norm(x)


class Reference(nn.Module):
    """BS-RoFormer (``freqs_per_bands``) or Mel-Band RoFormer (``num_bands``) on MSST's layout: the
    STFT's bins, channels and real/imaginary parts flattened bin-major into each band's features."""

    def __init__(self, m, sample_rate, mel):
        super().__init__()
        self.channels, self.mel = 2 if m["stereo"] else 1, mel
        self.n_fft, self.hop, self.skip = m["stft_n_fft"], m["stft_hop_length"], m.get("skip_connection", False)
        bins = self.n_fft // 2 + 1
        if mel:  # bins under each mel triangle, the DC and Nyquist bins forced in
            fb = librosa.filters.mel(sr=sample_rate, n_fft=self.n_fft, n_mels=m["num_bands"])
            fb[0, 0] = fb[-1, -1] = 1.0
            self.membership = torch.from_numpy(fb > 0)  # [K, F]
        else:
            edges = np.cumsum([0, *m["freqs_per_bands"]])
            self.membership = torch.zeros(len(edges) - 1, bins, dtype=torch.bool)
            for k, (lo, hi) in enumerate(zip(edges[:-1], edges[1:])):
                self.membership[k, lo:hi] = True
        widths = [2 * self.channels * int(row.sum()) for row in self.membership]
        dim = m["dim"]
        self.band_split = nn.Module()
        self.band_split.to_features = nn.ModuleList(nn.Sequential(RMSNorm(w), nn.Linear(w, dim)) for w in widths)
        rotary_t, rotary_f = Rotary(m["dim_head"]), Rotary(m["dim_head"])
        self.layers = nn.ModuleList(nn.ModuleList([
            Transformer(dim, m["time_transformer_depth"], m["heads"], m["dim_head"], rotary_t, mel),
            Transformer(dim, m["freq_transformer_depth"], m["heads"], m["dim_head"], rotary_f, mel)])
            for _ in range(m["depth"]))
        if not mel:
            self.final_norm = RMSNorm(dim)
        hidden_layers = m["mask_estimator_depth"] if mel else m["mask_estimator_depth"] - 1
        self.mask_estimators = nn.ModuleList()
        for _ in range(m["num_stems"]):
            estimator = nn.Module()
            estimator.to_freqs = nn.ModuleList()
            for w in widths:
                sizes = [dim] + [4 * dim] * hidden_layers + [2 * w]
                mlp = []
                for a, b in zip(sizes[:-1], sizes[1:]):
                    mlp += [nn.Linear(a, b), nn.Tanh()]
                estimator.to_freqs.append(nn.Sequential(nn.Sequential(*mlp[:-1]), nn.GLU(dim=-1)))
            self.mask_estimators.append(estimator)

    def forward(self, audio):
        """audio [B, C, S] -> (complex masks [B, S, C, F, T], separated audio [B, S, C, S])."""
        b, c, length = audio.shape
        window = torch.hann_window(self.n_fft)
        spec = torch.stft(audio.reshape(b * c, length), self.n_fft, self.hop, window=window, return_complex=True)
        spec = spec.reshape(b, c, *spec.shape[-2:])
        frames = spec.shape[-1]
        feats = torch.view_as_real(spec).permute(0, 3, 2, 1, 4)  # b t f c r
        tokens = torch.stack([embed(feats[:, :, row].reshape(b, frames, -1))
                              for row, embed in zip(self.membership, self.band_split.to_features)], dim=2)
        store = []
        for time, band in self.layers:
            for previous in (store if self.skip else []):
                tokens = tokens + previous
            k = tokens.shape[2]
            tokens = time(tokens.transpose(1, 2).reshape(b * k, frames, -1)).reshape(b, k, frames, -1).transpose(1, 2)
            tokens = band(tokens.reshape(b * frames, k, -1)).reshape(b, frames, k, -1)
            store.append(tokens)
        if not self.mel:
            tokens = self.final_norm(tokens)
        masks = []
        for estimator in self.mask_estimators:
            total = torch.zeros(b, frames, spec.shape[2], c, 2)
            for k, (row, mlp) in enumerate(zip(self.membership, estimator.to_freqs)):
                total[:, :, row] += mlp(tokens[:, :, k]).reshape(b, frames, int(row.sum()), c, 2)
            total = total / self.membership.sum(0).float()[:, None, None]
            masks.append(torch.view_as_complex(total.permute(0, 3, 2, 1, 4).contiguous()))
        masks = torch.stack(masks, dim=1)
        out = torch.istft((masks * spec[:, None]).reshape(-1, *spec.shape[-2:]), self.n_fft, self.hop, window=window,
                          length=length)
        return masks, out.reshape(b, len(self.mask_estimators), c, length)


BANDS = (2,) * 8 + (4,) * 4 + (16, 17)
MSST_MODEL = dict(dim=16, depth=2, stereo=True, num_stems=2, time_transformer_depth=2, freq_transformer_depth=1,
                  linear_transformer_depth=0, dim_head=8, heads=2, attn_dropout=0.1, ff_dropout=0.1, flash_attn=True,
                  dim_freqs_in=65, stft_n_fft=128, stft_hop_length=32, stft_win_length=128, stft_normalized=False,
                  mask_estimator_depth=2, multi_stft_resolution_loss_weight=1.0, multi_stft_hop_size=147,
                  multi_stft_normalized=False, mlp_expansion_factor=4, use_torch_checkpoint=False)


def _msst_files(tmp_path, family, skip=False, extra_model="", state_dict=None):
    """An MSST-style YAML config and ``torch.save(model.state_dict())`` of a reference network."""
    mel = family == "mel_roformer"
    m = dict(MSST_MODEL, skip_connection=skip)
    m.update(num_bands=8, sample_rate=44100) if mel else m.update(freqs_per_bands=BANDS)
    torch.manual_seed(1)
    reference = Reference(m, 44100, mel).eval()
    with torch.no_grad():  # away from the initial values, so that every tensor matters
        for p in reference.parameters():
            if p.requires_grad:
                p.add_(0.1 * torch.randn_like(p))
    lines = ["audio:", "  chunk_size: 4096", "  sample_rate: 44100", "model:"]
    for key, value in m.items():
        if key == "freqs_per_bands":
            lines += ["  freqs_per_bands: !!python/tuple"] + [f"    - {v}" for v in value]
        else:
            lines.append(f"  {key}: {str(value).lower() if isinstance(value, bool) else value}")
    lines += ["  multi_stft_resolutions_window_sizes: !!python/tuple", "  - 256", "  - 128", extra_model,
              "training:", "  instruments:", "  - vocals", "  - other", "  target_instrument: null",
              "inference:", "  num_overlap: 2"]
    config = tmp_path / "config.yaml"
    config.write_text("\n".join(lines) + "\n")
    weights = tmp_path / "model.ckpt"
    torch.save(reference.state_dict() if state_dict is None else state_dict(reference), weights)
    return config, weights, reference


@pytest.mark.parametrize("family,skip", [("bs_roformer", False), ("mel_roformer", False), ("mel_roformer", True)])
def test_import_msst_matches_the_reference_forward_pass(family, skip, tmp_path, capsys):
    config, weights, reference = _msst_files(tmp_path, family, skip)
    assert any(k.endswith("rotary_embed.freqs") for k in torch.load(weights, weights_only=True))
    assert cli.main(["import-msst", str(config), str(weights), str(tmp_path / "out"), "--stem", "all"]) == 0
    assert str(tmp_path / "out") in capsys.readouterr().out
    model = checkpoint.load(tmp_path / "out").eval()
    cfg = model.config
    assert model.model_name == family and cfg.stems == ("vocals", "other") and cfg.target_stem == ""
    assert (cfg.in_channels, cfg.stft_hop_length, cfg.skip_connections) == (2, 32, skip)
    assert cfg.mask_hidden_layers == (2 if family == "mel_roformer" else 1)
    assert model.inference["chunk_size"] == 4096 and model.inference["num_overlap"] == 2
    torch.manual_seed(2)
    audio = torch.randn(2, 2, 2000)
    with torch.no_grad():
        masks, separated = reference(audio)
        spec = model.stft(audio)
        ours = model(spec)
    torch.testing.assert_close(ours, masks, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(model.istft(ours * spec[:, None], 2000), separated, rtol=1e-4, atol=1e-5)


def test_import_msst_defaults_to_the_vocals_and_reads_lightning_checkpoints(tmp_path):
    config, weights, reference = _msst_files(tmp_path, "bs_roformer",
                                             state_dict=lambda ref: {"state_dict": {f"model.{k}": v for k, v in
                                                                                    ref.state_dict().items()}})
    path, model = msst.import_checkpoint(config, weights, tmp_path / "out")
    assert model.config.target_stem == "vocals" and checkpoint.load(path).config.target_stem == "vocals"
    audio = torch.randn(1, 2, 700)
    with torch.no_grad():
        torch.testing.assert_close(model(model.stft(audio)), reference(audio)[0][:, 0], rtol=1e-4, atol=1e-5)


def _refused(tmp_path, config, weights, match):
    """Importing raises an error matching ``match``, the CLI exits with 2, and nothing is written."""
    out = tmp_path / "out"
    with pytest.raises((CheckpointError, ConfigError), match=match):
        msst.import_checkpoint(config, weights, out)
    assert cli.main(["import-msst", str(config), str(weights), str(out)]) == 2
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_import_msst_refuses_other_architectures_and_options(tmp_path):
    config, weights, _ = _msst_files(tmp_path, "bs_roformer", extra_model="  conv_kernel_size: 31")
    _refused(tmp_path, config, weights, "conv_kernel_size.*not part of ftlib's bs_roformer")
    config.write_text("model:\n  sources: [drums, bass, other, vocals]\n  channels: 48\n")
    _refused(tmp_path, config, weights, "not an MSST BS-RoFormer")
    config.write_text("model:\n  dim: 16\n  depth: 1\n  num_bands: 8\n  linear_transformer_depth: 1\n")
    _refused(tmp_path, config, weights, "linear_transformer_depth")
    config.write_text("model: !!python/object/apply:os.getcwd []\n")  # the safe loader builds no objects
    _refused(tmp_path, config, weights, "not a readable MSST YAML config")
    with pytest.raises(ConfigError, match="no ftlib counterpart"):
        msst.detect_family({"model": {}}, config, "htdemucs")


@pytest.mark.parametrize("change,match", [
    (lambda s: {**s, "extra.weight": torch.zeros(3)}, "unexpected tensor.*extra.weight"),
    (lambda s: {k: v for k, v in s.items() if k != "final_norm.gamma"}, "missing tensor.*final_norm.gamma"),
    (lambda s: {**s, "band_split.to_features.0.1.weight": torch.zeros(16, 9)},
     r"mis-shaped.*band_split.to_features.0.1.weight \[16, 9\] \(config: \[16, 8\]\)"),
    (lambda s: {**s, "layers.0.0.layers.0.0.rotary_embed.freqs": torch.ones(4)}, "rotary frequencies"),
], ids=["unexpected", "missing", "mis-shaped", "rotary"])
def test_import_msst_names_the_tensors_that_do_not_fit(tmp_path, change, match):
    config, weights, _ = _msst_files(tmp_path, "bs_roformer", state_dict=lambda ref: change(ref.state_dict()))
    _refused(tmp_path, config, weights, match)


def test_import_msst_refuses_pickles_that_are_not_state_dicts(tmp_path):
    config, weights, reference = _msst_files(tmp_path, "bs_roformer")
    torch.save(reference, weights)  # a whole pickled module: loading it would run its classes' code
    _refused(tmp_path, config, weights, "not a plain state dict")
    torch.save({"state_dict": reference.state_dict(), "epoch": 3, "names": ["a"]}, weights)  # allowed wrapper
    msst.import_checkpoint(config, weights, tmp_path / "ok")
    torch.save({"weights": [1, 2]}, weights)
    _refused(tmp_path, config, weights, "not a plain state dict")
    weights.write_bytes(b"not a checkpoint")
    _refused(tmp_path, config, weights, "cannot read it as a PyTorch checkpoint")
    _refused(tmp_path, config, tmp_path / "missing.ckpt", "no such checkpoint")


def test_import_msst_keeps_an_existing_output_unless_told(tmp_path):
    config, weights, _ = _msst_files(tmp_path, "mel_roformer")
    (tmp_path / "out").mkdir()
    with pytest.raises(CheckpointError, match="already exists"):
        msst.import_checkpoint(config, weights, tmp_path / "out")
    assert not any((tmp_path / "out").iterdir())
    msst.import_checkpoint(config, weights, tmp_path / "out", overwrite=True, stem="other")
    assert checkpoint.load(tmp_path / "out").config.target_stem == "other"
    with pytest.raises(ConfigError, match="not 'drums'"):
        msst.import_checkpoint(config, weights, tmp_path / "x", stem="drums")


def test_msst_names_cover_every_parameter():
    for family in FAMILIES:
        model = models.build(family, "tiny", depth=2, time_depth=2, stems=("a", "b"), target_stem="")
        names = [msst.msst_name(n) for n in model.state_dict()]
        assert len(set(names)) == len(names)


def test_imported_checkpoints_separate_and_evaluate_from_the_command_line(tmp_path, capsys):
    import soundfile as sf

    config, weights, reference = _msst_files(tmp_path, "bs_roformer")
    assert cli.main(["import-msst", str(config), str(weights), str(tmp_path / "model")]) == 0
    rng = np.random.default_rng(0)
    song = tmp_path / "songs" / "a"
    song.mkdir(parents=True)
    vocals, instrumental = (rng.standard_normal((6000, 2)).astype(np.float32) * 0.1 for _ in range(2))
    for name, audio in (("mixture", vocals + instrumental), ("vocals", vocals)):
        sf.write(song / f"{name}.wav", audio, 44100, subtype="FLOAT")
    capsys.readouterr()
    assert cli.main(["separate", str(song / "mixture.wav"), "-m", str(tmp_path / "model"), "-o", str(tmp_path / "out")]) == 0
    # MSST's chunk of 4096 samples is 128 frames at hop 32
    assert "cropsize 128 (the imported checkpoint's chunk size)" in capsys.readouterr().err
    separated = {p.name for p in (tmp_path / "out").iterdir()}
    assert separated == {"mixture_Instruments.wav", "mixture_Vocals.wav"}
    inst, rate = sf.read(tmp_path / "out" / "mixture_Instruments.wav")
    voc, _ = sf.read(tmp_path / "out" / "mixture_Vocals.wav")
    assert rate == 44100 and inst.shape == (6000, 2)
    np.testing.assert_allclose(inst + voc, vocals + instrumental, atol=1e-5)
    assert cli.main(["evaluate", str(tmp_path / "songs"), "-m", str(tmp_path / "model"),
                     "--json", str(tmp_path / "scores.json")]) == 0
    scores = json.loads((tmp_path / "scores.json").read_text())
    assert len(scores["songs"]) == 1 and np.isfinite(scores["songs"][0]["sdr_vocals"])
