"""Training: the engine, schedules, curriculum, EMA, finetuning groups and the recipes."""
from ftlib.train.engine import TrainConfig, context_length_study, evaluate, fit, latest_checkpoint
from ftlib.train.schedule import warmup_poly

__all__ = ["TrainConfig", "context_length_study", "evaluate", "fit", "latest_checkpoint", "warmup_poly"]
