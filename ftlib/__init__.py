"""ftlib: frame transformers for music source separation and spectrogram generation.

Tensor layout used throughout: ``[B, C, F, T]`` = batch, audio channels (or feature maps),
frequency bins, frames (time columns). A *frame* is one column ``[C, F]``.
"""
import os

# Busy-waiting OpenMP threads make CPU step times jump when anything else runs on the machine.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from ftlib.errors import FtlibError  # noqa: E402

__all__ = ["FtlibError"]
__version__ = "0.1.0"
