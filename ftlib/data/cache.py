"""On-disk caches of decoded audio, memory-mapped so a random crop reads only its own frames.

:class:`SpectrogramCache` stores each file's complex STFT ``[C, n_fft//2 + 1, T]`` as complex64 or
(``dtype="float16"``) as float16 (real, imag) pairs read through :class:`HalfSpectrogram`: half the
bytes, every value within 2**-11 of its size. :class:`WaveformCache` stores the decoded, resampled
waveform ``[C, S]`` (float32, for waveform-domain augmentations). An entry is a ``.npy`` plus a
``.json`` sidecar (logical shape, stored dtype, CRC-32 of the stored data, peak), both written to
temporary files and renamed into place.

Keys: the file's absolute path, size and modification time, a hash of its first and last 64 KiB,
and the transform settings. ``cp -p``/``rsync -a`` keep size and mtime, and coarse-mtime file systems
(FAT, some network mounts) miss quick rewrites; the head/tail hash catches a replaced file for the
price of two small reads, once per process and file version. Hashing the whole file would cost a
full decode-sized read at every start.

Trust: every open checks the sidecar against the ``.npy`` header and the exact file size (catches
truncation and garbage headers); with ``verify=True`` the first open in a process also checks the
CRC-32 of the data. An entry failing either check is rebuilt, never used. Open
maps are reused while the entry's (inode, size, mtime) stay the same; an entry changed on disk is
reopened and checked again.
"""
from __future__ import annotations

import collections
import hashlib
import json
import logging
import os
import threading
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ftlib import atomic, audio
from ftlib.atomic import replacing
from ftlib.audio import Spectrogram, SpectrogramConfig
from ftlib.errors import AudioError, ConfigError

log = logging.getLogger(__name__)

FORMAT = 2  # entry layout version, part of every key
HASH_BYTES = 64 * 1024  # bytes hashed at each end of a source file
OPEN_ENTRIES = 128  # memory maps kept open per cache (bounded: each holds a file descriptor)
SILENCE = 1e-6  # peak below which a file counts as silent
STORAGE = ("complex64", "float16")  # how a SpectrogramCache stores complex values


def content_hash(path: Path, size: int) -> str:
    """Hash of the first and last ``HASH_BYTES`` of ``path`` (the whole file when smaller)."""
    digest = hashlib.blake2b(digest_size=8)
    with open(path, "rb") as f:
        digest.update(f.read(HASH_BYTES))
        if size > 2 * HASH_BYTES:
            f.seek(-HASH_BYTES, os.SEEK_END)
        digest.update(f.read(HASH_BYTES))
    return digest.hexdigest()


def _signature(entry: Path) -> tuple | None:
    """``(inode, size, mtime)`` of an entry file, None when missing: a change means reopen and recheck."""
    try:
        st = os.stat(entry)
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


def report_skipped(skipped: list[tuple[Path, str]], total: int) -> None:
    """Log one warning listing every skipped ``(path, reason)``."""
    if skipped:
        lines = "\n".join(f"  {p}: {why}" for p, why in skipped)
        log.warning("skipped %d of %d files:\n%s", len(skipped), total, lines)


class AudioCache:
    """Base of the caches: keying, atomic writes, validation, open-entry LRU and parallel builds.

    Subclasses define ``kind``, ``settings()`` (the transform settings, part of the key) and
    ``compute(path) -> np.ndarray``; ``encode`` (array -> stored array) and ``view`` (stored memmap ->
    what ``get`` returns) change the storage. ``get(path)`` returns a read-only memmap by default.
    """

    kind = "audio"
    unit = "frames"  # what the last axis counts

    def __init__(self, root: str | Path, sample_rate: int = 44100, verify: bool = True, workers: int | None = None):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.sample_rate, self.verify = sample_rate, verify
        self.workers = workers or min(8, os.cpu_count() or 1)
        self._names: dict[tuple, str] = {}  # (abs path, size, mtime) -> entry name
        self._open: collections.OrderedDict[str, tuple[np.ndarray, dict, tuple]] = collections.OrderedDict()
        self._verified: set[tuple[str, tuple]] = set()  # (entry name, signature) whose CRC was checked
        self._lock = threading.Lock()

    def __getstate__(self):  # open memory maps must not be pickled into spawned workers
        state = self.__dict__.copy()
        state.update(_open=collections.OrderedDict(), _lock=None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state, _lock=threading.Lock())

    def settings(self) -> dict:
        return {"sample_rate": self.sample_rate}

    def compute(self, path: Path) -> np.ndarray:
        raise NotImplementedError

    def encode(self, data: np.ndarray) -> np.ndarray:
        """The array stored for ``data`` (as is by default)."""
        return data

    def view(self, stored: np.ndarray) -> np.ndarray:
        """What ``get`` returns for a stored array (itself by default)."""
        return stored

    # keys and entries
    def key(self, path: str | Path) -> str:
        """Entry file name of ``path``: ``<stem>-<hash of identity, content and settings>.npy``."""
        path = Path(path)
        try:
            stat = path.stat()
        except OSError as exc:
            raise AudioError(f"{path}: no such audio file") from exc
        ident = (os.path.abspath(path), stat.st_size, stat.st_mtime_ns)
        name = self._names.get(ident)
        if name is None:
            if not path.is_file():
                raise AudioError(f"{path}: no such audio file")
            blob = json.dumps([FORMAT, self.kind, *ident, content_hash(path, stat.st_size), self.settings()])
            name = f"{path.stem[:40]}-{hashlib.sha1(blob.encode()).hexdigest()[:16]}.npy"
            self._names[ident] = name
        return name

    def get(self, path: str | Path) -> np.ndarray:
        """The cached array of ``path`` (see ``view``), computed first if needed. Raises AudioError for bad audio."""
        return self._entry(Path(path))[0]

    def info(self, path: str | Path) -> dict:
        """The sidecar of ``path``'s entry: ``shape`` (of ``get``'s array), ``dtype`` (stored), ``crc32``,
        ``peak``, ``source``."""
        return self._entry(Path(path))[1]

    def _entry(self, path: Path) -> tuple[np.ndarray, dict]:
        entry = self.root / self.key(path)
        sig = _signature(entry)
        with self._lock:
            hit = self._open.get(entry.name)
            if hit is not None and hit[2] == sig:  # changed on disk under an open map: reopen and check
                self._open.move_to_end(entry.name)
                return hit[:2]
        found = self._load(entry, sig) if sig else None
        if found is None:
            found = self._write(path, entry)
        with self._lock:
            self._open[entry.name] = found
            while len(self._open) > OPEN_ENTRIES:
                self._open.popitem(last=False)
        return found[:2]

    def _load(self, entry: Path, sig: tuple) -> tuple[np.ndarray, dict, tuple] | None:
        """A validated existing entry, or None (corrupt ones are logged, then rebuilt by the caller)."""
        try:
            meta = json.loads(entry.with_suffix(".json").read_text())
            array = self._map(entry, meta["dtype"])
            problem = None
            if list(self.view(array).shape) != meta["shape"] or str(array.dtype) != meta["dtype"]:
                problem = f"data {array.shape} {array.dtype} does not match its sidecar"
            elif sig[1] != array.offset + array.nbytes:
                problem = "file size does not match its header"
            elif self.verify and (entry.name, sig) not in self._verified and zlib.crc32(array) != meta["crc32"]:
                problem = "checksum mismatch"
        except Exception as exc:  # any unreadable header, sidecar or mapping means the entry is bad
            problem = f"{type(exc).__name__}: {exc}"
        if problem:
            log.warning("rebuilding corrupt cache entry %s (%s)", entry, problem)
            return None
        self._verified.add((entry.name, sig))
        return self.view(array), meta, sig

    @staticmethod
    def _map(entry: Path, dtype: str) -> np.ndarray:
        """Memory map of an entry: read-only, except copy-on-write for float16 data (never written:
        torch reads it without a copy only from writable arrays)."""
        return np.load(entry, mmap_mode="c" if dtype == "float16" else "r")

    def _write(self, path: Path, entry: Path) -> tuple[np.ndarray, dict, tuple]:
        data = np.ascontiguousarray(self.compute(path))
        stored = np.ascontiguousarray(self.encode(data))
        meta = {"source": str(path), "shape": list(data.shape), "dtype": str(stored.dtype),
                "crc32": zlib.crc32(stored), "peak": float(np.abs(data).max()) if data.size else 0.0}
        with replacing(entry) as tmp:  # data first: an entry without its sidecar is rebuilt
            np.save(tmp, stored)
        atomic.write_text(entry.with_suffix(".json"), json.dumps(meta))
        sig = _signature(entry)
        self._verified.add((entry.name, sig))
        return self.view(self._map(entry, meta["dtype"])), meta, sig

    # scanning many files
    def check(self, path: Path, min_frames: int = 1, require_signal: bool = False) -> str | None:
        """Cache ``path``; return why it is unusable (None when usable)."""
        try:
            meta = self.info(path)
        except AudioError as exc:
            return str(exc).removeprefix(f"{path}: ")
        if meta["shape"][-1] < min_frames:
            return f"too short: {meta['shape'][-1]} {self.unit}, a crop needs {min_frames}"
        if require_signal and not meta["peak"] > SILENCE:
            return "silent"
        return None

    def build(self, paths: list[Path], min_frames: int = 1, require_signal: bool = False,
              desc: str = "caching", report: bool = True) -> tuple[list[Path], list[tuple[Path, str]]]:
        """Cache every file in parallel threads; return ``(usable, skipped)`` in input order.

        ``skipped`` lists ``(path, reason)`` for unreadable, empty, non-finite, too-short (fewer than
        ``min_frames`` along the last axis) or, with ``require_signal``, silent files; with ``report``
        they are logged as one warning (datasets pass ``report=False`` and report all sources at once).
        Threads suffice: decoding (libsndfile), resampling (soxr), ``torch.stft`` and CRC release the GIL.
        """
        paths = [Path(p) for p in paths]
        with ThreadPoolExecutor(self.workers) as pool:
            reasons = list(tqdm(pool.map(lambda p: self.check(p, min_frames, require_signal), paths),
                                total=len(paths), desc=desc, leave=False))
        usable = [p for p, why in zip(paths, reasons) if why is None]
        skipped = [(p, why) for p, why in zip(paths, reasons) if why is not None]
        if report:
            report_skipped(skipped, len(paths))
        return usable, skipped


class HalfSpectrogram:
    """A complex array ``[...]`` stored as float16 (real, imag) pairs ``[..., 2]``, read as complex64.

    Behaves like the complex array where the datasets use cache entries: ``shape``, ``ndim``,
    ``dtype`` (complex64), basic slicing (another HalfSpectrogram, nothing read) and ``np.asarray``
    (decodes). ``decode(out)`` writes the complex64 values into ``out``. ``pairs`` is the float16 data.
    """

    dtype = np.dtype(np.complex64)

    def __init__(self, pairs: np.ndarray):
        self.pairs = pairs

    @property
    def shape(self) -> tuple[int, ...]:
        return self.pairs.shape[:-1]

    @property
    def ndim(self) -> int:
        return self.pairs.ndim - 1

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, key) -> HalfSpectrogram:
        key = key if isinstance(key, tuple) else (key,)
        return HalfSpectrogram(self.pairs[(*key, slice(None))])  # the (real, imag) axis is always kept

    def decode(self, out: np.ndarray | None = None) -> np.ndarray:
        """Complex64 values, written into ``out`` (contiguous, ``self.shape``) when given."""
        out = np.empty(self.shape, np.complex64) if out is None else out
        pairs = self.pairs if min(self.pairs.strides, default=0) >= 0 else self.pairs.copy()  # torch needs strides >= 0
        torch.from_numpy(out.view(np.float32).reshape(pairs.shape)).copy_(torch.from_numpy(pairs))
        return out

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        data = self.decode()
        return data if dtype is None else data.astype(dtype, copy=False)


class SpectrogramCache(AudioCache):
    """``cache.get(path)``: complex ``[C, n_fft//2 + 1, T]``, a read-only complex64 memmap (``dtype``
    "complex64", the default) or a :class:`HalfSpectrogram` ("float16").

    "float16" stores each real and imaginary part as float16: half the disk space, page cache and
    memory traffic; every part keeps a relative error of at most 2**-11 (at most 3e-8 absolute under
    6e-5). An entry whose values do not fit float16 (beyond 65504: audio far above full scale) is
    stored as complex64. The dtype is part of the key: switching builds new entries.
    """

    kind = "stft"

    def __init__(self, root: str | Path, spectrogram: SpectrogramConfig | None = None, sample_rate: int = 44100,
                 verify: bool = True, workers: int | None = None, dtype: str = "complex64"):
        if dtype not in STORAGE:
            raise ConfigError(f"SpectrogramCache dtype must be one of {STORAGE}, got {dtype!r}")
        super().__init__(root, sample_rate, verify, workers)
        self.spec = Spectrogram(spectrogram or SpectrogramConfig())
        self.dtype = dtype

    def settings(self) -> dict:
        storage = {} if self.dtype == "complex64" else {"dtype": self.dtype}  # complex64 keys predate the option
        stft = {k: v for k, v in self.spec.config.to_dict().items() if k != "win_length" or v}  # likewise win_length 0
        return {"sample_rate": self.sample_rate, **stft, **storage}

    def compute(self, path: Path) -> np.ndarray:
        wave = audio.load(path, self.sample_rate)
        with torch.no_grad():
            return self.spec.stft(torch.from_numpy(wave)).numpy().astype(np.complex64)

    def encode(self, data: np.ndarray) -> np.ndarray:
        """float16 pairs ``[C, F, T, 2]`` when ``dtype`` is "float16" and every value fits, else ``data``."""
        if self.dtype == "float16":
            with np.errstate(over="ignore"):
                pairs = data.view(np.float32).reshape(*data.shape, 2).astype(np.float16)
            if np.isfinite(pairs).all():
                return pairs
        return data

    def view(self, stored: np.ndarray) -> np.ndarray | HalfSpectrogram:
        return HalfSpectrogram(stored) if stored.dtype == np.float16 else stored

    def waveforms(self) -> WaveformCache:
        """A :class:`WaveformCache` in the same folder at the same sample rate (keys never collide)."""
        return WaveformCache(self.root, self.sample_rate, self.verify, self.workers)


class WaveformCache(AudioCache):
    """``cache.get(path) -> np.ndarray``: read-only memmap, float32 ``[C, S]`` at ``sample_rate``."""

    kind = "wave"
    unit = "samples"

    def compute(self, path: Path) -> np.ndarray:
        return audio.load(path, self.sample_rate)
