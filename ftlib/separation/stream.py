"""Streaming audio: files decoded and written block by block, and an STFT / inverse STFT that run
block by block yet return what :class:`ftlib.audio.Spectrogram` returns for the whole signal.

Separating a song through these keeps memory flat in the song's length: only a few seconds of
samples and frames exist at any time. Audio blocks are float32 ``[C, n]``; frames are complex
``[C, n_fft // 2 + 1, t]``.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torch.nn.functional as F

from ftlib.atomic import Pending
from ftlib.audio import Spectrogram, match_channels
from ftlib.errors import AudioError, ConfigError

BLOCK = 1 << 18  # samples per decoded block (~6 s at 44.1 kHz)
TAGS = ("title", "artist", "album", "date", "tracknumber", "genre", "comment", "copyright", "license")
SUBTYPES = {("wav", 16): "PCM_16", ("wav", 24): "PCM_24", ("wav", 32): "FLOAT", ("wav", None): "FLOAT",
            ("flac", 16): "PCM_16", ("flac", 24): "PCM_24", ("flac", None): "PCM_24"}


# ------------------------------------------------------------------------------------ reading

class AudioSource:
    """A file decoded lazily, in blocks ``[channels, n]`` at ``sample_rate``; iterate it once per pass.

    Mono is duplicated, surplus channels averaged, other rates resampled with a streaming soxr
    resampler. Missing, undecodable, empty or non-finite audio raises AudioError naming the file.
    """

    def __init__(self, path: str | Path, sample_rate: int = 44100, channels: int = 2, block: int | None = None):
        self.path, self.sample_rate, self.channels = Path(path), sample_rate, channels
        self.block = block or BLOCK
        if not self.path.is_file():
            raise AudioError(f"{self.path}: no such audio file")
        try:
            with sf.SoundFile(str(self.path)) as f:
                self.rate, frames = f.samplerate, f.frames
                self.tags = {k: getattr(f, k) for k in TAGS if getattr(f, k, "")}
        except Exception as exc:  # libsndfile raises several types for corrupt data
            raise AudioError(f"{self.path}: cannot decode audio ({exc}); is it a wav/flac/ogg/mp3 file?") from exc
        if frames == 0:
            raise AudioError(f"{self.path}: file holds no samples")
        self.num_samples = round(frames * sample_rate / self.rate)  # after resampling

    def __iter__(self) -> Iterator[np.ndarray]:
        import soxr

        resampler = None
        if self.rate != self.sample_rate:
            resampler = soxr.ResampleStream(self.rate, self.sample_rate, self.channels, dtype="float32")
        try:
            with sf.SoundFile(str(self.path)) as f:
                for data in f.blocks(self.block, dtype="float32", always_2d=True):
                    if not np.isfinite(data).all():
                        raise AudioError(f"{self.path}: contains NaN or infinite samples")
                    block = match_channels(np.ascontiguousarray(data.T), self.channels)
                    yield block if resampler is None else resampler.resample_chunk(block.T).T
        except (sf.LibsndfileError, RuntimeError) as exc:
            raise AudioError(f"{self.path}: cannot decode audio ({exc})") from exc
        if resampler is not None:
            yield resampler.resample_chunk(np.zeros((0, self.channels), np.float32), last=True).T


# ------------------------------------------------------------------------------------ writing

def subtype(fmt: str, bit_depth: int | None = None) -> str:
    """soundfile subtype of ``fmt`` ("wav"/"flac") at ``bit_depth`` (16, 24, 32 = float; None = default)."""
    if (fmt, bit_depth) not in SUBTYPES:
        raise ConfigError(f"cannot write {bit_depth}-bit {fmt}; wav takes 16, 24 or 32 (float), flac 16 or 24")
    return SUBTYPES[fmt, bit_depth]


class StemWriter:
    """Writes ``[C, n]`` blocks to ``path`` through a hidden temporary file in the same folder:
    ``commit()`` renames it into place, ``discard()`` deletes it, so no half-written file is left."""

    def __init__(self, path: str | Path, sample_rate: int, channels: int, bit_depth: int | None = None,
                 tags: dict[str, str] | None = None):
        self.path = Path(path)
        fmt = self.path.suffix.lower().lstrip(".")
        kind = subtype(fmt, bit_depth)
        self.clip = kind.startswith("PCM")
        self.pending = Pending(self.path)
        self.file = sf.SoundFile(self.pending.tmp, "w", sample_rate, channels, kind, format=fmt.upper())
        for key, value in (tags or {}).items():
            setattr(self.file, key, value)  # before any audio: FLAC writes its comments up front

    def write(self, audio: np.ndarray) -> None:
        self.file.write(np.clip(audio.T, -1.0, 1.0) if self.clip else audio.T)

    def commit(self) -> Path:
        self.file.close()
        return self.pending.commit()

    def discard(self) -> None:
        self.file.close()
        self.pending.discard()


# ------------------------------------------------------------------------------- STFT / ISTFT

def _empty_frames(channels: int, spec: Spectrogram) -> torch.Tensor:
    return torch.zeros(channels, spec.n_fft // 2 + 1, 0, dtype=torch.complex64)


class StftStream:
    """``Spectrogram.stft`` block by block (centred frames, reflect padding at both ends).

    ``push(audio [C, n])`` returns the frames complete so far, ``finish()`` pads the end and
    returns the rest; together they equal the STFT of the whole signal.
    """

    def __init__(self, spec: Spectrogram):
        if not spec.config.center:
            raise ConfigError("streaming separation needs a centred STFT (SpectrogramConfig.center=True)")
        self.spec, self.pad = spec, spec.n_fft // 2
        self.head: list[torch.Tensor] = []  # raw samples held until pad + 1 have arrived
        self.buffer: torch.Tensor | None = None  # padded signal from the next frame's first sample on
        self.tail: torch.Tensor | None = None  # the last pad + 1 samples, reflected at the end
        self.num_samples = 0

    def push(self, audio: torch.Tensor) -> torch.Tensor:
        self.num_samples += audio.shape[-1]
        if self.buffer is None:
            self.head.append(audio)
            held = torch.cat(self.head, -1)
            if held.shape[-1] <= self.pad:
                return _empty_frames(audio.shape[0], self.spec)
            self.head, self.tail = [], held[..., -(self.pad + 1):]
            self.buffer = torch.cat([held[..., 1:self.pad + 1].flip(-1), held], -1)
        else:
            self.tail = torch.cat([self.tail, audio], -1)[..., -(self.pad + 1):]
            self.buffer = torch.cat([self.buffer, audio], -1)
        return self._frames()

    def finish(self) -> torch.Tensor:
        if self.buffer is None:
            raise AudioError(f"audio too short: {self.num_samples} samples, the STFT needs more than {self.pad}")
        self.buffer = torch.cat([self.buffer, self.tail[..., :-1].flip(-1)], -1)
        return self._frames()

    def _frames(self) -> torch.Tensor:
        n_fft, hop = self.spec.n_fft, self.spec.hop_length
        count = (self.buffer.shape[-1] - n_fft) // hop + 1
        if count <= 0:
            return _empty_frames(self.buffer.shape[0], self.spec)
        frames = torch.stft(self.buffer[..., :(count - 1) * hop + n_fft], n_fft, hop, center=False,
                            window=self.spec._window(self.buffer.device, self.buffer.dtype), return_complex=True)
        self.buffer = self.buffer[..., count * hop:]
        return frames


class IstftStream:
    """``Spectrogram.istft`` block by block: overlap-add normalised by the summed squared window.

    ``push(frames)`` takes frames in order and returns the samples no later frame can change; the
    last call passes ``length`` (the signal's length) and returns everything left, so the outputs
    concatenate to ``istft(all frames, length)``.
    """

    def __init__(self, spec: Spectrogram):
        self.spec = spec
        self.acc: torch.Tensor | None = None  # overlap-added numerator from padded sample `start` on
        self.env: torch.Tensor | None = None  # summed squared window over the same samples
        self.start = 0
        self.frames = 0
        self.emitted = 0  # output samples returned so far

    def push(self, frames: torch.Tensor, length: int | None = None) -> torch.Tensor:
        n_fft, hop = self.spec.n_fft, self.spec.hop_length
        count = frames.shape[-1]
        if count:
            window = self.spec._window(frames.device, frames.real.dtype)
            size, at = (count - 1) * hop + n_fft, self.frames * hop - self.start
            fold = dict(output_size=(1, size), kernel_size=(1, n_fft), stride=(1, hop))
            ola = F.fold(torch.fft.irfft(frames, n=n_fft, dim=-2) * window[:, None], **fold)[:, 0, 0]
            env = F.fold(window.square()[None, :, None].expand(1, n_fft, count), **fold)[0, 0, 0]
            if self.acc is None:
                self.acc, self.env = torch.zeros(frames.shape[0], 0), torch.zeros(0)
            grow = at + size - self.acc.shape[-1]
            self.acc, self.env = F.pad(self.acc, (0, grow)), F.pad(self.env, (0, grow))
            self.acc[:, at:] += ola
            self.env[at:] += env
            self.frames += count
        if self.acc is None:
            return torch.zeros(frames.shape[0], 0)
        final = self.acc.shape[-1] if length is not None else self.frames * hop - self.start
        out = self._emit(final)
        if length is not None:  # trim or zero-pad the end like torch.istft(length=...)
            out = F.pad(out, (0, length - self.emitted))
            self.emitted = length
        return out

    def _emit(self, count: int) -> torch.Tensor:
        """Divide out the first ``count`` buffered samples and drop the centring padding."""
        acc, env = self.acc[:, :count], self.env[:count]
        out = torch.where(env > 1e-11, acc / env.clamp_min(1e-11), torch.zeros_like(acc))
        skip = max(0, self.spec.n_fft // 2 - self.start)
        self.acc, self.env, self.start = self.acc[:, count:], self.env[count:], self.start + count
        out = out[:, skip:]
        self.emitted += out.shape[-1]
        return out
