"""Training progress for people: a tqdm bar in terminals and notebooks, or, with the environment
variable ``FTLIB_PROGRESS=lines`` (``ftlib run`` sets it for the notebooks it executes, whose cell
output it streams to the terminal), a plain line every ``FTLIB_PROGRESS_SECONDS`` (default 15)."""
from __future__ import annotations

import os
import sys
import time

from tqdm.auto import tqdm


class Progress:
    """``update(step, loss)`` after every optimizer step; ``close()`` at the end."""

    def __init__(self, total: int, initial: int = 0, desc: str = "training", enabled: bool = True):
        self.total, self.desc, self.enabled = total, desc, enabled
        self.lines = os.environ.get("FTLIB_PROGRESS") == "lines"
        self.every = float(os.environ.get("FTLIB_PROGRESS_SECONDS", "15"))
        self.start_step, self.started = initial, time.time()
        self.printed, self.loss = self.started, None
        self.bar = None if self.lines or not enabled else tqdm(total=total, initial=initial, desc=desc,
                                                               dynamic_ncols=True)

    def update(self, step: int, loss: float | None = None) -> None:
        """Step ``step`` is done; ``loss`` (when just read) is shown with it."""
        self.loss = loss if loss is not None else self.loss
        if self.bar is not None:
            self.bar.update(1)
            if loss is not None:
                self.bar.set_postfix(loss=f"{loss:.5f}")
        elif self.lines and self.enabled and (time.time() - self.printed >= self.every or step == self.total):
            self.printed = time.time()
            rate = (self.printed - self.started) / max(1, step - self.start_step)
            left = (self.total - step) * rate
            loss_text = f", loss {self.loss:.5f}" if self.loss is not None else ""
            print(f"{self.desc}: step {step}/{self.total} ({100 * step / self.total:.0f} %){loss_text}, "
                  f"{rate:.2f} s/step, {left / 60:.1f} min left", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
