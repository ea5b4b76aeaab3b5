"""Streaming STFT, chunked masks, ensembles, TTA, post-processing and the Separator API."""
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torch.nn.functional as F
from torch import nn

from ftlib import audio, checkpoint, models
from ftlib.separation import batch
from ftlib.separation import stream as streaming
from ftlib.audio import Spectrogram, SpectrogramConfig
from ftlib.config import Config
from ftlib.errors import AudioError, CheckpointError, ConfigError
from ftlib.separation import Separator, check_model, predict_mask
from ftlib.separation.separator import _LiftVocalFree
from ftlib.separation.stream import IstftStream, StftStream

from conftest import TINY_SPEC


def _local_model(seed: int = 0):
    """A tiny model without attention: its receptive field spans a few frames only."""
    torch.manual_seed(seed)
    return models.build("frame_transformer", "tiny", transformer_from_level=99).eval()


def _wave(seconds: float = 0.25, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal((2, int(44100 * seconds))) * 0.1).astype(np.float32)


def _expected(wave: np.ndarray, mask: torch.Tensor) -> np.ndarray:
    """The instrumental of a whole-song mask: ``istft(X * mask)``."""
    spec = Spectrogram(TINY_SPEC)
    return spec.istft(spec.stft(torch.from_numpy(wave)) * Spectrogram.from_model(mask), length=wave.shape[-1]).numpy()


def _magnitude(wave: np.ndarray) -> torch.Tensor:
    return Spectrogram.to_model(Spectrogram(TINY_SPEC).stft(torch.from_numpy(wave)).abs())


def _write(path, data) -> Path:
    path.write_text(json.dumps(data))
    return path


# ------------------------------------------------------------------------------ streaming STFT

@pytest.mark.parametrize("config,length,blocks", [
    (SpectrogramConfig(), 30000, [1000, 517, 8000]),
    (SpectrogramConfig(n_fft=128, hop_length=32), 301, [7, 65]),
    (SpectrogramConfig(n_fft=128, hop_length=64), 65, [3]),
])
def test_streaming_stft_and_istft_equal_whole_signal(config, length, blocks):
    spec, x = Spectrogram(config), torch.randn(2, length)
    stft, parts, i = StftStream(spec), [], 0
    while i < length:
        n = blocks[len(parts) % len(blocks)]
        parts.append(stft.push(x[:, i:i + n]))
        i += n
    frames = torch.cat(parts + [stft.finish()], -1)
    torch.testing.assert_close(frames, spec.stft(x), rtol=0, atol=1e-5)
    istft, out = IstftStream(spec), []
    for j in range(0, frames.shape[-1], 3):
        out.append(istft.push(frames[..., j:j + 3], length if j + 3 >= frames.shape[-1] else None))
    torch.testing.assert_close(torch.cat(out, -1), x, rtol=0, atol=1e-5)
    with pytest.raises(AudioError, match="too short"):
        StftStream(spec).finish()


# ------------------------------------------------------------------------------------ chunking

@pytest.mark.parametrize("frames,cropsize,batch", [(50, 8, 3), (37, 16, 1), (5, 16, 2)])
def test_chunked_equals_unchunked(frames, cropsize, batch):
    model, padding = _local_model(), 12
    mag = torch.rand(2, 64, frames)
    chunked = predict_mask(model, mag, cropsize=cropsize, padding=padding, batch_size=batch, normalise="song")
    with torch.no_grad():
        padded = torch.nn.functional.pad(mag / mag.max(), (padding, padding))
        whole = model(padded[None])[0, ..., padding:padding + frames]
    assert chunked.shape == mag.shape
    torch.testing.assert_close(chunked, whole, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("normalise", ["song", "chunk"])
def test_streamed_separation_equals_the_whole_song_mask(monkeypatch, normalise):
    monkeypatch.setattr(streaming, "BLOCK", 700)  # many blocks, chunks straddling them
    model, wave = _local_model(), _wave()
    stems = Separator(model, TINY_SPEC, cropsize=16, padding=4, batch_size=3, normalise=normalise).separate(wave)
    mask = predict_mask(model, _magnitude(wave), cropsize=16, padding=4, normalise=normalise)
    np.testing.assert_allclose(stems["instrumental"], _expected(wave, mask), atol=1e-5)
    np.testing.assert_allclose(stems["instrumental"] + stems["vocals"], wave, atol=1e-6)


def test_a_mask_of_ones_returns_the_mixture():
    class Ones(torch.nn.Module):
        config = models.build("frame_transformer", "tiny").config

        def __init__(self):
            super().__init__()
            self.p = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x):
            return torch.ones_like(x)

    wave = _wave(seed=1)
    stems = Separator(Ones(), TINY_SPEC, cropsize=8, padding=2).separate(wave)
    np.testing.assert_allclose(stems["instrumental"], wave, atol=1e-5)


# ---------------------------------------------------------------------------- ensembles and TTA

def test_ensembles_combine_the_models_masks():
    a, b, wave = _local_model(0), _local_model(1), _wave(seed=2)
    options = dict(spectrogram=TINY_SPEC, cropsize=16, padding=4)
    masks = torch.stack([predict_mask(m, _magnitude(wave), 16, 4) for m in (a, b)])
    # min: instrumental = element-wise min of the models' magnitudes, vocals = mixture - that = the
    # element-wise max of the models' vocal magnitudes (1 - m) |X| (the seed took the last model's)
    for mode, mask in (("min", masks.amin(0)), ("max", masks.amax(0)), ("average", (masks[0] + 3 * masks[1]) / 4)):
        weights = [1, 3] if mode == "average" else None
        stems = Separator([a, b], ensemble=mode, weights=weights, **options).separate(wave)
        np.testing.assert_allclose(stems["instrumental"], _expected(wave, mask), atol=1e-5)
        np.testing.assert_allclose(stems["vocals"], wave - stems["instrumental"], atol=1e-6)
    singles = [Separator(m, **options).separate(wave)["instrumental"] for m in (a, b)]
    stems = Separator([a, b], ensemble="waveform", weights=[1, 3], **options).separate(wave)
    np.testing.assert_allclose(stems["instrumental"], (singles[0] + 3 * singles[1]) / 4, atol=1e-5)
    with pytest.raises(ConfigError, match="weights"):
        Separator([a, b], ensemble="min", weights=[1, 2], **options)


@pytest.mark.parametrize("tta", ["tta_shift", "tta_swap", "tta_cropsizes"])
def test_test_time_augmentation_averages_the_variants(tta):
    model, wave = _local_model(), _wave(seed=3)
    mag = _magnitude(wave)
    plain = predict_mask(model, mag, 16, 4)
    variant = {
        "tta_shift": lambda: predict_mask(model, F.pad(mag, (8, 0)), 16, 4)[..., 8:],  # grid origin at -8
        "tta_swap": lambda: predict_mask(model, mag.flip(0), 16, 4).flip(0),
        "tta_cropsizes": lambda: predict_mask(model, mag, 32, 8),  # padding scales with the crop
    }[tta]()
    option = {"tta_cropsizes": [32]}.get(tta, True)
    stems = Separator(model, TINY_SPEC, cropsize=16, padding=4, **{tta: option}).separate(wave)
    np.testing.assert_allclose(stems["instrumental"], _expected(wave, (plain + variant) / 2), atol=1e-5)


def test_postprocess_lifts_long_vocal_free_runs_only():
    mask = torch.full((2, 8, 160), 0.5)
    mask[0, 3, :20] = mask[1, 5, 120:125] = 0.0  # vocals in frames 0-19 and 120-124
    # vocal-free: frames 20-119 (long, fades at both ends) and 125-159 (long, reaches the song's end)
    lifted = _LiftVocalFree(threshold=0.01, min_frames=16, fade=4).push(mask, last=True)
    weight = ((lifted - mask) / (1 - mask))[1, 0]
    np.testing.assert_allclose(weight[:24], [0] * 21 + [0.25, 0.5, 0.75])
    np.testing.assert_allclose(weight[24:116], 1)
    np.testing.assert_allclose(weight[116:125], [0.75, 0.5, 0.25, 0, 0, 0, 0, 0, 0])
    np.testing.assert_allclose(weight[125:], [0, 0.25, 0.5, 0.75] + [1] * 31)
    short = mask.clone()
    short[..., 30:40] = 0.0  # splits 20-119 into runs of 10 (too short) and 80 frames
    assert torch.equal(_LiftVocalFree(0.01, 16, 4).push(short, last=True)[..., 20:30], short[..., 20:30])
    stream, parts = _LiftVocalFree(0.01, 16, 4), []
    for i in range(0, 160, 7):
        parts.append(stream.push(mask[..., i:i + 7], last=i + 7 >= 160))
    torch.testing.assert_close(torch.cat(parts, -1), lifted)


# ------------------------------------------------------------------------------------- files

def test_file_separation_streams_copies_tags_and_bit_depth(tmp_path, monkeypatch):
    monkeypatch.setattr(streaming, "BLOCK", 3000)
    sep = Separator(_local_model(), TINY_SPEC, cropsize=16, padding=4)
    wave = _wave(0.5, seed=4)
    with sf.SoundFile(tmp_path / "song.flac", "w", 44100, 2, "PCM_24") as f:
        f.title, f.artist = "A Song", "Someone"
        f.write(wave.T)
    mixture = audio.load(tmp_path / "song.flac")
    stems = sep.separate(mixture)
    written = sep.separate_file(tmp_path / "song.flac", tmp_path / "out")
    assert sorted(p.name for p in written.values()) == ["song_Instruments.wav", "song_Vocals.wav"]
    np.testing.assert_allclose(audio.load(written["instrumental"]), stems["instrumental"], atol=1e-5)
    with sf.SoundFile(written["vocals"]) as f:
        assert (f.subtype, f.title, f.artist) == ("FLOAT", "A Song (Vocals)", "Someone")
    only = sep.separate_file(tmp_path / "song.flac", tmp_path / "flac", fmt="flac", vocals=False, bit_depth=16,
                             suffix="_m")
    assert [p.name for p in only.values()] == ["song_Instruments_m.flac"]
    with sf.SoundFile(only["instrumental"]) as f:
        assert (f.subtype, f.title, f.frames) == ("PCM_16", "A Song", wave.shape[-1])
    with pytest.raises(ConfigError, match="32-bit flac"):
        sep.separate_file(tmp_path / "song.flac", tmp_path / "x", fmt="flac", bit_depth=32)
    sf.write(tmp_path / "mono.wav", wave[0], 22050)  # resampled (streaming soxr) and duplicated
    written = sep.separate_file(tmp_path / "mono.wav", tmp_path / "out", vocals=False)
    assert sf.info(written["instrumental"]).channels == 2
    assert abs(sf.info(written["instrumental"]).frames - 2 * wave.shape[-1]) <= 1


def test_a_failure_midway_leaves_no_partial_output(tmp_path, monkeypatch):
    class Failing(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner, self.calls = _local_model(), 0
            self.config = self.inner.config

        def forward(self, x):
            self.calls += 1
            if self.calls > 3:
                raise RuntimeError("device lost")
            return self.inner(x)

    monkeypatch.setattr(streaming, "BLOCK", 2000)
    audio.save(tmp_path / "song.wav", _wave(0.5, seed=5))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "song_Instruments.wav").write_bytes(b"earlier result")
    with pytest.raises(RuntimeError, match="device lost"):
        Separator(Failing(), TINY_SPEC, cropsize=16, padding=4, batch_size=1).separate_file(tmp_path / "song.wav",
                                                                                           tmp_path / "out")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["song_Instruments.wav"]
    assert (tmp_path / "out" / "song_Instruments.wav").read_bytes() == b"earlier result"


@dataclasses.dataclass
class _ScorerConfig(Config):
    in_channels: int = 2
    num_bins: int = 64


class _Scorer(nn.Module):
    """Not a mask model: one score per item."""

    model_name = "test_frame_scorer"

    def __init__(self, config):
        super().__init__()
        self.config, self.w = config, nn.Parameter(torch.ones(1))

    def forward(self, x):
        return x.mean(dim=(1, 2, 3)) * self.w


def test_bad_inputs_and_checkpoints(tmp_path, monkeypatch):
    monkeypatch.setitem(models.registry._REGISTRY, _Scorer.model_name, (_ScorerConfig, _Scorer))  # for this test only
    sep = Separator(_local_model(), TINY_SPEC, cropsize=16, padding=4)
    sf.write(tmp_path / "silent.wav", np.zeros((4000, 2), np.float32), 44100)
    with pytest.raises(AudioError, match="silent.wav.*silent"):
        sep.separate_file(tmp_path / "silent.wav", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    with pytest.raises(AudioError, match="shape"):
        sep.separate(np.zeros((3, 100), np.float32))
    path = checkpoint.save(_local_model(), tmp_path / "ckpt")
    loaded = Separator.from_checkpoint(path, spectrogram=TINY_SPEC)
    assert loaded.model.config == _local_model().config and loaded.names == ["ckpt"]
    with pytest.raises(CheckpointError, match="scorer.*returns \\(1,\\).*not a separation model"):
        Separator.from_checkpoint(checkpoint.save(_Scorer(_ScorerConfig()), tmp_path / "scorer"))
    with pytest.raises(CheckpointError, match="\\(discriminator\\) is not a separation mask model"):
        check_model(type("D", (_Scorer,), {"task": "discriminator"})(_ScorerConfig()))
    (path / "model.safetensors").write_bytes(b"truncated")
    with pytest.raises(CheckpointError, match="corrupt"):
        Separator.from_checkpoint(path)
    with pytest.raises(CheckpointError, match="disagree"):
        Separator([_local_model(), models.build("frame_transformer", "tiny", num_bins=32)])


# ------------------------------------------------------------------------ command line, batches

def test_cli_playlists_ensembles_skipping_and_bad_inputs(tiny_dataset, tmp_path, capsys):
    from ftlib import cli

    first = checkpoint.save(_local_model(0), tmp_path / "runs" / "r1" / "checkpoints" / "best")
    second = checkpoint.save(_local_model(1), tmp_path / "m2")
    album, out = tmp_path / "album", tmp_path / "out"
    audio.save(album / "one.wav", _wave(0.3, seed=6))
    audio.save(album / "two.flac", _wave(0.3, seed=7))
    (album / "cover.jpg").write_bytes(b"jpeg")
    (album / "broken.wav").write_bytes(b"not audio")
    playlist = _write(album / "list.json", {"output": "Album", "convert": ["one.wav", "missing.wav", "broken.wav"],
                                            "copy": ["cover.jpg", "two.flac"]})
    evil = _write(album / "evil.json", {"output": "../escape", "convert": ["one.wav"]})
    args = ["separate", str(playlist), "-m", str(first), "-m", str(second), "--ensemble", "min", "-o", str(out),
            "--cropsize", "16", "--padding", "4", "--format", "flac", "--bit-depth", "16", "--model-names", "--quiet"]
    assert cli.main(args[:2] + [str(evil)] + args[2:]) == 1
    err = capsys.readouterr().err
    assert "evil.json" in err and "outside the output folder" in err and not (tmp_path / "escape").exists()
    assert "missing.wav" in err and "broken.wav" in err
    written = out / "Album" / "one_Instruments_r1-best+m2.flac"
    assert sorted(p.name for p in (out / "Album").iterdir()) == [
        "cover.jpg", written.name, "one_Vocals_r1-best+m2.flac", "two_Instruments.flac"]
    assert (out / "Album" / "two_Instruments.flac").read_bytes() == (album / "two.flac").read_bytes()
    assert sf.info(written).subtype == "PCM_16"

    inode = written.stat().st_ino
    assert cli.main(args) == 1  # the missing and broken entries fail again; the rest is done
    assert capsys.readouterr().out.count("already done") == 3 and written.stat().st_ino == inode
    assert cli.main(args + ["--overwrite"]) == 1
    assert written.stat().st_ino != inode

    csv_path = tmp_path / "scores.csv"
    assert cli.main(["evaluate", str(tiny_dataset / "valid"), "-m", str(first), "-m", str(second),
                     "--cropsize", "16", "--tta-swap", "--csv", str(csv_path), "--quiet"]) == 0
    assert "cSDR" in capsys.readouterr().out
    header, song = csv_path.read_text().splitlines()  # one row per song, no summary row
    assert "csdr_vocals" in header and "fullness_vocals" in header and song.startswith("song_000")
    other = tmp_path / "not-a-checkpoint"
    other.mkdir()
    assert cli.main(["separate", str(album / "one.wav"), "-m", str(other), "-o", str(out)]) == 2
    assert "not an ftlib checkpoint" in capsys.readouterr().err


@pytest.mark.parametrize("playlist,error", [
    ({"output": "/tmp/elsewhere", "convert": ["a.wav"]}, "output folder '/tmp/elsewhere' would write outside"),
    ({"output": "ok/../../x"}, "would write outside"),
    ({"copy": ["notes/.."]}, "copy entry '..' would write outside"),
    ({"convert": "a.wav"}, "lists of file paths"),
    ({"convert": ["a.wav"], "extra": 1}, "keys output, convert, copy"),
])
def test_playlists_never_write_outside_the_output_folder(tmp_path, playlist, error):
    from ftlib.errors import DataError

    with pytest.raises(DataError, match=f"list.json: .*{error}"):
        batch.read_playlist(_write(tmp_path / "list.json", playlist), tmp_path / "out")


def test_playlist_sources_may_be_absolute_and_copies_keep_their_name(tmp_path):

    jobs = batch.read_playlist(_write(tmp_path / "good.json", {"convert": ["/abs/song.flac"], "copy": ["c.jpg"]}),
                               tmp_path / "out")
    assert [(j.source, j.out_dir, j.copy_to) for j in jobs] == [
        (Path("/abs/song.flac"), (tmp_path / "out").resolve(), None),
        (tmp_path / "c.jpg", (tmp_path / "out").resolve(), (tmp_path / "out" / "c.jpg").resolve())]


def test_chunking_follows_the_checkpoint_unless_told(tmp_path):
    model = models.build("frame_transformer", "tiny")
    assert Separator(model, device="cpu").settings == "cropsize 256 (the default), padding 64"  # older checkpoints
    model.inference = {"cropsize": 64}
    path = checkpoint.save(model, tmp_path / "ckpt")
    loaded = Separator.from_checkpoint(path, device="cpu")
    assert (loaded.cropsize, loaded.padding) == (64, 16) and "training crop size" in loaded.settings
    checkpoint.update_inference(path, best_cropsize=128)
    best = Separator.from_checkpoint(path, device="cpu")
    assert (best.cropsize, best.padding) == (128, 32) and "context-length study" in best.settings
    told = Separator.from_checkpoint(path, device="cpu", cropsize=32)
    assert (told.cropsize, told.padding) == (32, 8) and "(given)" in told.settings


def test_cli_takes_a_padding_of_zero(tiny_dataset, tmp_path, capsys):
    from ftlib import cli

    best = checkpoint.save(_local_model(0), tmp_path / "m")
    for padding in ("0", "3"):
        assert cli.main(["evaluate", str(tiny_dataset / "valid"), "-m", str(best), "--metrics", "sdr",
                         "--cropsize", "16", "--padding", padding, "--quiet"]) == 0
        assert f"cropsize 16 (given), padding {padding}\n" in capsys.readouterr().err
