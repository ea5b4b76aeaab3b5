"""The training engine: ``fit`` and its parts (schedule, precision, EMA, sampler, curriculum).
Experiments (what to train on what) live in :mod:`ftlib.recipes`."""
from ftlib.train.engine import (TrainConfig, context_length_study, fit, latest_checkpoint, model_device,
                                validation_loss)
from ftlib.train.schedule import warmup_poly

__all__ = ["TrainConfig", "context_length_study", "fit", "latest_checkpoint", "model_device", "validation_loss",
           "warmup_poly"]
