"""Data pipeline throughput: voxaug training items/s from the cache against decoding audio + STFT.

    python bench/data.py                      # ~2 minutes on 2 cores (the first run also synthesises stems)
    python bench/data.py --items 100 --stems 2

One process, one thread for torch, realistic STFT settings (n_fft 2048, hop 1024, stereo 44.1 kHz).
Measured in the same run:
  * cache build time with 1 thread and with the default thread pool (fresh cache folders);
  * items/s of ``VoxAugDataset`` reading the memory-mapped cache, at cropsize 256 and 1024;
  * items/s of the same item made without a cache from float WAV and 24-bit FLAC stems: decode both
    stems (``ftlib.audio.load``), crop, STFT, mix; and the kinder baseline that seeks and decodes
    only the crop (``soundfile`` start/stop);
  * items/s with waveform-domain augmentations (pitch, stretch, compression at p = 0.5).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from ftlib import audio
from ftlib.audio import Spectrogram, SpectrogramConfig
from ftlib.data import synth
from ftlib.data.augment import normalise
from ftlib.data.cache import SpectrogramCache
from ftlib.data.voxaug import VoxAugConfig, VoxAugDataset


def rate(make, count: int) -> float:
    """Items per second of ``make(i)`` over ``count`` items (after 3 warm-up items)."""
    for i in range(3):
        make(i)
    start = time.perf_counter()
    for i in range(count):
        make(i)
    return count / (time.perf_counter() - start)


def uncached_item(inst: Path, vocal: Path, cropsize: int, spec: Spectrogram, rng: np.random.Generator,
                  seek: bool) -> dict:
    """A voxaug item without a cache: decode (whole files, or only the crop with ``seek``), STFT, mix."""
    samples = (cropsize - 1) * spec.hop_length
    crops = []
    for path in (inst, vocal):
        if seek:
            start = int(rng.integers(0, sf.info(str(path)).frames - samples + 1))
            wave = sf.read(str(path), start=start, stop=start + samples, dtype="float32", always_2d=True)[0].T
        else:
            wave = audio.load(path)
            start = int(rng.integers(0, wave.shape[-1] - samples + 1))
            wave = wave[:, start:start + samples]
        crops.append(spec.stft(torch.from_numpy(np.ascontiguousarray(wave))).numpy()[:, :-1])
    gain = np.float32(10 ** (rng.uniform(-6, 3) / 20))
    mix = np.abs(crops[0] + gain * crops[1])
    mixture, target = normalise(mix, np.minimum(np.abs(crops[0]), mix))
    return {"mixture": torch.from_numpy(mixture), "target": torch.from_numpy(target)}


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
    wavs = {kind: sorted(root.glob(f"{kind}/*.wav")) for kind in ("instrumentals", "vocals")}
    spec_config = SpectrogramConfig()

    with tempfile.TemporaryDirectory() as tmp:
        flacs = {kind: [audio.save(Path(tmp, "flac", p.name).with_suffix(".flac"), audio.load(p)) for p in paths]
                 for kind, paths in wavs.items()}  # 24-bit FLAC, as datasets are usually shipped
        builds = {}
        for workers in (1, SpectrogramCache(Path(tmp) / "probe").workers):
            cache = SpectrogramCache(Path(tmp) / f"build-{workers}", spec_config, workers=workers)
            start = time.perf_counter()
            cache.build(wavs["instrumentals"] + wavs["vocals"], desc=f"build, {workers} thread(s)")
            builds[workers] = time.perf_counter() - start
        print("cache build: " + ", ".join(f"{w} thread(s) {t:.2f} s" for w, t in builds.items()))

        spec, rng, slow = Spectrogram(spec_config), np.random.default_rng(0), max(5, args.items // 20)
        for cropsize in (256, 1024):
            data = VoxAugDataset(root, cache, VoxAugConfig(cropsize=cropsize, items_per_epoch=10**6))
            cached = rate(lambda i: data[(0, i)], args.items)
            augmented = VoxAugDataset(root, cache, VoxAugConfig(
                cropsize=cropsize, items_per_epoch=10**6, mix_domain="waveform",
                pitch_prob=0.5, stretch_prob=0.5, compress_prob=0.5))
            print(f"\ncropsize {cropsize}: cached {cached:.1f} items/s; "
                  f"with pitch/stretch/compression at p=0.5 {rate(lambda i: augmented[(0, i)], slow):.1f} items/s")
            print(f"  {'without cache':<24}{'items/s':>9}{'cached is':>11}")
            for fmt, stems in (("wav", wavs), ("flac", flacs)):
                for seek, what in ((False, "whole file"), (True, "crop only")):
                    def make(i):
                        inst, vocal = stems["instrumentals"], stems["vocals"]
                        return uncached_item(inst[i % len(inst)], vocal[i % len(vocal)], cropsize, spec, rng, seek)
                    baseline = rate(make, slow)
                    print(f"  {f'{fmt}, decode {what}':<24}{baseline:>9.1f}{cached / baseline:>10.1f}x")


if __name__ == "__main__":
    main()
