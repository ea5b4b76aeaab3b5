"""Seeded toy songs for learning vocal/instrumental separation.

Instrumentals (drums, bass, chords) and voice-like vocals are synthesised with vectorised numpy;
every stem is float32 ``[2, samples]``. :func:`generate` writes the folder layout of a user dataset.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
from scipy import signal
from scipy.ndimage import uniform_filter1d

from ftlib.audio import save
from ftlib.config import Config
from ftlib.paths import cache_dir

TABLE = 2048  # wavetable length: one period
MAJOR = np.array([0, 2, 4, 5, 7, 9, 11])
MINOR = np.array([0, 2, 3, 5, 7, 8, 10])
PENTATONIC = np.array([0, 2, 4, 7, 9])
SONG_KEYS = ("mixture", "vocals", "instrumental")
PROGRESSIONS = {False: [[0, 4, 5, 3], [0, 5, 3, 4], [5, 3, 0, 4], [0, 3, 4, 3], [0, 5, 1, 4]],
                True: [[0, 5, 2, 6], [0, 3, 4, 0], [0, 6, 5, 6], [0, 3, 6, 2]]}  # scale degrees
VOWELS = np.array([[730, 1090, 2440], [530, 1840, 2480], [270, 2290, 3010],  # a e i
                   [570, 840, 2410], [300, 870, 2240]], dtype=float)  # o u: F1-F3 (Hz, male)


@dataclasses.dataclass
class SynthConfig(Config):
    """Size and seed of a synthetic dataset (see :func:`generate`)."""

    sample_rate: int = 44100
    num_instrumentals: int = 12  # training instrumental stems
    num_vocals: int = 12  # training vocal stems
    num_valid: int = 4  # aligned validation songs
    duration: float = 24.0  # seconds per training stem
    valid_duration: float = 20.0  # seconds per validation song
    vocal_gain_db: tuple[float, float] = (-3.0, 3.0)  # vocal level relative to instrumental RMS in valid mixes
    seed: int = 0

    PRESETS = {"tiny": dict(num_instrumentals=2, num_vocals=2, num_valid=1, duration=3.0, valid_duration=3.0)}

    def validate(self) -> None:
        self.require(self.sample_rate >= 8000, f"sample_rate must be >= 8000, got {self.sample_rate}")
        for name in ("num_instrumentals", "num_vocals", "num_valid"):
            self.require(getattr(self, name) >= 1, f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("duration", "valid_duration"):
            self.require(getattr(self, name) >= 0.5, f"{name} must be >= 0.5 seconds, got {getattr(self, name)}")
        gains = self.vocal_gain_db
        self.require(len(gains) == 2 and gains[0] <= gains[1], f"vocal_gain_db must be (low, high), got {gains}")
        self.require(self.seed >= 0, f"seed must be >= 0, got {self.seed}")


# --- oscillators and helpers

def _hz(midi):
    return 440.0 * 2.0 ** ((np.asarray(midi, dtype=float) - 69.0) / 12.0)


def _table(amps: np.ndarray) -> np.ndarray:
    """One period of ``sum_k amps[k-1] sin(2 pi k x)``: float32 ``[TABLE + 2]`` (wrapped for interpolation)."""
    spec = np.zeros(TABLE // 2 + 1, dtype=complex)
    spec[1:len(amps) + 1] = -0.5j * TABLE * np.asarray(amps)
    wave = np.fft.irfft(spec, TABLE)
    return np.concatenate([wave, wave[:2]]).astype(np.float32)


def _harmonics(weights, f0: float, limit: float, sr: int) -> np.ndarray:
    """Amplitudes ``weights(k, f0)`` of the harmonics k of ``f0`` below ``min(limit, 0.45 sr)`` (no aliasing)."""
    k = np.arange(1, max(1, int(min(limit, 0.45 * sr) // f0)) + 1)
    return weights(k, f0)


def _osc(table: np.ndarray, phase: np.ndarray) -> np.ndarray:
    """Read ``table`` at ``phase`` (cycles, 0 <= phase < 1e6) with linear interpolation: ``[S]`` -> float32 ``[S]``."""
    pos = phase * TABLE
    i = pos.astype(np.int32)
    frac = (pos - i).astype(np.float32)
    i &= TABLE - 1  # wrap to one period (TABLE is a power of two)
    low = table[i]
    return low + frac * (table[i + 1] - low)


def _smooth(x: np.ndarray, size: int, passes: int = 1) -> np.ndarray:
    """Moving average of ``size`` samples along the first axis, ``passes`` times (2: S-shaped ramps)."""
    for _ in range(passes):
        x = uniform_filter1d(x, max(1, size), axis=0, mode="nearest")
    return x


def _place(buf: np.ndarray, clip: np.ndarray, start: int, gain: float = 1.0) -> None:
    """Add ``gain * clip`` into ``buf`` (both ``[..., S]``) at sample ``start``, cropping at both ends."""
    a, b = max(start, 0), min(start + clip.shape[-1], buf.shape[-1])
    if a < b:
        buf[..., a:b] += gain * clip[..., a - start:b - start]


def _filter_frames(x: np.ndarray, gains) -> np.ndarray:
    """Filter ``x`` ``[S]`` with a time-varying response: ``gains(freqs [F], centres [T])`` -> ``[F, T]``.

    STFT (periodic Hann, 1024 points, hop 256, frame t centred on sample 256 (t - 1)), multiply, overlap-add.
    """
    size, hop, n = 1024, 256, len(x)
    padded = np.pad(x, (size - hop, size - hop + (-n) % hop))  # every sample lies in four frames
    window = signal.windows.hann(size, sym=False).astype(np.float32)
    frames = np.lib.stride_tricks.sliding_window_view(padded, size)[::hop] * window
    spec = np.fft.rfft(frames, axis=1) * gains(np.fft.rfftfreq(size), np.arange(len(frames)) * hop - hop).T
    frames = np.fft.irfft(spec, size, axis=1).astype(np.float32) * window
    out = np.zeros_like(padded)
    for r in range(size // hop):  # frames r, r + 4, ... tile the signal without overlapping
        block = frames[r::size // hop].reshape(-1)
        out[r * hop:r * hop + len(block)] += block
    return out[size - hop:size - hop + n] / 1.5  # sum of squared windows at hop size / 4


def _pan(mono: np.ndarray, pan: float) -> np.ndarray:
    """Constant-power pan (-1 left .. 1 right): ``[S]`` -> ``[2, S]``."""
    angle = (pan + 1.0) * np.pi / 4
    return np.stack([np.cos(angle) * mono, np.sin(angle) * mono])


def _peak(audio: np.ndarray, peak: float = 0.5) -> np.ndarray:
    """Scale ``audio`` to the given peak, as float32."""
    top = np.abs(audio).max()
    return (audio * (peak / top if top > 0 else 1.0)).astype(np.float32)


# --- tonal instruments

def _recipes(rng: np.random.Generator) -> dict:
    """Chord timbres: name -> ([(weights(k, f0), limit Hz, decay s or None)], attack s, release s, detune cents)."""
    tilt, pad_tilt, pad_cut = rng.uniform(1.0, 2.2), rng.uniform(1.3, 2.0), rng.uniform(800, 2500)
    drawbars = dict(zip([1, 2, 3, 4, 6, 8], np.concatenate([[1.0], rng.uniform(0.0, 0.8, 5)])))
    return {
        "keys": ([(lambda k, f: k ** -tilt, 8000, rng.uniform(0.4, 1.2))], 0.004, 0.08, 0.0),
        "pluck": ([(lambda k, f: k ** -0.8, 9000, rng.uniform(0.06, 0.2)),  # bright part dies first
                   (lambda k, f: k ** -2.5, 3000, rng.uniform(0.5, 1.2))], 0.002, 0.05, 0.0),
        "pad": ([(lambda k, f: k ** -pad_tilt / (1 + (k * f / pad_cut) ** 2), 6000, None)],
                rng.uniform(0.15, 0.5), 0.3, rng.uniform(4.0, 9.0)),
        "organ": ([(lambda k, f: np.array([drawbars.get(int(h), 0.0) for h in k]), 8000, None)], 0.01, 0.04, 0.0),
    }


def _note(recipe, midi: float, n: int, sr: int) -> np.ndarray:
    """One note of constant pitch: float32 ``[n]``."""
    layers, attack, release, detune = recipe
    t = np.arange(n) / sr
    out = np.zeros(n, dtype=np.float32)
    for weights, limit, decay in layers:
        for cents in ((-detune, detune) if detune else (0.0,)):
            f0 = _hz(midi) * 2.0 ** (cents / 1200)
            wave = _osc(_table(_harmonics(weights, f0, limit, sr)), t * f0)
            out += wave if decay is None else wave * np.exp(-t / decay).astype(np.float32)
    env = np.minimum(t / attack, 1.0) * np.clip((n / sr - t) / release, 0.0, 1.0)
    return out * env.astype(np.float32)


def _render(notes, recipe, n: int, sr: int) -> np.ndarray:
    """Sum ``notes`` [(start s, length s, midi, velocity)] played with ``recipe``: float32 ``[n]``."""
    buf = np.zeros(n, dtype=np.float32)
    for start, length, midi, velocity in notes:
        s = round(start * sr)
        if s < n:
            _place(buf, _note(recipe, midi, min(round(length * sr), n - s), sr), s, velocity)
    return buf


def _chord(base: int, scale: np.ndarray, degree: int, size: int = 3) -> np.ndarray:
    """MIDI notes of the diatonic chord on ``degree`` (stacked thirds) above ``base``."""
    idx = degree + 2 * np.arange(size)
    return base + scale[idx % 7] + 12 * (idx // 7)


def _chord_part(rng, name: str, degrees, base: int, scale, beat: float, always: bool) -> list:
    """Notes of one chord instrument: sustained chords, rhythmic stabs or arpeggios, with muted bars."""
    notes, bar = [], 4 * beat
    size, octave = int(rng.integers(3, 5)), 12 * int(rng.integers(0, 2))
    stabs = [[0, 2], [0, 1, 2, 3], [0, 1.5, 3], [0.5, 1.5, 2.5, 3.5], [0, 0.75, 2, 2.75]][rng.integers(5)]
    step = rng.choice([0.5, 0.25])
    for b, degree in enumerate(degrees):
        if not always and rng.random() < 0.12:
            continue
        tones, t0 = _chord(base + octave * (name == "pluck"), scale, degree, size), b * bar
        if name in ("pad", "organ"):
            notes += [(t0, bar, m, 0.8) for m in tones]
        elif name == "keys":
            gaps = np.diff(np.append(stabs, 4.0))
            notes += [(t0 + s * beat, 0.9 * g * beat, m, rng.uniform(0.6, 1.0))
                      for s, g in zip(stabs, gaps) for m in tones]
        else:
            order = np.concatenate([tones, tones[-2:0:-1]])
            notes += [(t0 + i * step * beat, step * beat, order[i % len(order)], rng.uniform(0.6, 1.0))
                      for i in range(int(4 / step))]
    return notes


def _bass(rng, degrees, base: int, scale, beat: float, n: int, sr: int) -> np.ndarray:
    """Low-passed saw or square bass on the chord roots: float32 ``[n]``."""
    square, cut = rng.random() < 0.5, rng.uniform(250, 900)
    weights = lambda k, f: k ** -1.0 * (1 - square * (k % 2 == 0)) / np.sqrt(1 + (k * f / cut) ** 4)  # noqa: E731
    recipe = ([(weights, 5000, rng.uniform(0.4, 2.0))], 0.005, 0.03, 0.0)
    rhythm = np.array([[0, 4], [0, 2, 4, 6], [0, 3, 4, 7], [0, 1, 2, 3, 4, 5, 6, 7], [0, 3, 6]][rng.integers(5)])
    lengths = np.diff(np.append(rhythm, 8)) * 0.9 * beat / 2
    notes = []
    for b, degree in enumerate(degrees):
        root = base + scale[degree]
        jumps = rng.choice([0, 0, 0, 7, 12], len(rhythm))  # mostly roots, some fifths and octaves
        notes += [(b * 4 * beat + s * beat / 2, g, root + j, rng.uniform(0.7, 1.0))
                  for s, g, j in zip(rhythm, lengths, jumps)]
    return _render(notes, recipe, n, sr)


# --- drums

def _drums(rng, bars: int, bar: float, n: int, sr: int) -> np.ndarray:
    """Kick, snare and hi-hats on a 16-step grid with random fills: float32 ``[2, n]``."""
    t = np.arange(int(0.5 * sr)) / sr
    f_start, f_end = rng.uniform(120, 200), rng.uniform(40, 60)
    sweep = f_end + (f_start - f_end) * np.exp(-t / rng.uniform(0.02, 0.05))
    kick = np.sin(2 * np.pi * np.cumsum(sweep) / sr) * np.exp(-t / rng.uniform(0.15, 0.4))
    band = signal.butter(2, [1000, min(7000, 0.4 * sr)], "bandpass", fs=sr, output="sos")
    snare = (0.5 * np.sin(2 * np.pi * rng.uniform(160, 240) * t) * np.exp(-t / 0.06)
             + 2.0 * signal.sosfilt(band, rng.standard_normal(len(t))) * np.exp(-t / rng.uniform(0.05, 0.12)))
    high = signal.butter(4, min(7000, 0.4 * sr), "highpass", fs=sr, output="sos")
    hat = signal.sosfilt(high, rng.standard_normal(len(t))) * np.exp(-t / rng.uniform(0.015, 0.05))
    kicks = [[0, 8], [0, 6, 8], [0, 8, 10], [0, 3, 8, 11], [0, 4, 8, 12]][rng.integers(5)]
    snares = [[4, 12], [8], [4, 12, 15]][rng.integers(3)]
    grid = np.arange(bars * 16)
    pattern = {  # 16th-note steps of each drum, with occasional extra hits
        "kick": np.isin(grid % 16, kicks) | (rng.random(grid.size) < 0.04),
        "snare": np.isin(grid % 16, snares) | (rng.random(grid.size) < 0.03),
        "hat": grid % int(rng.choice([1, 2])) == 0,
    }
    out = np.zeros((2, n), dtype=np.float32)
    for name, sample, level, pan in [("kick", kick, 1.0, 0.0), ("snare", snare, 0.7, rng.uniform(-0.15, 0.15)),
                                     ("hat", hat, 0.3, rng.uniform(-0.5, 0.5))]:
        clip = _pan(sample / np.abs(sample).max() * level, pan)
        accent = np.where(grid % 4 == 0, 1.0, 0.7) if name == "hat" else np.ones(grid.size)
        for step in np.flatnonzero(pattern[name]):
            _place(out, clip, round(step * bar / 16 * sr), accent[step] * rng.uniform(0.75, 1.0))
    return out


def make_instrumental(rng: np.random.Generator, duration: float, sample_rate: int = 44100) -> np.ndarray:
    """A random song backing (drums, bass, 1-3 chord instruments): float32 ``[2, round(duration * sample_rate)]``."""
    sr, n = sample_rate, round(duration * sample_rate)
    beat = 60.0 / rng.uniform(80, 160)
    bars = int(np.ceil(duration / (4 * beat)))
    minor, root = bool(rng.random() < 0.4), int(rng.integers(0, 12))
    scale, progression = (MINOR if minor else MAJOR), PROGRESSIONS[minor][rng.integers(len(PROGRESSIONS[minor]))]
    per_chord = int(rng.integers(1, 3))  # bars per chord
    degrees = [progression[(b // per_chord) % len(progression)] for b in range(bars)]
    parts = []
    if rng.random() < 0.85:
        parts.append((_drums(rng, bars, 4 * beat, n, sr), rng.uniform(0.8, 1.2)))
    if rng.random() < 0.8:
        bass = _bass(rng, degrees, 28 + (root - 4) % 12, scale, beat, n, sr)  # MIDI 28-39 roots
        parts.append((_pan(bass, rng.uniform(-0.1, 0.1)), rng.uniform(0.6, 1.0)))
    recipes = _recipes(rng)
    names = rng.choice(list(recipes), size=int(rng.integers(1, 4)), replace=False)
    for i, name in enumerate(names):
        notes = _chord_part(rng, name, degrees, 48 + root, scale, beat, always=i == 0)
        parts.append((_pan(_render(notes, recipes[name], n, sr), rng.uniform(-0.6, 0.6)), rng.uniform(0.3, 0.7)))
    mix = np.zeros((2, n), dtype=np.float32)
    for audio, gain in parts:
        rms = np.sqrt(np.mean(audio ** 2))
        if rms > 0:
            mix += audio * (gain / rms)
    return _peak(mix)


# --- vocals

def _melody(rng, duration: float, beat: float, num_pitches: int):
    """Phrases of 3-8 notes separated by rests: note starts and lengths (s), pitch indices, phrases [P, 2] (s)."""
    starts, lengths, pitches, phrases = [], [], [], []
    t, i = min(0.15 * duration, rng.uniform(0.25, 1.0)), int(rng.integers(num_pitches))
    while t < duration:
        begin = t
        for _ in range(int(rng.integers(3, 9))):
            i = int(np.clip(i + rng.choice([-3, -2, -1, -1, 0, 1, 1, 2, 3]), 0, num_pitches - 1))
            starts.append(t)
            lengths.append(beat * rng.choice([0.5, 1, 1, 1.5, 2, 3]))
            pitches.append(i)
            t += lengths[-1]
        phrases.append((begin, t))
        t += np.clip((t - begin) * rng.uniform(0.15, 0.5), 0.25, 2.0)  # rest
    return np.array(starts), np.array(lengths), np.array(pitches), np.array(phrases)


def make_vocal(rng: np.random.Generator, duration: float, sample_rate: int = 44100) -> np.ndarray:
    """A sung melody (vibrato, glides, vowels, consonants, rests): float32 ``[2, round(duration * sample_rate)]``."""
    sr, n = sample_rate, round(duration * sample_rate)
    female = bool(rng.random() < 0.5)
    low = rng.uniform(57, 62) if female else rng.uniform(45, 50)  # lowest MIDI note: 220-294 Hz or 110-147 Hz
    scale = [MAJOR, MINOR, PENTATONIC][rng.integers(3)]
    grid = round(low) + np.concatenate([scale + 12 * octave for octave in range(3)])
    grid = grid[(grid >= low - 0.5) & (grid <= low + 14)]
    starts, lengths, idx, phrases = _melody(rng, duration, 60.0 / rng.uniform(70, 150), len(grid))
    count, pos = len(starts), np.arange(n)
    first = np.round(starts * sr).astype(np.int64)
    note = np.maximum(np.searchsorted(first, pos, side="right") - 1, 0)  # note sounding at each sample
    phrase = np.maximum(np.searchsorted(phrases[:, 0] * sr, pos, side="right") - 1, 0)
    begin, end = phrases[phrase, 0] * sr, phrases[phrase, 1] * sr
    since = (pos - first[note]) / sr

    # pitch: glides between notes, vibrato with a delayed onset, slow drift
    glide = int(sr * rng.uniform(0.03, 0.09))
    midi = _smooth(grid[idx][note].astype(float), glide, passes=2)
    delay = rng.uniform(0.1, 0.4, count) * np.minimum(lengths, 1.0)  # vibrato sets in after part of the note
    depth = rng.uniform(0.2, 0.6, count)[note] * np.clip((since - delay[note]) / 0.15, 0, 1)
    rate = rng.uniform(4.5, 6.5) + 0.3 * np.sin(2 * np.pi * 0.23 * pos / sr + rng.uniform(0, 2 * np.pi))
    midi += _smooth(depth, glide) * np.sin(2 * np.pi * np.cumsum(rate) / sr)
    knots = np.arange(0, n + int(0.15 * sr), int(0.15 * sr))
    midi += 0.08 * np.interp(pos, knots, rng.standard_normal(len(knots)))
    phase = np.cumsum(_hz(midi) / sr)

    # glottal source: harmonics falling ~12 dB/octave, band-limited per phrase
    source, tilt = np.zeros(n, dtype=np.float32), rng.uniform(1.7, 2.3)
    for a, b in np.round(phrases * sr).astype(np.int64):
        if a < n:
            table = _table(_harmonics(lambda k, f: k ** -tilt, _hz(midi[a:min(b, n)].max()), 10000, sr))
            source[a:b] = _osc(table, phase[a:b] - np.floor(phase[a]))

    # loudness: syllable onsets, phrase release, per-note level
    syllable = (rng.random(count) < 0.8) | np.isin(starts, phrases[:, 0])
    floor = np.where(syllable, 0.35, 1.0) * ~np.isin(starts, phrases[:, 0])
    onset = floor[note] + (1 - floor[note]) * np.minimum(since / rng.uniform(0.02, 0.05), 1.0)
    release = np.clip((end - pos) / (rng.uniform(0.06, 0.15) * sr), 0, 1) * (pos >= begin)
    amp = _smooth(onset * release * _smooth(rng.uniform(0.6, 1.0, count)[note], glide), int(0.005 * sr))
    breath = rng.uniform(0.05, 0.15) * rng.standard_normal(n)
    excitation = (amp * (source + breath)).astype(np.float32)

    # vowel formants: per-frame spectral envelope, smoothed between notes
    shift = rng.uniform(1.1, 1.2) if female else rng.uniform(0.95, 1.05)
    formants = VOWELS[rng.integers(0, 5, count)] * shift * rng.uniform(0.95, 1.05, (count, 3))
    peaks = [(1.0, 50 * shift), (rng.uniform(0.4, 0.7), 60 * shift), (rng.uniform(0.2, 0.4), 90 * shift)]

    def envelope(freqs, centres):
        track = _smooth(formants[note[np.clip(centres, 0, n - 1)]], int(0.06 * sr / 256))  # [T, 3] Hz
        hz = freqs[:, None] * sr
        return 0.02 + sum(g / (1 + ((hz - track[:, j]) / w) ** 2) for j, (g, w) in enumerate(peaks))

    voice = _filter_frames(excitation, envelope)

    # consonants: band-passed noise bursts ("s", "t", "k") just before some syllables
    level = np.sqrt(np.mean(voice[amp > 0.5] ** 2)) if (amp > 0.5).any() else 0.0
    bursts = []
    for lo, hi, shortest, longest in [(4000, 9000, 0.05, 0.11), (2000, 6000, 0.01, 0.025), (1200, 3500, 0.015, 0.035)]:
        sos = signal.butter(2, [min(lo, 0.35 * sr), min(hi, 0.45 * sr)], "bandpass", fs=sr, output="sos")
        noise = signal.sosfilt(sos, rng.standard_normal(int(0.12 * sr)))
        bursts.append((noise / noise.std(), shortest, longest))
    for j in np.flatnonzero(syllable & (rng.random(count) < 0.6)):
        noise, shortest, longest = bursts[rng.integers(3)]
        size = int(rng.uniform(shortest, longest) * sr)
        shape = np.sin(np.linspace(0, np.pi, size)) ** 2 if longest > 0.1 else np.exp(-np.linspace(0, 5, size))
        burst = (noise[:size] * shape).astype(np.float32)
        _place(voice, burst, first[j] - int(0.6 * size), level * rng.uniform(0.3, 0.8))
    return _peak(_pan(voice, rng.uniform(-0.1, 0.1)))


# --- songs and datasets

def make_song(rng: np.random.Generator, duration: float, sample_rate: int = 44100,
              vocal_gain_db: tuple[float, float] = (-3.0, 3.0)) -> dict[str, np.ndarray]:
    """Aligned ``mixture``, ``vocals`` and ``instrumental`` (float32 ``[2, S]``); mixture == instrumental + vocals."""
    instrumental = make_instrumental(rng, duration, sample_rate)
    vocals = make_vocal(rng, duration, sample_rate)
    rms = lambda x: np.sqrt(np.mean(np.square(x, dtype=np.float64)))  # noqa: E731
    vocals = vocals * (rms(instrumental) / rms(vocals) * 10 ** (rng.uniform(*vocal_gain_db) / 20))
    gain = min(1.0, 0.95 / np.abs(instrumental + vocals).max())  # same gain on both stems keeps the sum exact
    instrumental, vocals = (instrumental * gain).astype(np.float32), (vocals * gain).astype(np.float32)
    return {"mixture": instrumental + vocals, "vocals": vocals, "instrumental": instrumental}


def _jobs(config: SynthConfig) -> list[tuple[int, int, list[str]]]:
    """(kind, index, relative paths) of every stem (kinds 0, 1) and validation song (kind 2) of ``config``."""
    jobs = [(0, i, [f"instrumentals/inst_{i:03d}.wav"]) for i in range(config.num_instrumentals)]
    jobs += [(1, i, [f"vocals/vocal_{i:03d}.wav"]) for i in range(config.num_vocals)]
    return jobs + [(2, i, [f"valid/song_{i:03d}/{key}.wav" for key in SONG_KEYS]) for i in range(config.num_valid)]


def _make(config: SynthConfig, kind: int, index: int) -> list[np.ndarray]:
    """Audio of one job from its own seed ``[seed, kind, index]``, so the order of generation does not matter."""
    rng, sr = np.random.default_rng([config.seed, kind, index]), config.sample_rate
    if kind == 0:
        return [make_instrumental(rng, config.duration, sr)]
    if kind == 1:
        return [make_vocal(rng, config.duration, sr)]
    song = make_song(rng, config.valid_duration, sr, config.vocal_gain_db)
    return [song[key] for key in SONG_KEYS]


def _recorded(meta: Path) -> dict | None:
    """The config stored in ``meta`` (synth.json) as a dict, or None when missing or unreadable."""
    try:
        return json.loads(meta.read_text())
    except (OSError, ValueError):
        return None


def generate(root: str | Path, config: SynthConfig | None = None, overwrite: bool = False) -> Path:
    """Write a synthetic dataset under ``root`` (instrumentals/, vocals/, valid/song_*/, synth.json) and return it.

    A folder whose synth.json matches ``config`` is reused: only missing files are written. Without
    a match (or with ``overwrite``) everything is regenerated and stale stems of an older config removed.
    """
    config, root = config or SynthConfig(), Path(root)
    meta, jobs = root / "synth.json", _jobs(config)
    reuse = not overwrite and _recorded(meta) == config.to_dict()
    todo = [job for job in jobs if not (reuse and all((root / p).is_file() for p in job[2]))]
    if not todo:
        return root
    if meta.is_file():  # an older synthetic dataset: drop its files that the new layout does not name
        expected = {p for *_, paths in jobs for p in paths}
        for pattern in ("instrumentals/inst_*.wav", "vocals/vocal_*.wav", "valid/song_*/*.wav"):
            for path in root.glob(pattern):
                if path.relative_to(root).as_posix() not in expected:
                    path.unlink()
        for folder in root.glob("valid/song_*"):
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        meta.unlink()
    for kind, index, paths in todo:
        for path, audio in zip(paths, _make(config, kind, index)):
            save(root / path, audio, config.sample_rate)
    config.to_json(meta)  # written last: marks the dataset complete
    return root


def dataset_dir(config: SynthConfig | None = None) -> Path:
    """Cache folder of the dataset of ``config``: ``cache_dir()/synth/<hash of the config>``."""
    digest = hashlib.sha1((config or SynthConfig()).to_json().encode()).hexdigest()[:12]
    return cache_dir() / "synth" / digest
