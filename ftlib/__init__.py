"""ftlib: frame transformers for music source separation and spectrogram generation.

Tensor layout used throughout: ``[B, C, F, T]`` = batch, audio channels (or feature maps),
frequency bins, frames (time columns). A *frame* is one column ``[C, F]``.
"""
from ftlib.errors import FtlibError

__all__ = ["FtlibError"]
__version__ = "0.1.0"
