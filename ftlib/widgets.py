"""Interactive panels (ipywidgets) on the figures of :mod:`ftlib.plots`.

Each panel is a row of controls, a status line and the figure of one ``ftlib.plots`` function,
redrawn whenever a control changes. ``panel.figure`` is the current matplotlib Figure and
``panel.status`` the status text, so a script or a headless run (papermill) saves or shows the same
figure statically; nothing ever waits for input. The figure reaches the front end as a PNG image
widget, so it lives in widget state only: notebooks display and save their static figures outside
the panels.

    display(MaskExplorer({"song": wave}, {"model": model}))
"""
from __future__ import annotations

import html
import io
import json
from collections.abc import Sequence

import ipywidgets
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

from ftlib import evaluate, plots
from ftlib.audio import Spectrogram
from ftlib.separation import separate_with_mask
from ftlib.train import TrainConfig
from ftlib.train import curriculum as curricula

__all__ = ["Panel", "CurveComparer", "SchedulePreviewer", "MaskExplorer", "ABPlayer"]


class Panel:
    """Controls above a status line and a figure; subclasses implement :meth:`draw`.

    ``redraws`` counts the draws; ``widget`` is the ipywidgets box the notebook displays.
    """

    dpi = 80

    def __init__(self, controls: Sequence[ipywidgets.Widget], extra: Sequence[ipywidgets.Widget] = ()):
        self.controls = list(controls)
        self.label = ipywidgets.HTML()
        self.image = ipywidgets.Image(format="png")
        self.label.add_class("ftlib-status")
        self.image.add_class("ftlib-figure")
        self.widget = ipywidgets.VBox([ipywidgets.HBox(self.controls), *extra, self.label, self.image])
        self.figure: Figure | None = None
        self.status = ""
        self.redraws = 0
        for control in self.controls:
            control.observe(self._changed, names="value")
        self.update()

    def draw(self) -> tuple[Figure, str]:
        """The figure and status text for the current control values."""
        raise NotImplementedError

    def _changed(self, change) -> None:
        self.update()

    def update(self) -> None:
        """Redraw the figure and the status line."""
        figure, self.status = self.draw()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=self.dpi, bbox_inches="tight")
        plt.close(figure)  # shown through the image widget, never as a stray inline figure
        self.figure = figure
        self.image.value = buffer.getvalue()
        self.label.value = html.escape(self.status)
        self.redraws += 1

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)


# ------------------------------------------------------------------------------- training runs

class CurveComparer(Panel):
    """Loss and learning rate of several runs (:func:`ftlib.plots.compare_training_curves`).

    ``logs``: run label -> ``metrics.jsonl`` records. Controls: the runs shown, the step range, a
    log-scale loss axis.
    """

    def __init__(self, logs: dict[str, Sequence[dict]]):
        if not logs:
            raise ValueError("CurveComparer needs at least one training log")
        self.logs = logs
        last = max([r.get("step", 0) for records in logs.values() for r in records] or [0])
        self.runs = ipywidgets.SelectMultiple(options=list(logs), value=tuple(logs), description="runs",
                                              rows=min(6, len(logs)))
        self.steps = ipywidgets.IntRangeSlider(min=0, max=max(1, last), value=(0, max(1, last)), description="steps")
        self.log_scale = ipywidgets.Checkbox(value=True, description="log loss")
        super().__init__([self.runs, self.steps, self.log_scale])

    def draw(self) -> tuple[Figure, str]:
        lo, hi = self.steps.value
        shown = {k: self.logs[k] for k in self.runs.value}
        fig = plots.compare_training_curves(shown, (lo, hi), self.log_scale.value)
        finals = []
        for label, records in shown.items():
            losses = [r["loss"] for r in records if "loss" in r and lo <= r.get("step", 0) <= hi]
            finals.append(f"{label}: {losses[-1]:.4g}" if losses else f"{label}: no loss in range")
        return fig, f"steps {lo}-{hi} · last loss " + ("; ".join(finals) or "(no run selected)")


class SchedulePreviewer(Panel):
    """The learning rate of a :class:`ftlib.train.TrainConfig` per step beside a crop-size curriculum
    (:func:`ftlib.plots.schedule_preview`).

    ``curriculum``: stages ``{"step", "cropsize", "batch_size"[, "grad_accum"]}``, edited as JSON.
    """

    def __init__(self, config: TrainConfig | None = None, curriculum: Sequence[dict] = ()):
        self.config = config or TrainConfig()
        c = self.config
        self.lr = ipywidgets.FloatLogSlider(value=c.lr, base=10, min=-6, max=-1, description="lr")
        self.steps = ipywidgets.BoundedIntText(value=c.steps, min=1, max=10_000_000, description="steps")
        self.warmup = ipywidgets.IntSlider(value=c.warmup_steps, min=0, max=max(c.steps, c.warmup_steps),
                                           description="warmup")
        self.power = ipywidgets.FloatSlider(value=c.decay_power, min=0.1, max=4.0, step=0.1, description="power")
        self.floor = ipywidgets.FloatSlider(value=c.min_lr_ratio, min=0.0, max=1.0, step=0.01, description="floor")
        self.stages = ipywidgets.Textarea(value=json.dumps(list(curriculum)), description="curriculum",
                                          layout=ipywidgets.Layout(width="40em"))
        self.steps.observe(self._steps_changed, names="value")
        super().__init__([self.lr, self.steps, self.warmup, self.power, self.floor], extra=[self.stages])
        self.stages.observe(self._changed, names="value")

    def _steps_changed(self, change) -> None:
        self.warmup.max = max(change["new"], self.warmup.value)

    def draw(self) -> tuple[Figure, str]:
        config = self.config.replace(lr=self.lr.value, steps=self.steps.value, warmup_steps=self.warmup.value,
                                     decay_power=self.power.value, min_lr_ratio=self.floor.value)
        lrs = [config.lr_at(step) for step in range(config.steps)]
        try:
            parsed = curricula.parse(json.loads(self.stages.value or "[]"))
            stages = [{"step": s.start, "cropsize": s.cropsize, "batch_size": s.batch_size, "grad_accum": s.grad_accum}
                      for s in parsed]
            note = f"{len(stages)} curriculum stages" if stages else "no curriculum"
        except (ValueError, KeyError, TypeError) as exc:
            stages, note = [], f"curriculum not understood: {exc}"
        peak = int(np.argmax(lrs))
        fig = plots.schedule_preview(lrs, stages)
        return fig, f"peak lr {lrs[peak]:.3g} at step {peak}, last {lrs[-1]:.3g} · {note}"


# ------------------------------------------------------------------------------ separations

class MaskExplorer(Panel):
    """Mixture, mask and vocal estimate of a model on a song over a time range
    (:func:`ftlib.plots.mask_comparison`).

    ``songs``: name -> mixture ``[C, S]``; ``models``: name -> separation model; ``references``:
    name -> true vocals ``[C, S]`` (optional). Masks are computed once per (song, model).
    """

    def __init__(self, songs: dict[str, np.ndarray], models: dict[str, nn.Module],
                 references: dict[str, np.ndarray] | None = None, cropsize: int = 256, padding: int = 32,
                 sample_rate: int = 44100):
        if not songs or not models:
            raise ValueError("MaskExplorer needs at least one song and one model")
        self.songs, self.models, self.references = songs, models, references or {}
        self.cropsize, self.padding, self.sample_rate = cropsize, padding, sample_rate
        self._cache: dict[tuple[str, str], dict[str, np.ndarray]] = {}
        seconds = max(w.shape[-1] for w in songs.values()) / sample_rate
        self.song = ipywidgets.Dropdown(options=list(songs), description="song")
        self.model = ipywidgets.Dropdown(options=list(models), description="model")
        self.time = ipywidgets.FloatRangeSlider(min=0.0, max=seconds, value=(0.0, seconds), step=0.1,
                                                description="seconds")
        super().__init__([self.song, self.model, self.time])

    def separation(self, song: str, model: str) -> dict[str, np.ndarray]:
        """``{"magnitude", "mask", "instrumental", "vocals"}`` of ``model`` on ``song`` (cached)."""
        if (song, model) not in self._cache:
            self._cache[song, model] = separate_with_mask(self.models[model], self.songs[song], self.cropsize,
                                                        self.padding)
        return self._cache[song, model]

    def draw(self) -> tuple[Figure, str]:
        result = self.separation(self.song.value, self.model.value)
        hop = self.models[self.model.value].config.num_bins
        frames = result["magnitude"].shape[-1]
        # frames whose centres (frame k at k * hop / sample_rate) lie in the time range
        start, stop = (int(t * self.sample_rate / hop) for t in self.time.value)
        start = min(start, frames - 1)
        stop = min(frames, max(stop + 1, start + 1))
        reference = self.references.get(self.song.value)
        if reference is not None:
            spec = Spectrogram(n_fft=2 * hop, hop_length=hop)
            reference = Spectrogram.to_model(spec.stft(torch.from_numpy(reference)).abs()).numpy()[..., start:stop]
        mask = result["mask"][..., start:stop]
        fig = plots.mask_comparison(result["magnitude"][..., start:stop], {self.model.value: mask}, reference,
                                    self.sample_rate, hop, start_seconds=start * hop / self.sample_rate)
        seconds = self.time.value
        return fig, (f"{self.song.value} · {self.model.value} · {seconds[0]:.1f}-{seconds[1]:.1f} s · "
                     f"mean instrumental mask {float(mask.mean()):.3f}")


def _wav_bytes(wave: np.ndarray, sample_rate: int) -> bytes:
    import soundfile

    buffer = io.BytesIO()
    soundfile.write(buffer, np.asarray(wave, np.float32).T, sample_rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


class ABPlayer(Panel):
    """Listen to one of several estimates of the same stem, with its SDR against the reference and
    its spectrogram (:func:`ftlib.plots.spectrograms`).

    ``candidates``: name -> audio ``[C, S]``; ``reference``: the true stem ``[C, S]`` (optional).
    """

    def __init__(self, candidates: dict[str, np.ndarray], reference: np.ndarray | None = None,
                 sample_rate: int = 44100):
        if len(candidates) < 1:
            raise ValueError("ABPlayer needs at least one candidate")
        self.candidates, self.sample_rate = candidates, sample_rate
        self.sdr = {k: evaluate.sdr(reference, w) for k, w in candidates.items()} if reference is not None else {}
        spec = Spectrogram()
        self._magnitudes = {k: spec.stft(torch.from_numpy(np.asarray(w, np.float32))).abs().numpy()
                            for k, w in candidates.items()}
        self.choice = ipywidgets.ToggleButtons(options=list(candidates), description="play")
        self.player = ipywidgets.Audio(format="wav", autoplay=False, loop=False)
        super().__init__([self.choice], extra=[self.player])

    def title(self, name: str) -> str:
        return f"{name} · SDR {self.sdr[name]:.2f} dB" if name in self.sdr else name

    def draw(self) -> tuple[Figure, str]:
        name = self.choice.value
        self.player.value = _wav_bytes(self.candidates[name], self.sample_rate)
        fig = plots.spectrograms({self.title(name): self._magnitudes[name]}, self.sample_rate)
        others = [self.title(k) for k in self.candidates if k != name]
        return fig, self.title(name) + (f" (vs {'; '.join(others)})" if others else "")
