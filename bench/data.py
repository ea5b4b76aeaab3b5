"""Data pipeline throughput: voxaug training items/s from the cache against decoding audio + STFT.

    python bench/data.py                      # ~2 minutes on 2 cores (the first run also synthesises stems)
    python bench/data.py --items 100 --stems 2

One process, one thread for torch, realistic STFT settings (n_fft 2048, hop 1024, stereo 44.1 kHz).
Times are CPU times of this process (``time.process_time``): everything measured runs on one thread,
and on a shared machine other jobs shift CPU times much less than wall-clock times.
Every measurement makes the same items with the same ``VoxAugDataset`` code (same crops, gains and
mixing); only where the complex STFT crops come from changes:
  * the memory-mapped cache, stored as complex64 (default) or float16;
  * no cache, from float WAV and 24-bit FLAC stems: decode the whole file (``ftlib.audio.load``) + STFT,
    or seek and decode only the crop's samples (``soundfile`` start/stop) + STFT of those frames.
The uncached items are checked against the cached ones. Also measured in the same run: cache build
time (1 thread and the default pool), where a cached item's time goes (reading the
crops vs computing magnitudes) and where an uncached one's goes (decode, STFT, the rest), and items/s
with waveform-domain augmentations (pitch, stretch, compression at p = 0.5).
"""
from __future__ import annotations

import argparse
import copy
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from ftlib import audio
from ftlib.audio import Spectrogram, SpectrogramConfig
from ftlib.data import synth
from ftlib.data.cache import HalfSpectrogram, SpectrogramCache
from ftlib.data.voxaug import VoxAugConfig, VoxAugDataset


def rate(make, count: int, warmup: int = 3) -> float:
    """Items per CPU second of ``make(i)`` over ``count`` items (after ``warmup`` items)."""
    for i in range(warmup):
        make(i)
    start = time.process_time()
    for i in range(count):
        make(i)
    return count / (time.process_time() - start)


class Decoder:
    """Stands in for the cache: ``get(path)`` returns a :class:`LazyFile` of ``files[path]`` whose slices
    decode audio and compute the STFT on every call. ``seconds`` accumulates decoding and STFT time."""

    def __init__(self, config: SpectrogramConfig, files: dict[Path, Path], crop_only: bool):
        self.spec, self.frame_spec = Spectrogram(config), Spectrogram(config.replace(center=False))
        self.files, self.crop_only = files, crop_only
        self.samples = {path: sf.info(str(path)).frames for path in files.values()}  # known from a scan
        self.seconds = {"decode": 0.0, "stft": 0.0}

    def timed(self, what: str, fn, *args):
        start = time.process_time()
        result = fn(*args)
        self.seconds[what] += time.process_time() - start
        return result

    def get(self, path: Path) -> LazyFile:
        return LazyFile(self, self.files[path])


class LazyFile:
    """``[C, F + 1, T]`` complex STFT of a file, computed when sliced as ``[:, bins, first:stop]``.

    Decodes the whole file, or (``crop_only``) only the samples of those frames, reflect-padded at
    the file's ends as the centred STFT pads them. ``torch.stft`` returns frames as the contiguous
    axis: the STFT time includes the copy to the ``[C, F, T]`` layout of the items.
    """

    def __init__(self, decoder: Decoder, path: Path):
        self.decoder, self.path, self.samples = decoder, path, decoder.samples[path]
        self.shape = (2, decoder.spec.n_fft // 2 + 1, decoder.spec.num_frames(self.samples))

    def __getitem__(self, key) -> np.ndarray:
        _, bins, frames = key
        d = self.decoder
        if not d.crop_only:
            wave = d.timed("decode", audio.load, self.path)
            return d.timed("stft", lambda: d.spec.stft(torch.from_numpy(wave))[:, bins, frames].contiguous()).numpy()
        low = frames.start * d.spec.hop_length - d.spec.n_fft // 2
        high = (frames.stop - 1) * d.spec.hop_length + d.spec.n_fft // 2 + 1
        read = (max(low, 0), min(high, self.samples))
        wave = d.timed("decode", lambda: sf.read(str(self.path), start=read[0], stop=read[1], dtype="float32",
                                                 always_2d=True)[0].T)
        wave = np.pad(wave, ((0, 0), (read[0] - low, high - read[1])), mode="reflect")
        return d.timed("stft", lambda: d.frame_spec.stft(torch.from_numpy(wave))[:, bins].contiguous()).numpy()


def crop_reads(cache: SpectrogramCache, paths: list[Path], cropsize: int, count: int) -> float:
    """CPU seconds per item spent only reading two random cache crops (float16 ones: decoded into a buffer)."""
    rng, entries = np.random.default_rng(1), [cache.get(p) for p in paths]
    buffer = np.empty((entries[0].shape[0], entries[0].shape[1] - 1, cropsize), np.complex64)
    start = time.process_time()
    for _ in range(count):
        for _ in range(2):
            entry = entries[rng.integers(len(entries))]
            first = int(rng.integers(0, entry.shape[-1] - cropsize + 1))
            crop = entry[:, :-1, first:first + cropsize]
            if isinstance(crop, HalfSpectrogram):
                crop.decode(buffer)
            else:
                np.add.reduce(np.asarray(crop).view(np.float32), axis=None)
    return (time.process_time() - start) / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=200, help="items timed per cached measurement")
    parser.add_argument("--stems", type=int, default=4, help="instrumental and vocal stems each")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds per stem (>= 24 for cropsize 1024)")
    args = parser.parse_args()
    torch.set_num_threads(1)

    config = synth.SynthConfig(num_instrumentals=args.stems, num_vocals=args.stems, num_valid=1,
                               duration=args.duration, valid_duration=1.0)
    started = time.perf_counter()
    root = synth.generate(synth.dataset_dir(config), config)
    print(f"dataset: {root} ({2 * args.stems} stems x {args.duration:.0f} s, "
          f"ready in {time.perf_counter() - started:.1f} s)")
    wavs = sorted(root.glob("instrumentals/*.wav")) + sorted(root.glob("vocals/*.wav"))
    spec_config = SpectrogramConfig()

    with tempfile.TemporaryDirectory() as tmp:
        flacs = {p: audio.save(Path(tmp, "flac", p.parent.name, p.name).with_suffix(".flac"), audio.load(p))
                 for p in wavs}  # 24-bit FLAC, as datasets are usually shipped
        caches, builds = {}, []
        for dtype, workers in (("complex64", 1), ("complex64", None), ("float16", None)):
            cache = SpectrogramCache(Path(tmp) / f"{dtype}-{workers}", spec_config, workers=workers, dtype=dtype)
            start = time.perf_counter()
            cache.build(wavs, desc=f"build {dtype}, {cache.workers} thread(s)")
            builds.append(f"{dtype} with {cache.workers} thread(s) {time.perf_counter() - start:.2f} s")
            caches[dtype] = cache
        print("cache build: " + ", ".join(builds))

        slow = max(5, args.items // 10)
        for cropsize in (256, 1024):
            cfg = VoxAugConfig(cropsize=cropsize, items_per_epoch=10**6)
            data = {dtype: VoxAugDataset(root, cache, cfg) for dtype, cache in caches.items()}
            cached = {dtype: rate(lambda i: ds[(0, i)], args.items) for dtype, ds in data.items()}
            augmented = VoxAugDataset(root, caches["complex64"], cfg.replace(
                mix_domain="waveform", pitch_prob=0.5, stretch_prob=0.5, compress_prob=0.5))
            print(f"\ncropsize {cropsize}: cached complex64 {cached['complex64']:.1f} items/s, float16 "
                  f"{cached['float16']:.1f} items/s; with pitch/stretch/compression at p=0.5 "
                  f"{rate(lambda i: augmented[(0, i)], max(5, slow // 4)):.1f} items/s")
            print(f"  {'without cache':<24}{'items/s':>9}{'complex64 is':>14}{'float16 is':>12}"
                  f"{'decode':>10}{'STFT':>9}{'rest':>9}{'max diff':>10}")
            for fmt in ("wav", "flac"):
                for crop_only, what in ((False, "whole file"), (True, "crop only")):
                    uncached = copy.copy(data["complex64"])
                    files = {p: flacs[p] if fmt == "flac" else p for p in wavs}
                    uncached.cache = Decoder(spec_config, files, crop_only)
                    rate(lambda i: uncached[(0, i)], 3, warmup=0)
                    uncached.cache.seconds = dict.fromkeys(uncached.cache.seconds, 0.0)
                    baseline = rate(lambda i: uncached[(0, i)], slow, warmup=0)
                    per_item = {k: 1e3 * v / slow for k, v in uncached.cache.seconds.items()}
                    rest = 1e3 / baseline - per_item["decode"] - per_item["stft"]
                    diff = max(float((uncached[(0, i)][k] - data["complex64"][(0, i)][k]).abs().max())
                               for i in range(3) for k in ("mixture", "target"))
                    print(f"  {f'{fmt}, decode {what}':<24}{baseline:>9.1f}{cached['complex64'] / baseline:>13.1f}x"
                          f"{cached['float16'] / baseline:>11.1f}x{per_item['decode']:>8.1f}ms"
                          f"{per_item['stft']:>7.1f}ms{rest:>7.1f}ms{diff:>10.1e}")
            for dtype, cache in caches.items():
                read = 1e3 * crop_reads(cache, wavs, cropsize, args.items // 4)
                print(f"  cached {dtype} item: {1e3 / cached[dtype]:.2f} ms = reading the two crops "
                      f"{read:.2f} ms + magnitudes and the rest {1e3 / cached[dtype] - read:.2f} ms")


if __name__ == "__main__":
    main()
