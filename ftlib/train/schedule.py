"""Learning-rate schedules as pure functions of the optimizer step."""
from __future__ import annotations


def warmup_poly(step: int, total_steps: int, warmup_steps: int, power: float = 1.0, floor: float = 0.0) -> float:
    """Multiplier of the base learning rate at ``step``.

    Linear warmup from ~0 to 1 over ``warmup_steps``, then polynomial decay ``(1 - p) ** power`` from
    1 to ``floor`` at ``total_steps``; it never goes below ``floor`` (also past ``total_steps``).
    """
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, max(0.0, (step - warmup_steps) / span))
    return floor + (1.0 - floor) * (1.0 - progress) ** power
