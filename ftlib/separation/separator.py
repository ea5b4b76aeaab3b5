"""Separation: mask models applied to whole songs in chunks with real context, streamed.

Every stage runs block by block, so memory stays flat in the song's length::

    audio blocks -> StftStream -> X -> _MaskStream (models x TTA grids, ensembled) -> [post-process]
        -> mask * X -> IstftStream -> instrumental; vocals = mixture - instrumental

A magnitude-mask model sees ``|X|`` and returns a real mask; a model of the complex STFT
(``task == "complex_separation"``) sees ``X`` and returns a complex mask (or a real one, see
:func:`~ftlib.models.has_complex_mask`). All are masks of the instrumental
(:func:`~ftlib.models.instrumental_mask`), so they ensemble, take TTA and post-process alike; the
STFT is the model's own (:func:`model_spectrogram`).

A *grid* cuts the song's frames into chunks of ``cropsize``; each chunk is given ``padding`` frames
of its real neighbours on both sides (zeros beyond the song's edges), chunks run through the model
in batches and only their centres are kept. Test-time augmentation adds grids: shifted by half a
chunk, or with other crop sizes (the seed's multi-cropsize TTA); the L/R swap runs every batch
twice, once with the channels swapped. An ensemble combines the models' masks.
"""
from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ftlib import checkpoint
from ftlib.audio import Spectrogram, SpectrogramConfig
from ftlib.devices import autocast_available, default_device, native_bf16
from ftlib.errors import AudioError, CheckpointError, ConfigError, SeparationError
from ftlib.models import has_complex_mask, instrumental_mask, is_complex
from ftlib.separation import stream
from ftlib.separation.stream import AudioSource, IstftStream, StemWriter, StftStream

log = logging.getLogger(__name__)

EPS = 1e-8
STEM_NAMES = {"instrumental": "Instruments", "vocals": "Vocals"}
ENSEMBLES = ("average", "min", "max", "waveform")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
NORMALISE = ("song", "chunk")
POSTPROCESS = dict(threshold=0.01, min_frames=64, fade=32)  # tsurumeso/vocal-remover merge_artifacts defaults


# ------------------------------------------------------------------------------------ models

def stem_paths(source: str | Path, out_dir: str | Path, fmt: str = "wav", vocals: bool = True,
               suffix: str = "") -> dict[str, Path]:
    """``{"instrumental": out_dir/<name>_Instruments<suffix>.<fmt>, "vocals": .../<name>_Vocals<suffix>.<fmt>}``."""
    stems = ("instrumental", "vocals") if vocals else ("instrumental",)
    return {s: Path(out_dir) / f"{Path(source).stem}_{STEM_NAMES[s]}{suffix}.{fmt}" for s in stems}


def check_model(model: nn.Module, source: str = "model") -> nn.Module:
    """Raise CheckpointError unless ``model`` maps a magnitude (or, for a complex-mask model, a complex
    STFT) ``[1, C, F, T]`` to an instrumental mask of that shape."""
    config = getattr(model, "config", None)
    name = getattr(model, "model_name", type(model).__name__)
    task = getattr(model, "task", "separation")
    if task not in ("separation", "complex_separation") or not all(hasattr(config, k)
                                                                  for k in ("num_bins", "in_channels")):
        raise CheckpointError(f"{source}: a {name!r} model ({task}) is not a separation mask model; "
                              "pass a checkpoint trained for separation")
    x = torch.rand(1, config.in_channels, config.num_bins, 16)
    if is_complex(model):
        x = torch.polar(x, 2 * torch.pi * torch.rand_like(x))
    try:
        with torch.inference_mode():
            out = instrumental_mask(model, model.eval()(x))
    except Exception as exc:
        raise CheckpointError(f"{source}: the {name!r} model fails on a magnitude of shape {tuple(x.shape)} ({exc}); "
                              "is it a separation model?") from exc
    if not isinstance(out, torch.Tensor) or out.shape != x.shape:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise CheckpointError(f"{source}: the {name!r} model returns {got} for a magnitude {tuple(x.shape)}, "
                              "not a mask of the same shape; it is not a separation model")
    return model


def load_model(path: str | Path) -> nn.Module:
    """A separation model from a checkpoint folder; CheckpointError if corrupt or of another kind."""
    return check_model(checkpoint.load(path), str(path))


def model_spectrogram(model: nn.Module) -> SpectrogramConfig:
    """The STFT ``model`` expects: its config's ``stft_n_fft``, ``stft_hop_length`` and
    ``stft_win_length`` when it has them (the RoFormers, which see every bin), else ``n_fft = 2 *
    num_bins`` and ``hop_length = num_bins`` (the Nyquist bin dropped)."""
    config = model.config
    if hasattr(config, "stft_n_fft"):
        return SpectrogramConfig(n_fft=config.stft_n_fft, hop_length=config.stft_hop_length,
                                 win_length=config.stft_win_length)
    return SpectrogramConfig(n_fft=2 * config.num_bins, hop_length=config.num_bins)


def checkpoint_name(path: str | Path) -> str:
    """A short name for output files: ``<run>-<folder>`` for ``runs/<run>/checkpoints/<folder>``, else the folder."""
    path = Path(path).resolve()
    path = path.parent if path.suffix == ".safetensors" else path
    name = f"{path.parents[1].name}-{path.name}" if path.parent.name == "checkpoints" else path.name
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", name)


def inference_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of separation (None: float32). ``"auto"``: bf16 on GPUs that compute it
    natively, fp16 on older GPUs and Apple MPS, float32 on the CPU; also float32 wherever this torch
    build has no autocast for the device."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "auto":
        precision = {"cuda": "bf16" if native_bf16(device) else "fp16", "mps": "fp16"}.get(device.type, "fp32")
    if precision == "fp32" or not autocast_available(device.type):
        return None
    return torch.bfloat16 if precision == "bf16" else torch.float16


def chunking(model: nn.Module, cropsize: int | None = None, padding: int | None = None) -> tuple[int, int, str]:
    """``(cropsize, padding, how they were chosen)`` for separating with ``model``: the given values,
    else the model's ``inference`` settings (see :class:`Separator`), else 256; padding a quarter of
    the crop size unless given or set by the model."""
    inference = getattr(model, "inference", None) or {}
    if cropsize is not None:
        source = "given"
    elif inference.get("best_cropsize"):
        cropsize, source = inference["best_cropsize"], "the best crop size of the model's context-length study"
    elif inference.get("cropsize"):
        cropsize = inference["cropsize"]
        source = "the imported checkpoint's chunk size" if "imported_from" in inference else "the model's training crop size"
    else:
        cropsize, source = 256, "the default"
    if padding is None:
        padding = inference.get("padding", cropsize // 4) if source.startswith("the model") else cropsize // 4
    return cropsize, padding, f"cropsize {cropsize} ({source}), padding {padding}"


class _Forward:
    """Runs one model on a batch ``[B, C, F, W]`` of STFT frames (complex, or magnitudes) on its
    device under autocast at ``precision``, averaging with the L/R-swapped batch when ``swap``;
    returns the instrumental mask on the CPU: float32 from a magnitude model (fed ``|batch|``),
    complex64 from a complex-mask model. A mask that is not finite under autocast (fp16 overflow) is
    computed again in float32; one that is not finite in float32 either raises SeparationError."""

    def __init__(self, models: Sequence[nn.Module], device: torch.device, swap: bool = False,
                 precision: str = "auto"):
        self.models, self.device, self.swap = models, device, swap
        self.dtype = inference_dtype(precision, device)

    def _run(self, index: int, x: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
        model = self.models[index]
        if is_complex(model):
            if not x.is_complex():
                raise SeparationError(f"model {index} takes the complex STFT; it was given magnitudes")
        else:
            x = x.abs()
        with torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None):
            mask = instrumental_mask(model, model(x))
        return mask.to(torch.complex64) if mask.is_complex() else mask.float()

    def __call__(self, index: int, batch: torch.Tensor) -> torch.Tensor:
        x = batch.to(self.device)
        if self.swap:
            x = torch.cat([x, x.flip(1)])
        out = self._run(index, x, self.dtype)
        if not bool(torch.isfinite(out).all()):
            if self.dtype is not None:
                log.warning("model %d gave a non-finite mask under %s autocast; computing that batch in float32",
                            index, self.dtype)
                out = self._run(index, x, None)
            if not bool(torch.isfinite(out).all()):
                raise SeparationError(f"model {index} gives a mask with NaN or infinite values on {self.device} "
                                      "even in float32: its weights or its input are broken")
        if self.swap:
            out = (out[:len(batch)] + out[len(batch):].flip(1)) / 2
        return out.cpu()


# -------------------------------------------------------------------------------- mask stream

@dataclasses.dataclass
class _Grid:
    """Chunks of one model on one grid: chunk ``k`` covers frames ``[offset + k * cropsize, ... + cropsize)``."""

    model: int
    cropsize: int
    padding: int
    offset: int = 0
    next_chunk: int = dataclasses.field(init=False)
    mask: torch.Tensor | None = dataclasses.field(init=False, default=None)  # unconsumed mask from frame `start`
    start: int = dataclasses.field(init=False, default=0)

    def __post_init__(self):
        self.next_chunk = -self.offset // self.cropsize  # the chunk holding frame 0

    def lo(self, k: int) -> int:
        """First frame (context included) that chunk ``k`` reads."""
        return self.offset + k * self.cropsize - self.padding


class _MaskStream:
    """STFT frames ``[C, F, t]`` (complex, or magnitudes) in, combined instrumental mask frames out,
    in order; the masks are complex as soon as one model's are.

    Every grid computes its chunks once their right context has arrived (in batches of
    ``batch_size``); masks are averaged over a model's grids, then combined over models.
    """

    def __init__(self, forward: Callable[[int, torch.Tensor], torch.Tensor], grids: list[_Grid],
                 weights: Sequence[float], ensemble: str = "average", batch_size: int = 4,
                 normalise: str = "chunk", scale: float = 1.0):
        self.forward, self.grids, self.weights, self.ensemble = forward, grids, list(weights), ensemble
        self.batch_size, self.normalise, self.scale = batch_size, normalise, scale
        self.mag: torch.Tensor | None = None  # frames from `mag_start` on
        self.mag_start = self.emitted = 0
        self.total: int | None = None  # the song's frame count, once known

    def push(self, magnitude: torch.Tensor, last: bool = False) -> torch.Tensor:
        self.mag = magnitude if self.mag is None else torch.cat([self.mag, magnitude], -1)
        if last:
            self.total = self.mag_start + self.mag.shape[-1]
        for grid in self.grids:
            self._compute(grid)
        keep = max(self.mag_start, min(g.lo(g.next_chunk) for g in self.grids))
        self.mag, self.mag_start = self.mag[..., keep - self.mag_start:], keep
        return self._combine()

    def _ready(self, grid: _Grid) -> list[int]:
        """Chunks of ``grid`` computable now (at most one batch)."""
        chunks, k = [], grid.next_chunk
        end = self.mag_start + self.mag.shape[-1]
        while len(chunks) < self.batch_size:
            if self.total is None and grid.lo(k + 1) + 2 * grid.padding > end:
                break  # right context not here yet
            if self.total is not None and grid.offset + k * grid.cropsize >= self.total:
                break
            chunks.append(k)
            k += 1
        return chunks if self.total is not None or len(chunks) == self.batch_size else []

    def _compute(self, grid: _Grid) -> None:
        while chunks := self._ready(grid):
            width = grid.cropsize + 2 * grid.padding
            batch = torch.stack([self._window(grid.lo(k), width) for k in chunks])
            if self.normalise == "chunk":
                batch = batch / (batch.abs().amax(dim=(1, 2, 3), keepdim=True) + EPS)
            else:
                batch = batch * self.scale
            out = self.forward(grid.model, batch)[..., grid.padding:grid.padding + grid.cropsize]
            mask = torch.cat(list(out), -1)  # [C, F, len(chunks) * cropsize]
            first_frame = grid.offset + chunks[0] * grid.cropsize
            mask = mask[..., max(0, -first_frame):]
            if self.total is not None:
                mask = mask[..., :self.total - max(first_frame, 0)]
            grid.mask = mask if grid.mask is None else torch.cat([grid.mask, mask], -1)
            grid.next_chunk = chunks[-1] + 1

    def _window(self, lo: int, width: int) -> torch.Tensor:
        """Frames ``[lo, lo + width)`` of the song, zeros outside it."""
        out = self.mag.new_zeros(*self.mag.shape[:2], width)
        a, b = max(lo, self.mag_start), min(lo + width, self.mag_start + self.mag.shape[-1])
        if b > a:
            out[..., a - lo:b - lo] = self.mag[..., a - self.mag_start:b - self.mag_start]
        return out

    def _combine(self) -> torch.Tensor:
        ready = min(g.start + (0 if g.mask is None else g.mask.shape[-1]) for g in self.grids)
        count = ready - self.emitted
        if count <= 0:
            return torch.zeros(*self.mag.shape[:2], 0)
        per_model: dict[int, list[torch.Tensor]] = {}
        for g in self.grids:
            per_model.setdefault(g.model, []).append(g.mask[..., :count])
            g.mask, g.start = g.mask[..., count:], g.start + count
        means = [torch.stack(m).mean(0) for m in per_model.values()]
        if any(m.is_complex() for m in means):
            means = [m.to(torch.complex64) for m in means]
        masks = torch.stack(means)
        self.emitted = ready
        if self.ensemble == "min":
            return masks.amin(0)
        if self.ensemble == "max":
            return masks.amax(0)
        # "average", and "waveform": every model shares the mixture's STFT and phase and the inverse
        # STFT is linear, so the weighted mean of the masks gives the weighted mean of the waveforms
        weights = torch.tensor(self.weights).view(-1, 1, 1, 1)
        return (masks * weights).sum(0) / weights.sum()


@torch.inference_mode()
def predict_mask(model: nn.Module, magnitude: torch.Tensor, cropsize: int = 256, padding: int = 64,
                 batch_size: int = 4, normalise: str = "chunk", progress: bool = False,
                 precision: str = "auto") -> torch.Tensor:
    """Mask ``[C, F, T]`` for a magnitude ``[C, F, T]`` (Nyquist already dropped), or the complex
    mask for the complex STFT ``[C, F, T]`` of a complex-mask model.

    ``normalise``: "chunk" divides every chunk (context included) by its own maximum, as training
    divides every crop (the default, see docs/results/separation.md);
    "song" divides the whole song by its maximum (chunking then changes only the attention context).
    """
    run = _Forward([model.eval()], next(model.parameters()).device, precision=precision)
    bar = tqdm(total=-(-magnitude.shape[-1] // cropsize), desc="separating", leave=False, disable=not progress)

    def forward(index: int, batch: torch.Tensor) -> torch.Tensor:
        bar.update(len(batch))
        return run(index, batch)

    stream = _MaskStream(forward, [_Grid(0, cropsize, padding)], [1.0], batch_size=batch_size, normalise=normalise,
                         scale=1.0 / (float(magnitude.abs().max()) + EPS))
    with bar:
        return stream.push(magnitude, last=True)


def separate_with_mask(model: nn.Module, wave: np.ndarray, cropsize: int = 256, padding: int = 32) -> dict[str, np.ndarray]:
    """Run ``model`` once on a mixture ``[C, S]``: ``magnitude`` and instrumental ``mask`` ``[C, F, T]``
    (Nyquist bin dropped), ``instrumental`` and ``vocals`` ``[C, S]`` (what a Separator without
    test-time augmentation gives)."""
    bins = model.config.num_bins
    spec = Spectrogram(n_fft=2 * bins, hop_length=bins)
    wave = np.ascontiguousarray(wave, dtype=np.float32)
    stft = spec.stft(torch.from_numpy(wave))
    magnitude = Spectrogram.to_model(stft.abs())
    mask = predict_mask(model, magnitude, cropsize, padding, batch_size=1).cpu()
    instrumental = spec.istft(stft * Spectrogram.from_model(mask), wave.shape[-1]).numpy()
    return {"magnitude": magnitude.numpy(), "mask": mask.numpy(), "instrumental": instrumental,
            "vocals": wave - instrumental}


# ----------------------------------------------------------------------------- post-process

class _LiftVocalFree:
    """tsurumeso/vocal-remover's post-process, streamed: over runs of more than ``min_frames``
    frames where the instrumental mask exceeds ``threshold`` in every bin and channel (no vocal
    anywhere), raise it towards 1: ``mask + w (1 - mask)``, ``w`` fading in and out over ``fade``
    frames (not at the song's edges). Holds back ``min_frames`` frames to see a run's length."""

    def __init__(self, threshold: float = 0.01, min_frames: int = 64, fade: int = 32):
        if not 1 <= fade <= min_frames:
            raise ConfigError(f"post-process needs 1 <= fade <= min_frames, got fade={fade}, min_frames={min_frames}")
        self.threshold, self.min_frames, self.fade = threshold, min_frames, fade
        self.mask: torch.Tensor | None = None
        self.start = 0  # song frame of mask[..., 0]
        self.run_start: int | None = None  # start of the run holding the last emitted frame

    def push(self, mask: torch.Tensor, last: bool = False) -> torch.Tensor:
        self.mask = mask if self.mask is None else torch.cat([self.mask, mask], -1)
        flags = (self.mask.abs().amin(dim=(0, 1)) > self.threshold).numpy()
        count = len(flags) if last else max(0, len(flags) - self.min_frames)
        weight = np.zeros(count, np.float32)
        edges = np.flatnonzero(np.diff(np.concatenate([[0], flags.astype(np.int8), [0]])))
        for s, e in zip(edges[::2], edges[1::2]):  # runs [s, e) of vocal-free frames
            if s >= count:
                break
            begin = self.run_start if s == 0 and self.run_start is not None else self.start + s
            end = self.start + e if e < len(flags) or last else None  # None: still running
            if end is not None and end - begin <= self.min_frames:
                continue
            frames = self.start + np.arange(s, min(e, count))
            w = np.ones(len(frames), np.float32)
            if begin > 0:
                w = np.minimum(w, (frames - begin) / self.fade)
            if e < len(flags):  # the run ends before the song does
                w = np.minimum(w, (end - 1 - frames) / self.fade)
            weight[s:min(e, count)] = np.clip(w, 0, 1)
        if count and flags[count - 1]:
            run = edges[::2][edges[::2] < count][-1]
            self.run_start = self.run_start if run == 0 and self.run_start is not None else self.start + run
        elif count:
            self.run_start = None
        out, self.mask, self.start = self.mask[..., :count], self.mask[..., count:], self.start + count
        return out + torch.from_numpy(weight) * (1 - out)


# --------------------------------------------------------------------------------- separator

class _Fifo:
    """Mixture samples waiting for their instrumental: ``push`` blocks ``[C, n]``, ``pop(n)`` the oldest ``n``."""

    def __init__(self):
        self.blocks: list[np.ndarray] = []

    def push(self, block: np.ndarray) -> None:
        self.blocks.append(block)

    def pop(self, count: int) -> np.ndarray:
        held = np.concatenate(self.blocks, -1) if len(self.blocks) != 1 else self.blocks[0]
        self.blocks = [held[:, count:]]
        return held[:, :count]


class Separator:
    """Separate songs with one mask model or an ensemble of them, streaming.

    >>> sep = Separator.from_checkpoint(["runs/a/checkpoints/best", "runs/b/checkpoints/best"], ensemble="min")
    >>> stems = sep.separate(audio)             # {"instrumental": [C, S], "vocals": [C, S]}
    >>> sep.separate_file("song.flac", "out/")  # writes song_Instruments.wav, song_Vocals.wav

    Args:
        model: a mask model (magnitude or complex mask), or a list of them (an ensemble sharing
            the STFT, ``num_bins`` and ``in_channels``).
        spectrogram: STFT settings; default the model's (:func:`model_spectrogram`).
        sample_rate: rate songs are resampled to; default the model's ``config.sample_rate`` if it
            has one, else 44100.
        cropsize, padding: frames per chunk and real context frames on each side; by default the
            first model's own (``model.inference``, from its checkpoint: the best crop size of its
            context-length study, else its training crop size), else 256; padding a quarter of the crop
            size unless given or set by the model. ``settings`` says which were used and where they
            came from.
        batch_size: chunks per forward pass; default 16 on GPUs and 1 on the CPU, where larger
            batches run no faster and hold more activations.
        normalise: "chunk" (divide every chunk by its own maximum, as in training) or "song" (divide
            by the song's maximum magnitude, found in a first pass).
        device: torch device; default CUDA, else MPS, else CPU.
        precision: "auto" (bf16 on GPUs with native bf16, fp16 on other GPUs and MPS, float32 on the
            CPU), "fp32", "bf16" or "fp16"; a batch whose mask is not finite under autocast is
            computed again in float32.
        weights: per-model weights of the "average"/"waveform" ensembles.
        ensemble: how masks combine over models: "average", "min" (instrumental = element-wise min
            of the models' magnitudes, vocals = the max of theirs), "max", or "waveform" (weighted
            mean of the models' waveforms); "min" and "max" take magnitude masks only.
        tta_shift: also run every grid shifted by half a chunk and average.
        tta_swap: also run every chunk with left and right swapped and average.
        tta_cropsizes: extra crop sizes to average over (padding scaled in proportion).
        postprocess: raise the mask over long vocal-free stretches (see :class:`_LiftVocalFree`).
        names: model names for output files (default ``model0, model1, ...``).
    """

    def __init__(self, model: nn.Module | Sequence[nn.Module], spectrogram: SpectrogramConfig | None = None,
                 sample_rate: int | None = None, cropsize: int | None = None, padding: int | None = None,
                 batch_size: int | None = None,
                 normalise: str = "chunk", device: str | torch.device | None = None, *,
                 weights: Sequence[float] | None = None, ensemble: str = "average", tta_shift: bool = False,
                 tta_swap: bool = False, tta_cropsizes: Sequence[int] = (), postprocess: bool = False,
                 names: Sequence[str] | None = None, precision: str = "auto"):
        models = list(model) if isinstance(model, (list, tuple)) else [model]
        sample_rate = sample_rate or getattr(models[0].config, "sample_rate", 44100)
        self.device = torch.device(device) if device else default_device()
        self.models = [m.to(self.device).eval() for m in models]
        self.names = list(names) if names else [f"model{i}" for i in range(len(models))]
        if len(self.names) != len(models):
            raise ConfigError(f"give one name per model ({len(models)}), got {self.names}")
        shared = {(m.config.num_bins, m.config.in_channels, getattr(m.config, "sample_rate", sample_rate),
                   *dataclasses.astuple(model_spectrogram(m))) for m in models}
        if len(shared) > 1:
            raise CheckpointError("ensemble models disagree on (num_bins, in_channels, sample_rate, STFT): "
                                  f"{sorted(shared)}")
        bins = models[0].config.num_bins
        self.spec = Spectrogram(spectrogram or model_spectrogram(models[0]))
        if bins not in (self.spec.num_bins, self.spec.num_bins + 1):
            raise ValueError(f"n_fft={self.spec.n_fft} gives {self.spec.num_bins} bins, the model expects {bins}")
        self.bins = bins  # the lowest `bins` bins go to the models; a dropped Nyquist bin takes its neighbour's mask
        if ensemble not in ENSEMBLES or normalise not in NORMALISE:
            raise ConfigError(f"ensemble must be one of {ENSEMBLES} and normalise one of {NORMALISE}, "
                              f"got {ensemble!r} and {normalise!r}")
        if ensemble in ("min", "max") and any(has_complex_mask(m) for m in models):
            raise ConfigError(f"the {ensemble!r} ensemble compares magnitude masks; with complex-mask models "
                              "use 'average' or 'waveform'")
        batch_size = batch_size or (1 if self.device.type == "cpu" else 16)
        cropsize, padding, self.settings = chunking(models[0], cropsize, padding)
        if min(cropsize, batch_size, *tta_cropsizes) < 1 or padding < 0:
            raise ConfigError("cropsize, batch_size and tta_cropsizes must be >= 1 and padding >= 0")
        weights = [1.0] * len(models) if weights is None else [float(w) for w in weights]
        if len(weights) != len(models) or min(weights) < 0 or sum(weights) <= 0:
            raise ConfigError(f"give one weight >= 0 per model ({len(models)}), not all zero; got {weights}")
        if ensemble in ("min", "max") and len(set(weights)) > 1:
            raise ConfigError(f"weights apply to the 'average' and 'waveform' ensembles, not {ensemble!r}")
        self.sample_rate, self.cropsize, self.padding = sample_rate, cropsize, padding
        self.batch_size, self.normalise, self.weights, self.ensemble = batch_size, normalise, weights, ensemble
        self.tta_shift, self.tta_swap, self.tta_cropsizes = tta_shift, tta_swap, list(tta_cropsizes)
        self.postprocess = postprocess
        self.precision = precision
        inference_dtype(precision, self.device)  # refuses an unknown precision now, not mid-song

    @property
    def model(self) -> nn.Module:
        """The first (or only) model."""
        return self.models[0]

    @property
    def channels(self) -> int:
        return self.model.config.in_channels

    @classmethod
    def from_checkpoint(cls, path: str | Path | Sequence[str | Path], **kwargs) -> "Separator":
        """A separator for one checkpoint folder or a list of them (an ensemble); names from the folders."""
        paths = [path] if isinstance(path, (str, Path)) else list(path)
        names = kwargs.pop("names", [checkpoint_name(p) for p in paths])
        return cls([load_model(p) for p in paths], names=names, **kwargs)

    def _grids(self) -> list[_Grid]:
        sizes = [(self.cropsize, self.padding)]
        sizes += [(c, round(self.padding * c / self.cropsize)) for c in self.tta_cropsizes if c != self.cropsize]
        return [_Grid(m, c, p, offset) for m in range(len(self.models)) for c, p in sizes
                for offset in ((0, c // 2) if self.tta_shift and c > 1 else (0,))]

    # ---------------------------------------------------------------------------- streaming core

    def _scan(self, blocks: Iterable[np.ndarray]) -> tuple[float, float]:
        """First pass: the peak sample and the song scale (1 / max magnitude; only for "song")."""
        peak, top = 0.0, 0.0
        stft = StftStream(self.spec) if self.normalise == "song" else None

        def largest(frames: torch.Tensor) -> float:
            return float(frames[..., :self.bins, :].abs().max()) if frames.numel() else 0.0

        for block in blocks:
            peak = max(peak, float(np.abs(block).max(initial=0.0)))
            if stft is not None:
                top = max(top, largest(stft.push(torch.from_numpy(block))))
        if stft is not None:
            top = max(top, largest(stft.finish()))
        return peak, 1.0 / (top + EPS)

    @torch.inference_mode()
    def _stream(self, blocks: Iterable[np.ndarray], scale: float, emit: Callable[[dict[str, np.ndarray]], None],
                num_samples: int | None = None, progress: bool = False, desc: str = "separating") -> None:
        """The pipeline of the module docstring; ``emit`` receives ``{"instrumental", "vocals"}`` blocks."""
        stft, istft, fifo = StftStream(self.spec), IstftStream(self.spec), _Fifo()
        masks = _MaskStream(_Forward(self.models, self.device, self.tta_swap, self.precision), self._grids(), self.weights,
                            self.ensemble, self.batch_size, self.normalise, scale)
        post = _LiftVocalFree(**POSTPROCESS) if self.postprocess else None
        pending = torch.zeros(self.channels, self.spec.n_fft // 2 + 1, 0, dtype=torch.complex64)
        total = None if num_samples is None else self.spec.num_frames(num_samples)
        bar = tqdm(total=total, desc=desc, unit="frame", leave=False, disable=not progress)

        def step(frames: torch.Tensor, last: bool = False) -> None:
            nonlocal pending
            pending = torch.cat([pending, frames], -1)
            mask = masks.push(frames[..., :self.bins, :], last)
            if post is not None:
                mask = post.push(mask, last)
            count = mask.shape[-1]
            if mask.shape[-2] < pending.shape[-2]:
                mask = Spectrogram.from_model(mask)
            inst = istft.push(pending[..., :count] * mask, stft.num_samples if last else None)
            pending = pending[..., count:]
            inst = inst.numpy()
            emit({"instrumental": inst, "vocals": fifo.pop(inst.shape[-1]) - inst})
            bar.update(count)

        with bar:
            for block in blocks:
                fifo.push(block)
                step(stft.push(torch.from_numpy(block)))
            step(stft.finish(), last=True)

    # ------------------------------------------------------------------------------------ API

    def separate(self, wave: np.ndarray, progress: bool = False) -> dict[str, np.ndarray]:
        """``[C, S]`` mixture -> ``{"instrumental": [C, S], "vocals": [C, S]}`` (vocals = mixture - instrumental)."""
        if wave.ndim != 2 or wave.shape[0] != self.channels:
            raise AudioError(f"expected audio of shape [{self.channels}, samples], got {tuple(wave.shape)}")
        wave = np.ascontiguousarray(wave, dtype=np.float32)
        blocks = [wave[:, i:i + stream.BLOCK] for i in range(0, wave.shape[-1], stream.BLOCK)]
        parts: dict[str, list[np.ndarray]] = {"instrumental": [], "vocals": []}

        def collect(stems: dict[str, np.ndarray]) -> None:
            for stem, block in stems.items():
                parts[stem].append(block)

        self._stream(blocks, self._scan(blocks)[1], collect, wave.shape[-1], progress)
        return {k: np.concatenate(v, -1) for k, v in parts.items()}

    def separate_file(self, path: str | Path, out_dir: str | Path, fmt: str = "wav", vocals: bool = True,
                      bit_depth: int | None = None, suffix: str = "", progress: bool = False) -> dict[str, Path]:
        """Separate ``path`` into ``out_dir/<name>_Instruments<suffix>.<fmt>`` (and ``_Vocals``), streaming.

        ``bit_depth``: 16, 24 or 32 (float, wav only); tags (title, artist, ...) are copied from the
        source. Outputs appear only when complete: a failure leaves earlier files untouched.
        """
        source = AudioSource(path, self.sample_rate, self.channels)
        peak, scale = self._scan(source)
        if not peak > 0:
            raise AudioError(f"{source.path}: file is silent")
        targets = stem_paths(source.path, out_dir, fmt, vocals, suffix)
        writers: dict[str, StemWriter] = {}
        try:
            for stem, target in targets.items():
                tags = dict(source.tags)
                if stem == "vocals" and "title" in tags:
                    tags["title"] += " (Vocals)"
                writers[stem] = StemWriter(target, self.sample_rate, self.channels, bit_depth, tags)

            def write(stems: dict[str, np.ndarray]) -> None:
                for stem, writer in writers.items():
                    writer.write(stems[stem])

            self._stream(source, scale, write, source.num_samples, progress, desc=source.path.name)
            return {stem: w.commit() for stem, w in writers.items()}
        finally:
            for w in writers.values():
                w.discard()
