"""Where ftlib keeps generated data, caches and runs (all overridable by environment variables)."""
from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """Root of generated data and spectrogram caches: ``$FTLIB_CACHE`` or ``~/.cache/ftlib``."""
    root = Path(os.environ.get("FTLIB_CACHE", Path.home() / ".cache" / "ftlib"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def runs_dir() -> Path:
    """Root of run folders: ``$FTLIB_RUNS``, else the nearest ``runs/`` holding a README upwards of
    the working directory (so notebooks executed from ``notebooks/`` land in the repository's runs/),
    else ``./runs``."""
    if "FTLIB_RUNS" in os.environ:
        return Path(os.environ["FTLIB_RUNS"])
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "runs" / "README.md").is_file():
            return folder / "runs"
    return here / "runs"
