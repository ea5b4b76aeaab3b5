"""On-disk spectrogram cache: each audio file's complex STFT ``[C, n_fft//2 + 1, T]`` (complex64),
stored as ``.npy`` and memory-mapped, so a random crop reads only its own frames.

Entries are keyed by the file's path, size and modification time and by the STFT settings, so a
changed file or setting gets a new entry. An unreadable entry is rebuilt, never trusted.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ftlib import audio
from ftlib.audio import Spectrogram, SpectrogramConfig
from ftlib.errors import AudioError

log = logging.getLogger(__name__)


class SpectrogramCache:
    """``cache.get(path) -> np.ndarray`` (read-only memmap, complex64 ``[C, F, T]``)."""

    def __init__(self, root: str | Path, spectrogram: SpectrogramConfig | None = None, sample_rate: int = 44100):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.spec = Spectrogram(spectrogram or SpectrogramConfig())
        self.sample_rate = sample_rate

    def key(self, path: Path) -> str:
        stat = path.stat()
        ident = json.dumps([str(path.resolve()), stat.st_size, stat.st_mtime_ns, self.sample_rate,
                            self.spec.config.to_dict()])
        return f"{path.stem[:40]}-{hashlib.sha1(ident.encode()).hexdigest()[:16]}.npy"

    def get(self, path: str | Path) -> np.ndarray:
        """The cached STFT of ``path``, computing it first if needed. Raises AudioError for bad audio."""
        path = Path(path)
        if not path.is_file():
            raise AudioError(f"{path}: no such audio file")
        entry = self.root / self.key(path)
        if entry.is_file():
            try:
                return np.load(entry, mmap_mode="r")
            except (ValueError, OSError, EOFError) as exc:
                log.warning("rebuilding corrupt cache entry %s (%s)", entry, exc)
        return self._build(path, entry)

    def _build(self, path: Path, entry: Path) -> np.ndarray:
        wave = audio.load(path, self.sample_rate)
        with torch.no_grad():
            stft = self.spec.stft(torch.from_numpy(wave)).numpy().astype(np.complex64)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npy", dir=self.root)
        os.close(fd)
        try:
            np.save(tmp, stft)
            os.replace(tmp, entry)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return np.load(entry, mmap_mode="r")

    def build(self, paths: list[Path], min_frames: int = 1, require_signal: bool = False,
              desc: str = "caching spectrograms") -> tuple[list[Path], list[tuple[Path, str]]]:
        """Cache every file; return ``(usable, skipped)`` where ``skipped`` lists ``(path, reason)``
        for unreadable, too-short (fewer than ``min_frames`` frames) or, with ``require_signal``,
        silent files."""
        usable, skipped = [], []
        for path in tqdm(paths, desc=desc, leave=False):
            try:
                stft = self.get(path)
            except AudioError as exc:
                skipped.append((path, str(exc).removeprefix(f"{path}: ")))
                continue
            if stft.shape[-1] < min_frames:
                skipped.append((path, f"too short: {stft.shape[-1]} frames, a crop needs {min_frames}"))
            elif require_signal and not np.abs(stft).max() > 1e-6:
                skipped.append((path, "silent"))
            else:
                usable.append(path)
        if skipped:
            lines = "\n".join(f"  {p}: {why}" for p, why in skipped)
            log.warning("skipped %d of %d files:\n%s", len(skipped), len(paths), lines)
        return usable, skipped
