"""Errors raised for bad input: each names the file or value at fault and how to fix it."""


class FtlibError(Exception):
    """Base class of every error ftlib raises on purpose."""


class AudioError(FtlibError):
    """An audio file is missing, unreadable, empty, silent, too short or not finite."""


class ConfigError(FtlibError, ValueError):
    """A configuration value is invalid or unknown."""


class DataError(FtlibError):
    """A dataset folder is missing or holds no usable audio."""


class CheckpointError(FtlibError):
    """A checkpoint is missing, corrupt or belongs to another architecture."""


class SeparationError(FtlibError):
    """A model produced an unusable mask (NaN or infinite values) while separating."""
