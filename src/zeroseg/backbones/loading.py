"""Load the parts of a Stable Diffusion family model that segmentation needs.

Only the UNet, the VAE, the text encoder(s) with their tokenizer(s) and the noise schedule are loaded; never the
safety checker, the image encoder or the VAE decoder's consumers. Works for SD 1.x and 2.x (one text encoder) and
the SDXL family (SDXL, SSD-1B, Segmind-Vega, SDXL-Turbo: two text encoders and added time conditioning), from a
hub id, a local folder in diffusers layout, or a single ``.safetensors``/``.ckpt`` file.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from zeroseg.backbones.presets import resolve_model
from zeroseg.errors import ConfigError, WeightsNotFoundError, one_line

logger = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda", "mps")


@dataclass(eq=False)
class Backbone:
    """A loaded diffusion model, ready to encode images and run one UNet step.

    Attributes:
        model: the model as resolved (hub id, local folder or checkpoint file).
        family: ``"sd"`` (one text encoder) or ``"sdxl"`` (two text encoders, added time ids).
        unet: the ``UNet2DConditionModel`` in ``dtype`` on ``device``.
        vae: the ``AutoencoderKL``, kept in float32 (the SDXL VAE overflows in float16 at 1024 px).
        tokenizers / text_encoders: one (SD) or two (SDXL family) of each.
        alphas_cumprod: the training noise schedule, float64 ``(T,)``.
        device / dtype: where and in which precision the UNet runs.
    """

    model: str
    family: str
    unet: Any
    vae: Any
    tokenizers: list[Any]
    text_encoders: list[Any]
    alphas_cumprod: torch.Tensor
    device: torch.device
    dtype: torch.dtype
    revision: str | None = None
    _conditioning: dict[Any, Any] = field(default_factory=dict, repr=False)

    @property
    def vae_scale_factor(self) -> int:
        """Pixels per latent cell (8 for every released SD model), read from the VAE config."""
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def latent_divisor(self) -> int:
        """Image sides must be multiples of this so that every UNet resolution is a whole number."""
        num_down = sum(1 for block in self.unet.down_blocks if getattr(block, "downsamplers", None))
        return self.vae_scale_factor * 2**num_down

    def identity(self) -> dict[str, Any]:
        """What identifies these weights, for cache keys: the hub id and revision, or a local path and mtime."""
        path = Path(self.model)
        ident: dict[str, Any] = {"model": self.model, "revision": self.revision, "family": self.family}
        if path.exists():
            ident["model"] = str(path.resolve())
            ident["mtime"] = max((p.stat().st_mtime for p in path.rglob("*") if p.is_file()), default=0.0)
        return ident


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Turn ``"auto"`` into the best available device and check that an explicit one exists."""
    if isinstance(device, torch.device):
        return device
    name = str(device).lower()
    base = name.split(":")[0]
    if base not in DEVICES:
        raise ConfigError(f"`device` must be one of {', '.join(DEVICES)} (got {device!r})")
    if base == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if base == "cuda" and not torch.cuda.is_available():
        raise ConfigError("`device` is 'cuda' but no CUDA GPU is available (use --device cpu or auto)")
    if base == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError("`device` is 'mps' but Apple MPS is not available (use --device cpu or auto)")
    return torch.device(name)


def default_dtype(device: torch.device) -> torch.dtype:
    """float16 on CUDA (as the official code runs), float32 elsewhere (CPU has no fast float16 matmul)."""
    return torch.float16 if device.type == "cuda" else torch.float32


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """Parse ``"auto" | "float32" | "float16" | "bfloat16"`` (or a torch dtype)."""
    if dtype is None or dtype == "auto":
        return default_dtype(device)
    if isinstance(dtype, torch.dtype):
        return dtype
    table = {
        "float32": torch.float32,
        "fp32": torch.float32,
        "float16": torch.float16,
        "fp16": torch.float16,
        "bfloat16": torch.bfloat16,
        "bf16": torch.bfloat16,
    }
    if dtype not in table:
        raise ConfigError(f"`dtype` must be one of auto, float32, float16, bfloat16 (got {dtype!r})")
    return table[dtype]


def load_backbone(
    model: str,
    *,
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype | None = None,
    revision: str | None = None,
    variant: str | None = None,
    config: str | None = None,
    local_files_only: bool | None = None,
) -> Backbone:
    """Load a Stable Diffusion family model for segmentation.

    Args:
        model: a short name (``ssd1b``, ``sd14``, see ``MODEL_ALIASES``), a hub id, a local folder in diffusers
            layout, or a single ``.safetensors``/``.ckpt`` checkpoint file.
        device: ``auto``, ``cpu``, ``cuda`` or ``mps``. The library default is CPU (as diffusers').
        dtype: precision of the UNet and text encoders; ``None``/``"auto"`` = float16 on CUDA, float32 elsewhere.
            The VAE always runs in float32.
        revision / variant: passed to ``from_pretrained`` (e.g. ``variant="fp16"`` for smaller downloads).
        config: for a single checkpoint file, a local diffusers folder (or hub id) whose configs describe it.
        local_files_only: never touch the network (defaults to the ``HF_HUB_OFFLINE`` setting).

    Raises:
        WeightsNotFoundError: the weights are neither on disk nor downloadable; the message names the model,
            what is missing and how to pass a local path.
    """
    resolved = resolve_model(model)
    dev = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, dev)
    if local_files_only is None:
        local_files_only = os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")
    path = Path(resolved).expanduser()
    looks_local = path.exists() or resolved.startswith((".", "/", "~")) or path.suffix in (".safetensors", ".ckpt")
    if looks_local and not path.exists():
        raise WeightsNotFoundError(f"model `{model}`: no such file or folder {str(path)!r}")
    try:
        with _quiet_loading():
            if path.is_file():
                parts = _load_single_file(path, config=config, dtype=torch_dtype, local_files_only=local_files_only)
            else:
                source = str(path) if path.is_dir() else resolved
                parts = _load_pretrained(
                    source,
                    dtype=torch_dtype,
                    revision=revision,
                    variant=variant,
                    local_files_only=local_files_only,
                )
    except WeightsNotFoundError:
        raise
    except (OSError, ValueError) as exc:
        raise WeightsNotFoundError(_missing_message(model, resolved, exc, is_local=path.exists())) from None
    unet, vae, tokenizers, text_encoders, alphas = parts
    unet.to(dev).eval().requires_grad_(False)
    vae.to(dev).eval().requires_grad_(False)
    for encoder in text_encoders:
        encoder.to(dev).eval().requires_grad_(False)
    family = "sdxl" if len(text_encoders) == 2 else "sd"
    logger.info("loaded %s (%s family) on %s in %s", resolved, family, dev, torch_dtype)
    return Backbone(
        model=str(path) if path.exists() else resolved,
        family=family,
        unet=unet,
        vae=vae,
        tokenizers=tokenizers,
        text_encoders=text_encoders,
        alphas_cumprod=alphas,
        device=dev,
        dtype=torch_dtype,
        revision=revision,
    )


@contextlib.contextmanager
def _quiet_loading() -> Iterator[None]:
    """Silence diffusers' and transformers' per-file progress bars, notices and warnings while loading."""
    import diffusers.utils.logging as diffusers_logging
    import transformers.utils.logging as transformers_logging

    hub_logger = logging.getLogger("huggingface_hub")
    hub_level = hub_logger.level
    hub_logger.setLevel(logging.ERROR)
    saved = (
        diffusers_logging.get_verbosity(),
        transformers_logging.get_verbosity(),
        diffusers_logging.is_progress_bar_enabled(),
        transformers_logging.is_progress_bar_enabled(),
    )
    diffusers_logging.set_verbosity_error()
    transformers_logging.set_verbosity_error()
    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        hub_logger.setLevel(hub_level)
        diffusers_logging.set_verbosity(saved[0])
        transformers_logging.set_verbosity(saved[1])
        if saved[2]:
            diffusers_logging.enable_progress_bar()
        if saved[3]:
            transformers_logging.enable_progress_bar()


def _load_pretrained(
    source: str, *, dtype: torch.dtype, revision: str | None, variant: str | None, local_files_only: bool
) -> tuple:
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    common: dict[str, Any] = {"revision": revision, "local_files_only": local_files_only}
    weights = {**common, "variant": variant}
    unet = UNet2DConditionModel.from_pretrained(source, subfolder="unet", torch_dtype=dtype, **weights)
    vae = AutoencoderKL.from_pretrained(source, subfolder="vae", torch_dtype=torch.float32, **weights)
    tokenizers = [CLIPTokenizer.from_pretrained(source, subfolder="tokenizer", **common)]
    text_encoders = [CLIPTextModel.from_pretrained(source, subfolder="text_encoder", dtype=dtype, **weights)]
    if getattr(unet.config, "addition_embed_type", None) == "text_time":
        tokenizers.append(CLIPTokenizer.from_pretrained(source, subfolder="tokenizer_2", **common))
        text_encoders.append(
            CLIPTextModelWithProjection.from_pretrained(source, subfolder="text_encoder_2", dtype=dtype, **weights)
        )
    scheduler_config = DDPMScheduler.load_config(source, subfolder="scheduler", **common)
    alphas = _alphas_cumprod(scheduler_config)
    return unet, vae, tokenizers, text_encoders, alphas


def _load_single_file(path: Path, *, config: str | None, dtype: torch.dtype, local_files_only: bool) -> tuple:
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    errors = []
    for pipeline_class in (StableDiffusionXLPipeline, StableDiffusionPipeline):
        try:
            pipe = pipeline_class.from_single_file(
                str(path),
                config=config,
                torch_dtype=dtype,
                local_files_only=local_files_only,
                load_safety_checker=False,
            )
        except (OSError, ValueError, KeyError, RuntimeError, TypeError) as exc:
            errors.append(exc)
            continue
        tokenizers = [pipe.tokenizer] + ([pipe.tokenizer_2] if getattr(pipe, "tokenizer_2", None) else [])
        encoders = [pipe.text_encoder] + ([pipe.text_encoder_2] if getattr(pipe, "text_encoder_2", None) else [])
        if len(encoders) == 2 and getattr(pipe.unet.config, "addition_embed_type", None) != "text_time":
            continue
        alphas = _alphas_cumprod(dict(pipe.scheduler.config))
        return pipe.unet, pipe.vae.to(torch.float32), tokenizers, encoders, alphas
    hint = "" if config else " (pass `config=` / --model-config with a local diffusers folder of the same architecture)"
    raise WeightsNotFoundError(f"model `{path}`: cannot read this checkpoint file{hint}: {one_line(errors[-1])}")


def _alphas_cumprod(config: dict[str, Any]) -> torch.Tensor:
    """The cumulative product of (1 - beta) from a scheduler config, as every DDPM-family scheduler computes it."""
    from diffusers import DDPMScheduler

    keys = ("num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "trained_betas")
    scheduler = DDPMScheduler(**{k: config[k] for k in keys if config.get(k) is not None})
    return scheduler.alphas_cumprod.to(torch.float64)


def _missing_message(model: str, resolved: str, exc: BaseException, *, is_local: bool) -> str:
    if is_local:
        return (
            f"model `{model}`: the folder is not a complete diffusers model (need unet/, vae/, text_encoder/, "
            f"tokenizer/ and scheduler/): {one_line(exc)}"
        )
    return (
        f"model `{model}` ({resolved}): weights not found in the local Hugging Face cache and could not be "
        f"downloaded ({one_line(exc)}); on a machine without network, download the model elsewhere and "
        f"pass its folder with --model /path/to/model"
    )
