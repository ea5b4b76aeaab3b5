"""Gaussian diffusion around any denoiser: noise schedule, forward noising, training loss, samplers.

The network never owns the schedule: a :class:`Diffusion` holds it and calls a *denoiser*
``denoiser(x_t [B, ...], t [B], condition=None) -> [B, ...]`` that predicts the noise (``objective="eps"``)
or the velocity ``v = sqrt(ab) eps - sqrt(1 - ab) x0`` (``"v"``), where ``ab = alpha_bar[t]``.

Timesteps are ``t = 0 .. T-1``; ``x_t = sqrt(ab[t]) x0 + sqrt(1 - ab[t]) eps`` and data live in about
[-1, 1] (predicted ``x0`` is clamped to ``[-clip, clip]`` while sampling). Samplers: DDPM ancestral
sampling over all T steps, and DDIM over an evenly spaced subset of ``steps`` timesteps with noise
scale ``eta`` (0: deterministic given the starting noise; 1: DDPM's variance on the shorter chain).
Sampling draws its noise from a ``torch.Generator`` only, so a seed fixes the result.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ftlib.config import Config
from ftlib.errors import ConfigError

Denoiser = Callable[..., torch.Tensor]  # (x_t, t, condition=None) -> eps or v prediction
SCHEDULES = ("linear", "cosine")
OBJECTIVES = ("eps", "v")
SAMPLERS = ("ddpm", "ddim")


@dataclasses.dataclass
class DiffusionConfig(Config):
    """Args:
        timesteps: T, the length of the noising chain.
        schedule: "linear" (betas from ``beta_start`` to ``beta_end``, scaled by 1000 / T as in
            Improved DDPM so shorter chains end as noisy) or "cosine" (Nichol & Dhariwal 2021).
        beta_start, beta_end: the linear schedule's first and last beta at T = 1000.
        cosine_offset: the cosine schedule's small offset s.
        objective: what the denoiser predicts: "eps" (the noise) or "v" (velocity).
        sampler: default sampler, "ddim" or "ddpm".
        sampling_steps: default number of DDIM steps (DDPM always runs all T).
        eta: default DDIM noise scale (0 deterministic, 1 ancestral).
        clip: clamp predicted x0 to [-clip, clip] while sampling (0: never).
    """

    timesteps: int = 1000
    schedule: str = "cosine"
    beta_start: float = 1e-4
    beta_end: float = 0.02
    cosine_offset: float = 0.008
    objective: str = "eps"
    sampler: str = "ddim"
    sampling_steps: int = 50
    eta: float = 0.0
    clip: float = 1.0

    PRESETS = {"tiny": dict(timesteps=50, sampling_steps=5)}

    def validate(self) -> None:
        self.require(self.timesteps >= 2, f"timesteps must be >= 2, got {self.timesteps}")
        self.require(self.schedule in SCHEDULES, f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        self.require(self.objective in OBJECTIVES, f"objective must be one of {OBJECTIVES}, got {self.objective!r}")
        self.require(self.sampler in SAMPLERS, f"sampler must be one of {SAMPLERS}, got {self.sampler!r}")
        self.require(0 < self.beta_start < self.beta_end < 1, "need 0 < beta_start < beta_end < 1")
        self.require(1 <= self.sampling_steps <= self.timesteps, "sampling_steps must be in [1, timesteps]")
        self.require(self.eta >= 0 and self.clip >= 0 and self.cosine_offset >= 0, "eta, clip, cosine_offset >= 0")


def betas(config: DiffusionConfig) -> torch.Tensor:
    """The float64 noise schedule ``[T]`` (each beta in (0, 0.999])."""
    steps = config.timesteps
    if config.schedule == "linear":
        scale = 1000 / steps
        out = torch.linspace(scale * config.beta_start, scale * config.beta_end, steps, dtype=torch.float64)
    else:
        s = config.cosine_offset
        grid = torch.linspace(0, 1, steps + 1, dtype=torch.float64)
        alpha_bar = torch.cos((grid + s) / (1 + s) * math.pi / 2) ** 2
        out = 1 - alpha_bar[1:] / alpha_bar[:-1]
    return out.clamp(max=0.999)


def _at(values: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``values[t]`` shaped ``[B, 1, ...]`` to broadcast against ``like``, in its dtype (``values`` is
    already on ``like``'s device, see :meth:`Diffusion.table`)."""
    return values[t.to(like.device)].to(like.dtype).view(-1, *[1] * (like.ndim - 1))


def denoiser_device(denoiser: Denoiser, condition: torch.Tensor | None = None) -> torch.device:
    """Where a denoiser runs: a module's parameters' device, else the condition's, else the CPU."""
    params = denoiser.parameters() if isinstance(denoiser, nn.Module) else iter(())
    first = next(params, None)
    if first is not None:
        return first.device
    return condition.device if condition is not None else torch.device("cpu")


class Diffusion:
    """The schedule and the maths of one diffusion process (see module docstring); a plain object,
    so checkpoints hold the denoiser only and the schedule comes from the config.

    Also a training loss for :func:`ftlib.train.fit`: ``diffusion(model, batch)`` on ``batch["x0"]``
    (and ``batch["condition"]`` if present).
    """

    def __init__(self, config: DiffusionConfig | None = None, **overrides: Any):
        self.config = cfg = config or DiffusionConfig.preset("default", **overrides)
        self.betas = betas(cfg)
        self.alpha_bar = torch.cumprod(1 - self.betas, 0)
        self.alpha_bar_prev = torch.cat([self.alpha_bar.new_ones(1), self.alpha_bar[:-1]])
        self._tables: dict[tuple[str, torch.device], torch.Tensor] = {}

    def table(self, name: str, device: torch.device) -> torch.Tensor:
        """A float32 copy of the float64 schedule ``name`` ("sqrt_ab" or "sqrt_1m_ab") on ``device``,
        made once (MPS has no float64, and a copy per call would wait on the device each time)."""
        key = (name, torch.device(device))
        if key not in self._tables:
            values = self.alpha_bar.sqrt() if name == "sqrt_ab" else (1 - self.alpha_bar).sqrt()
            self._tables[key] = values.float().to(device)
        return self._tables[key]

    def _at(self, name: str, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return _at(self.table(name, like.device), t, like)

    @property
    def timesteps(self) -> int:
        return self.config.timesteps

    # --------------------------------------------------------------------- forward process

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """``x_t = sqrt(ab[t]) x0 + sqrt(1 - ab[t]) noise`` for ``x0, noise [B, ...]`` and ``t [B]``."""
        return self._at("sqrt_ab", t, x0) * x0 + self._at("sqrt_1m_ab", t, x0) * noise

    def x0_from_eps(self, x_t: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        return (x_t - self._at("sqrt_1m_ab", t, x_t) * eps) / self._at("sqrt_ab", t, x_t)

    def eps_from_x0(self, x_t: torch.Tensor, t: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        return (x_t - self._at("sqrt_ab", t, x_t) * x0) / self._at("sqrt_1m_ab", t, x_t)

    def v_from(self, x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """The velocity ``sqrt(ab) eps - sqrt(1 - ab) x0``."""
        return self._at("sqrt_ab", t, x0) * eps - self._at("sqrt_1m_ab", t, x0) * x0

    def x0_from_v(self, x_t: torch.Tensor, t: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return self._at("sqrt_ab", t, x_t) * x_t - self._at("sqrt_1m_ab", t, x_t) * v

    def eps_from_v(self, x_t: torch.Tensor, t: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return self._at("sqrt_1m_ab", t, x_t) * x_t + self._at("sqrt_ab", t, x_t) * v

    def predict(self, output: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor, clip: float | None = None):
        """A denoiser ``output`` (eps or v) -> ``(x0, eps)``; x0 clamped to ``[-clip, clip]`` (default
        ``config.clip``; 0: no clamp) and eps made consistent with it."""
        output = output.to(x_t.dtype)
        if self.config.objective == "eps":
            x0, eps = self.x0_from_eps(x_t, t, output), output
        else:
            x0, eps = self.x0_from_v(x_t, t, output), self.eps_from_v(x_t, t, output)
        clip = self.config.clip if clip is None else clip
        if clip:
            x0 = x0.clamp(-clip, clip)
            eps = self.eps_from_x0(x_t, t, x0)
        return x0, eps

    # ----------------------------------------------------------------------------- training

    def training_loss(self, denoiser: Denoiser, x0: torch.Tensor, condition: torch.Tensor | None = None):
        """MSE between the denoiser's output and its target (eps or v) at uniformly drawn timesteps
        (torch's global generator, which the training engine seeds and checkpoints).
        Returns ``(loss, {"x0_mse": ...})``: the error of the implied x0 (clamped as when sampling), a
        clearer progress measure."""
        t = torch.randint(0, self.timesteps, (x0.shape[0],), device=x0.device)
        noise = torch.randn_like(x0)
        x_t = self.q_sample(x0, t, noise)
        target = noise if self.config.objective == "eps" else self.v_from(x0, t, noise)
        output = denoiser(x_t, t, condition=condition).float()
        x0_hat, _ = self.predict(output.detach(), x_t.float(), t)
        return F.mse_loss(output, target.float()), {"x0_mse": F.mse_loss(x0_hat, x0.float()).detach()}

    def __call__(self, model: Denoiser, batch: dict[str, torch.Tensor]):
        """Training loss on ``batch["x0"]`` (and optional ``batch["condition"]``): ``(loss, metrics)``."""
        return self.training_loss(model, batch["x0"], batch.get("condition"))

    # ----------------------------------------------------------------------------- sampling

    def sample_steps(self, sampler: str, steps: int | None = None) -> list[int]:
        """Descending timesteps a sampler visits: all T for DDPM, ``steps`` evenly spaced ones for DDIM."""
        if sampler not in SAMPLERS:
            raise ConfigError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
        if sampler == "ddpm":
            return list(range(self.timesteps - 1, -1, -1))
        steps = self.config.sampling_steps if steps is None else steps
        if not 1 <= steps <= self.timesteps:
            raise ConfigError(f"DDIM steps must be in [1, {self.timesteps}], got {steps}")
        grid = torch.linspace(self.timesteps - 1, 0, steps, dtype=torch.float64).round().long()
        return list(dict.fromkeys(grid.tolist()))

    def ddpm_step(self, x_t: torch.Tensor, t: int, x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Ancestral step: a draw from the posterior ``q(x_{t-1} | x_t, x0)`` (its mean at t = 0)."""
        beta, ab, ab_prev = (float(v[t]) for v in (self.betas, self.alpha_bar, self.alpha_bar_prev))
        mean = (math.sqrt(ab_prev) * beta * x0 + math.sqrt(1 - beta) * (1 - ab_prev) * x_t) / (1 - ab)
        return mean + math.sqrt(beta * (1 - ab_prev) / (1 - ab)) * noise if t > 0 else mean

    def ddim_step(self, t: int, t_prev: int, x0: torch.Tensor, eps: torch.Tensor, eta: float,
                  noise: torch.Tensor) -> torch.Tensor:
        """DDIM step from ``t`` to ``t_prev`` (-1: the clean end)."""
        ab = float(self.alpha_bar[t])
        ab_prev = float(self.alpha_bar[t_prev]) if t_prev >= 0 else 1.0
        sigma = eta * math.sqrt(max(0.0, (1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev)))
        out = math.sqrt(ab_prev) * x0 + math.sqrt(max(0.0, 1 - ab_prev - sigma**2)) * eps
        return out + sigma * noise if sigma > 0 else out

    @torch.no_grad()
    def sample(self, denoiser: Denoiser, shape: tuple[int, ...] | torch.Size, condition: torch.Tensor | None = None,
               sampler: str | None = None, steps: int | None = None, eta: float | None = None,
               generator: torch.Generator | None = None, device: torch.device | str | None = None,
               trajectory: bool = False):
        """Draw ``x0 [shape]`` by denoising pure noise on ``device`` (default: the denoiser's; the
        ``condition`` is moved there); noise comes from ``generator`` (CPU) only, so a seed draws
        the same noise on every device.

        ``sampler`` "ddpm" (all T steps) or "ddim" (``steps`` steps, noise scale ``eta``); defaults
        from the config. With ``trajectory`` returns ``(x0, [{"t", "x_t", "x0"}, ...])``: the state
        before every step and its predicted x0, on the CPU.
        """
        cfg = self.config
        sampler, eta = sampler or cfg.sampler, cfg.eta if eta is None else eta
        device = torch.device(device) if device is not None else denoiser_device(denoiser, condition)
        condition = condition.to(device) if condition is not None else None

        def noise() -> torch.Tensor:
            return torch.randn(tuple(shape), generator=generator).to(device)

        timesteps = self.sample_steps(sampler, steps)
        x, states = noise(), []
        for i, t in enumerate(timesteps):
            tt = torch.full((shape[0],), t, dtype=torch.long, device=device)
            x0, eps = self.predict(denoiser(x, tt, condition=condition).float(), x, tt)
            if trajectory:
                states.append({"t": t, "x_t": x.cpu(), "x0": x0.cpu()})
            if sampler == "ddpm":
                x = self.ddpm_step(x, t, x0, noise() if t > 0 else None)
            else:
                t_prev = timesteps[i + 1] if i + 1 < len(timesteps) else -1
                x = self.ddim_step(t, t_prev, x0, eps, eta, noise() if eta > 0 and t_prev >= 0 else None)
        return (x, states) if trajectory else x


def denoiser_config(config: Config, condition_channels: int = 0) -> Config:
    """A frame transformer config made a denoiser: timestep embedding, unbounded output and
    ``condition_channels`` conditioning channels (e.g. ``in_channels`` for the mixture)."""
    fields = {f.name for f in dataclasses.fields(config)}
    if not {"time_embedding", "condition_channels", "output"} <= fields:
        raise ConfigError(f"{type(config).__name__} has no timestep/conditioning fields; "
                          "use a frame_transformer config")
    return config.replace(time_embedding=True, condition_channels=condition_channels, output="linear")
