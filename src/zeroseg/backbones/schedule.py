"""The training noise process of a family, which zeroseg uses for one step: x_t from a clean latent and a draw.

Two processes cover every supported model: DDPM's variance-preserving one (SD 1.x/2.x, the SDXL family,
PixArt) with its ``alphas_cumprod``, and rectified flow matching (SD3/SD3.5, FLUX.1), which interpolates
linearly between the latent and the noise. Both index the noise level by a training timestep ``t`` in
``[0, num_steps)``, the number the denoiser is conditioned on.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import torch


class NoiseSchedule(ABC):
    """How a clean latent is noised to a training timestep."""

    @property
    @abstractmethod
    def num_steps(self) -> int:
        """Training timesteps: valid timesteps are ``0 .. num_steps - 1``."""

    @abstractmethod
    def noise(self, latents: torch.Tensor, draw: torch.Tensor, timestep: int) -> torch.Tensor:
        """``latents`` noised to ``timestep`` with the standard normal ``draw`` (same shape)."""

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """The schedule's identity, JSON-serialisable (settings files, cache keys)."""


@dataclass(frozen=True, eq=False)
class DDPMSchedule(NoiseSchedule):
    """DDPM: x_t = sqrt(a_t) x_0 + sqrt(1 - a_t) eps, with ``alphas_cumprod`` float64 ``(T,)`` from training."""

    alphas_cumprod: torch.Tensor

    @property
    def num_steps(self) -> int:
        return int(self.alphas_cumprod.numel())

    def noise(self, latents: torch.Tensor, draw: torch.Tensor, timestep: int) -> torch.Tensor:
        alpha = self.alphas_cumprod[timestep].item()
        return latents * alpha**0.5 + draw * (1.0 - alpha) ** 0.5

    def describe(self) -> dict[str, Any]:
        return {"kind": "ddpm", "num_steps": self.num_steps}


@dataclass(frozen=True)
class FlowMatchSchedule(NoiseSchedule):
    """Rectified flow: x_t = (1 - s) x_0 + s eps with s = t / T, as diffusers' ``FlowMatchEulerDiscreteScheduler``
    trains and samples (the denoiser sees ``t = s * T`` whatever the sampling shift)."""

    num_train_timesteps: int = 1000

    @property
    def num_steps(self) -> int:
        return self.num_train_timesteps

    def sigma(self, timestep: int) -> float:
        """The noise fraction of ``timestep``."""
        return timestep / self.num_train_timesteps

    def noise(self, latents: torch.Tensor, draw: torch.Tensor, timestep: int) -> torch.Tensor:
        sigma = self.sigma(timestep)
        return latents * (1.0 - sigma) + draw * sigma

    def describe(self) -> dict[str, Any]:
        return {"kind": "flow_matching", "num_steps": self.num_steps}


def ddpm_schedule(config: dict[str, Any]) -> DDPMSchedule:
    """The DDPM schedule of a scheduler config, as every DDPM-family diffusers scheduler computes it."""
    from diffusers import DDPMScheduler

    keys = ("num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "trained_betas")
    scheduler = DDPMScheduler(**{k: config[k] for k in keys if config.get(k) is not None})
    return DDPMSchedule(scheduler.alphas_cumprod.to(torch.float64))


def flow_schedule(config: dict[str, Any]) -> FlowMatchSchedule:
    """The flow-matching schedule of a ``FlowMatchEulerDiscreteScheduler`` config."""
    return FlowMatchSchedule(int(config.get("num_train_timesteps", 1000)))
