"""The development split of docs/results/real-music.md, from a corpus built by the realistic-corpus
scripts (``OUT/train/{instrumentals,vocals}/*.wav``, file names starting with the source or voice).

    python bench/real_music_split.py /data/realdata /data/rd

Holds out one instrumental per source game and nine voices, links every other stem into
``DST/{instrumentals,vocals}/`` and mixes the held-out stems into eight validation songs
``DST/valid/<song>/{mixture,vocals,instrumental}.wav``: the vocals scaled to 2 dB below the
instrumental's RMS, plus or minus 3 dB (seeded), trimmed to the shorter stem, the three files
scaled together when the mixture would clip.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import soundfile as sf

HELD_OUT_INSTRUMENTALS = ("wesnoth__vengeful", "wesnoth__main_menu", "nexuiz__ninesix", "nexuiz__brokenlight",
                          "hyperrogue__hr3_caves", "singularity__media_threat", "openmsx__relax_song",
                          "blupi__music008")
HELD_OUT_VOICES = ("vox06", "vox07", "vox08", "vox09", "vox10", "vox18", "vox24", "vox28", "vox30")


def held_out(path: Path, prefixes: tuple[str, ...]) -> bool:
    return any(path.stem.startswith(p) for p in prefixes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("corpus", type=Path, help="the corpus folder (holds train/instrumentals and train/vocals)")
    parser.add_argument("out", type=Path, help="the dataset folder to write")
    parser.add_argument("--seed", type=int, default=0, help="seeds the vocal levels (default: %(default)s)")
    args = parser.parse_args()
    stems = {kind: sorted((args.corpus / "train" / kind).glob("*.wav")) for kind in ("instrumentals", "vocals")}
    for kind, prefixes in (("instrumentals", HELD_OUT_INSTRUMENTALS), ("vocals", HELD_OUT_VOICES)):
        if not stems[kind]:
            raise SystemExit(f"{args.corpus / 'train' / kind}: no .wav files; build the corpus first")
        (args.out / kind).mkdir(parents=True, exist_ok=True)
        for path in stems[kind]:
            link = args.out / kind / path.name
            if not held_out(path, prefixes) and not link.exists():
                os.symlink(path.resolve(), link)
    voices = [p for p in stems["vocals"] if held_out(p, HELD_OUT_VOICES)]
    rng = np.random.default_rng(args.seed)
    for k, name in enumerate(HELD_OUT_INSTRUMENTALS):
        instrumental, rate = sf.read(args.corpus / "train" / "instrumentals" / f"{name}.wav", dtype="float32")
        vocals, _ = sf.read(voices[k], dtype="float32")
        n = min(len(instrumental), len(vocals))
        instrumental, vocals = instrumental[:n], vocals[:n]
        level_db = -2 + rng.uniform(-3, 3)
        gain = 10 ** (level_db / 20) * np.sqrt((instrumental ** 2).mean() / ((vocals ** 2).mean() + 1e-12))
        vocals = vocals * gain
        mixture = instrumental + vocals
        peak = np.abs(mixture).max()
        if peak > 0.99:
            instrumental, vocals, mixture = (x / peak * 0.99 for x in (instrumental, vocals, mixture))
        song = args.out / "valid" / f"{k:02d}_{name}+{voices[k].stem.split('__')[0]}"
        song.mkdir(parents=True, exist_ok=True)
        for stem, wave in (("mixture", mixture), ("vocals", vocals), ("instrumental", instrumental)):
            sf.write(song / f"{stem}.wav", wave, rate, subtype="FLOAT")
        print(f"{song.name}: {n / rate:.1f} s, vocals {level_db:+.1f} dB")


if __name__ == "__main__":
    main()
