"""Chunked separation and the Separator API."""
import numpy as np
import pytest
import soundfile as sf
import torch

from ftlib import audio, checkpoint, models
from ftlib.audio import Spectrogram
from ftlib.errors import AudioError
from ftlib.separate import Separator, predict_mask

from conftest import TINY_SPEC


def _local_model():
    """A tiny model without attention: its receptive field spans a few frames only."""
    torch.manual_seed(0)
    return models.build("frame_transformer", "tiny", transformer_from_level=99).eval()


@pytest.mark.parametrize("frames,cropsize,batch", [(50, 8, 3), (37, 16, 1), (5, 16, 2)])
def test_chunked_equals_unchunked(frames, cropsize, batch):
    model, padding = _local_model(), 12
    mag = torch.rand(2, 64, frames)
    chunked = predict_mask(model, mag, cropsize=cropsize, padding=padding, batch_size=batch)
    with torch.no_grad():
        padded = torch.nn.functional.pad(mag / mag.max(), (padding, padding))
        whole = model(padded[None])[0, ..., padding:padding + frames]
    assert chunked.shape == mag.shape
    torch.testing.assert_close(chunked, whole, rtol=1e-4, atol=1e-5)


def test_separate_stems_sum_to_the_mixture_and_files_are_written(tmp_path):
    sep = Separator(_local_model(), TINY_SPEC, cropsize=16, padding=4)
    wave = (np.random.default_rng(0).standard_normal((2, 5000)) * 0.1).astype(np.float32)
    stems = sep.separate(wave)
    assert stems["instrumental"].shape == wave.shape
    np.testing.assert_allclose(stems["instrumental"] + stems["vocals"], wave, atol=1e-6)
    audio.save(tmp_path / "song.wav", wave)
    written = sep.separate_file(tmp_path / "song.wav", tmp_path / "out")
    assert sorted(p.name for p in written.values()) == ["song_Instruments.wav", "song_Vocals.wav"]
    np.testing.assert_allclose(audio.load(written["instrumental"]), stems["instrumental"], atol=1e-6)
    only = sep.separate_file(tmp_path / "song.wav", tmp_path / "flac", fmt="flac", vocals=False)
    assert [p.name for p in only.values()] == ["song_Instruments.flac"]


def test_a_mask_of_ones_returns_the_mixture():
    class Ones(torch.nn.Module):
        config = models.build("frame_transformer", "tiny").config

        def __init__(self):
            super().__init__()
            self.p = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x):
            return torch.ones_like(x)

    wave = (np.random.default_rng(1).standard_normal((2, 4000)) * 0.1).astype(np.float32)
    stems = Separator(Ones(), TINY_SPEC, cropsize=8, padding=2).separate(wave)
    np.testing.assert_allclose(stems["instrumental"], wave, atol=1e-5)


def test_bad_inputs(tmp_path):
    sep = Separator(_local_model(), TINY_SPEC, cropsize=16, padding=4)
    sf.write(tmp_path / "silent.wav", np.zeros((4000, 2), np.float32), 44100)
    with pytest.raises(AudioError, match="silent.wav.*silent"):
        sep.separate_file(tmp_path / "silent.wav", tmp_path / "out")
    with pytest.raises(AudioError, match="shape"):
        sep.separate(np.zeros((3, 100), np.float32))
    path = checkpoint.save(_local_model(), tmp_path / "ckpt")
    assert Separator.from_checkpoint(path, spectrogram=TINY_SPEC).model.config == _local_model().config


def test_cli_separates_and_evaluates_with_a_real_checkpoint(tiny_dataset, tmp_path, capsys):
    from ftlib import cli

    ckpt = checkpoint.save(_local_model(), tmp_path / "ckpt")
    song = tiny_dataset / "valid" / "song_000" / "mixture.wav"
    (tmp_path / "broken.wav").write_bytes(b"not audio")
    code = cli.main(["separate", str(song), str(tmp_path / "broken.wav"), "-m", str(ckpt), "-o", str(tmp_path / "out"),
                     "--cropsize", "32", "--padding", "8"])
    assert code == 1, "one input failed"
    assert "skipped" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["mixture_Instruments.wav", "mixture_Vocals.wav"]
    assert cli.main(["evaluate", str(tiny_dataset / "valid"), "-m", str(ckpt), "--csv", str(tmp_path / "sdr.csv")]) == 0
    assert "song_000" in (tmp_path / "sdr.csv").read_text()
    other = tmp_path / "not-a-checkpoint"
    other.mkdir()
    assert cli.main(["separate", str(song), "-m", str(other), "-o", str(tmp_path / "out2")]) == 2
    assert "not an ftlib checkpoint" in capsys.readouterr().err
