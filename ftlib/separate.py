"""Separation: apply a mask model to whole songs in chunks with real context.

The song's magnitude ``[C, F, T]`` is cut into chunks of ``cropsize`` frames; each chunk is given
``padding`` frames of its real neighbours on both sides (zeros beyond the song's edges), chunks run
through the model in batches, and only each chunk's centre is kept. Chunks are cut straight from
the song and the mask is written into one preallocated array, so nothing song-sized is copied.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ftlib import audio, checkpoint
from ftlib.audio import Spectrogram, SpectrogramConfig
from ftlib.errors import AudioError
from ftlib.losses import first

EPS = 1e-8


@torch.no_grad()
def predict_mask(model: nn.Module, magnitude: torch.Tensor, cropsize: int = 256, padding: int = 64,
                 batch_size: int = 4, normalise: str = "song", progress: bool = False) -> torch.Tensor:
    """Mask ``[C, F, T]`` for a magnitude ``[C, F, T]`` (Nyquist already dropped).

    ``normalise``: "song" divides the whole song by its maximum (chunking then changes nothing but
    the attention context), "chunk" divides every chunk by its own maximum, as in training.
    """
    device = next(model.parameters()).device
    channels, bins, frames = magnitude.shape
    chunks = math.ceil(frames / cropsize)
    scale = 1.0 / (float(magnitude.max()) + EPS) if normalise == "song" else 1.0
    mask = torch.empty(channels, bins, frames)
    autocast = torch.autocast("cuda", dtype=torch.float16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)
    for first_chunk in tqdm(range(0, chunks, batch_size), desc="separating", leave=False, disable=not progress):
        ids = range(first_chunk, min(chunks, first_chunk + batch_size))
        batch = torch.zeros(len(ids), channels, bins, cropsize + 2 * padding)
        for j, i in enumerate(ids):  # chunk i covers song frames [i * cropsize - padding, (i + 1) * cropsize + padding)
            lo, hi = max(0, i * cropsize - padding), min(frames, (i + 1) * cropsize + padding)
            at = lo - (i * cropsize - padding)
            batch[j, ..., at:at + hi - lo] = magnitude[..., lo:hi] * scale
        if normalise == "chunk":
            batch = batch / (batch.amax(dim=(1, 2, 3), keepdim=True) + EPS)
        with autocast:
            out = first(model(batch.to(device))).float().cpu()
        for j, i in enumerate(ids):
            keep = min(cropsize, frames - i * cropsize)
            mask[..., i * cropsize:i * cropsize + keep] = out[j, ..., padding:padding + keep]
    return mask


class Separator:
    """Separate songs with one mask model.

    >>> sep = Separator.from_checkpoint("runs/.../checkpoints/best")
    >>> stems = sep.separate(audio)            # {"instrumental": [C, S], "vocals": [C, S]}
    >>> sep.separate_file("song.flac", "out/")  # writes song_Instruments.wav, song_Vocals.wav
    """

    def __init__(self, model: nn.Module, spectrogram: SpectrogramConfig | None = None, sample_rate: int = 44100,
                 cropsize: int = 256, padding: int = 64, batch_size: int = 4, normalise: str = "song",
                 device: str | torch.device | None = None):
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.to(self.device).eval()
        bins = model.config.num_bins
        self.spec = Spectrogram(spectrogram or SpectrogramConfig(n_fft=2 * bins, hop_length=bins))
        if self.spec.num_bins != model.config.num_bins:
            raise ValueError(f"n_fft={self.spec.n_fft} gives {self.spec.num_bins} bins, the model expects {model.config.num_bins}")
        self.sample_rate, self.cropsize, self.padding = sample_rate, cropsize, padding
        self.batch_size, self.normalise = batch_size, normalise

    @classmethod
    def from_checkpoint(cls, path: str | Path, **kwargs) -> "Separator":
        return cls(checkpoint.load(path), **kwargs)

    def separate(self, wave: np.ndarray, progress: bool = False) -> dict[str, np.ndarray]:
        """``[C, S]`` mixture -> ``{"instrumental": [C, S], "vocals": [C, S]}`` (vocals = mixture - instrumental)."""
        channels = self.model.config.in_channels
        if wave.ndim != 2 or wave.shape[0] != channels:
            raise AudioError(f"expected audio of shape [{channels}, samples], got {tuple(wave.shape)}")
        x = torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))
        spec = self.spec.stft(x)
        magnitude = Spectrogram.to_model(spec.abs())
        mask = predict_mask(self.model, magnitude, self.cropsize, self.padding, self.batch_size, self.normalise, progress)
        instrumental = self.spec.istft(spec * Spectrogram.from_model(mask), length=x.shape[-1]).numpy()
        return {"instrumental": instrumental, "vocals": wave - instrumental}

    def separate_file(self, path: str | Path, out_dir: str | Path, fmt: str = "wav", vocals: bool = True) -> dict[str, Path]:
        """Separate ``path`` into ``out_dir/<name>_Instruments.<fmt>`` (and ``_Vocals``)."""
        path, out_dir = Path(path), Path(out_dir)
        wave = audio.load(path, self.sample_rate, self.model.config.in_channels)
        if not np.abs(wave).max() > 0:
            raise AudioError(f"{path}: file is silent")
        stems = self.separate(wave)
        names = {"instrumental": "Instruments", "vocals": "Vocals"}
        keep = ["instrumental", "vocals"] if vocals else ["instrumental"]
        return {k: audio.save(out_dir / f"{path.stem}_{names[k]}.{fmt}", stems[k], self.sample_rate) for k in keep}
