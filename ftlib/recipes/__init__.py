"""Recipes: one module per experiment, the only path from a config to a trained model.

=====================  ==================================================================
separation             supervised separation on voxaug mixtures (optionally finetuned from a
                       checkpoint, optionally against a discriminator)
pretraining            masked-frame pretraining on unlabeled music
diffusion_separation   the instrumental denoised by a diffusion model, conditioned on the mixture
diffusion_idea         unconditional diffusion over fixed-size log-mel images
mel_expansion          a folded transformer expanding a squeezed log-mel back to full length
=====================  ==================================================================

Every recipe module has the same face: ``Config`` (nested sections, presets ``tiny``, ``cpu``,
``gpu``), ``build(config) -> Parts``, ``train(config, run_dir) -> model`` (resuming the run folder)
and ``evaluate(model, config, run_dir) -> dict``. ``ftlib train RECIPE --preset NAME`` runs one.

    from ftlib import recipes
    config = recipes.separation.Config.preset("cpu", data={"root": "songs/"})
    model = recipes.run(config, "runs/my-run")      # train, evaluate, metrics.json
"""
from __future__ import annotations

import time
from pathlib import Path
from types import ModuleType
from typing import Any

from torch import nn

from ftlib import atomic, checkpoint
from ftlib.config import Config
from ftlib.errors import ConfigError
from ftlib.recipes import diffusion_idea, diffusion_separation, mel_expansion, pretraining, separation
from ftlib.recipes.common import Parts, read_config
from ftlib.train.engine import latest_checkpoint, process_state

RECIPES: dict[str, ModuleType] = {module.NAME: module for module in (
    separation, pretraining, diffusion_separation, diffusion_idea, mel_expansion)}
METRICS_FILE = "metrics.json"


def get(name: str) -> ModuleType:
    """The recipe module called ``name``."""
    if name not in RECIPES:
        raise ConfigError(f"unknown recipe {name!r}; recipes: {', '.join(RECIPES)}")
    return RECIPES[name]


def recipe_of(config: Config) -> ModuleType:
    """The recipe module whose ``Config`` ``config`` is."""
    for module in RECIPES.values():
        if type(config) is module.Config:
            return module
    raise ConfigError(f"{type(config).__name__} is not the Config of a recipe")


def presets(name: str) -> list[str]:
    """The preset names of recipe ``name`` ("default" first)."""
    return ["default", *get(name).Config.PRESETS]


def config_from_run(run_dir: str | Path) -> Config:
    """The recipe config a run folder was trained with (its ``config.json``)."""
    name, values = read_config(run_dir)
    return get(name).Config.from_dict(values)


def run(config: Config, run_dir: str | Path, stop_after: int | None = None, num_processes: int = 1) -> nn.Module:
    """Train ``config``'s recipe into ``run_dir`` (resuming it), evaluate the model and write
    ``metrics.json`` (the evaluation and the training seconds); returns the trained model.

    The model evaluated and returned is the one the run leaves for separating: ``checkpoints/best``
    when the recipe validates, otherwise the last step's weights. ``num_processes > 1`` trains in
    that many processes through Accelerate's notebook launcher (one per GPU; gloo on CPU) and reads
    the model back from the run folder. ``stop_after`` ends training early (resumable), skips the
    evaluation and returns the last step's weights.
    """
    module, run_dir = recipe_of(config), Path(run_dir)
    started = time.time()
    model = None
    if num_processes > 1:
        from accelerate import notebook_launcher

        notebook_launcher(module.train, (config, str(run_dir), stop_after), num_processes=num_processes)
    else:
        model = module.train(config, run_dir, stop_after)
    seconds = time.time() - started
    best = run_dir / "checkpoints" / "best"
    left = best if stop_after is None and best.is_dir() else None  # what separating will use
    if model is None or left is not None:
        device = next(model.parameters()).device if model is not None else "cpu"
        model = checkpoint.load(left or latest_checkpoint(run_dir)).to(device)
    if stop_after is not None or not process_state().is_main_process:
        return model
    metrics: dict[str, Any] = {"recipe": module.NAME, "train_seconds": seconds, **module.evaluate(model, config, run_dir)}
    atomic.write_json(run_dir / METRICS_FILE, metrics)
    return model


__all__ = ["RECIPES", "Parts", "config_from_run", "diffusion_idea", "diffusion_separation", "get", "mel_expansion",
           "presets", "pretraining", "recipe_of", "run", "separation"]
