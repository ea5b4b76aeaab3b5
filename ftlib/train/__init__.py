"""Training: the engine, schedules and the step-indexed sampler."""
from ftlib.train.engine import TrainConfig, evaluate, fit, latest_checkpoint
from ftlib.train.schedule import warmup_poly

__all__ = ["TrainConfig", "evaluate", "fit", "latest_checkpoint", "warmup_poly"]
