"""Progressive crop-size curriculum: stages of (start step, cropsize, batch size, accumulation)."""
from __future__ import annotations

from typing import NamedTuple


class Stage(NamedTuple):
    """One curriculum stage; it lasts from ``start`` to the next stage's start."""

    start: int
    cropsize: int
    batch_size: int
    grad_accum: int


def parse(stages) -> tuple[Stage, ...]:
    """Stages from ``(start, cropsize, batch_size[, grad_accum])`` sequences, dicts with the keys
    ``step, cropsize, batch_size[, grad_accum]``, or text like ``"0:256:8, 1000:512:4:2"``.

    Raises ValueError unless the first stage starts at step 0 and starts strictly increase.
    """
    if isinstance(stages, str):
        stages = [part.split(":") for part in stages.replace(",", " ").split()]
    out = []
    for stage in stages:
        if isinstance(stage, dict):
            stage = (stage["step"], stage["cropsize"], stage["batch_size"], stage.get("grad_accum", 1))
        values = tuple(int(v) for v in stage)
        if len(values) not in (3, 4) or min(values[1:]) < 1:
            raise ValueError(f"curriculum stage {stage!r}: need (start_step, cropsize >= 1, batch_size >= 1"
                             f"[, grad_accum >= 1])")
        out.append(Stage(*values) if len(values) == 4 else Stage(*values, 1))
    if out and (out[0].start != 0 or any(a.start >= b.start for a, b in zip(out, out[1:]))):
        raise ValueError(f"curriculum stages must start at step 0 and in increasing order, got "
                         f"{[s.start for s in out]}")
    return tuple(out)


def stage_at(stages: tuple[Stage, ...], step: int) -> int:
    """Index of the stage that optimizer step ``step`` belongs to."""
    return max(i for i, s in enumerate(stages) if s.start <= step)
