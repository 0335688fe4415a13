"""Load the parts of a diffusion model that segmentation needs, from a local folder, the cache or the hub.

Only the components the model's family declares are loaded (UNet or transformer, VAE, the text encoder(s) the
empty prompt needs with their tokenizer(s), the noise schedule); never the safety checker or the image encoder.
The family is detected explicitly from the model's ``model_index.json`` and denoiser config (see
:mod:`zeroseg.backbones.families`). Works from a hub id, a local folder in diffusers layout, or a single
``.safetensors``/``.ckpt`` file.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch

from zeroseg.backbones import hub
from zeroseg.backbones.backbone import Backbone
from zeroseg.backbones.families import (
    FAMILIES,
    BackboneFamily,
    LoadedParts,
    denoiser_folders,
    detect_folder_family,
)
from zeroseg.backbones.presets import resolve_model
from zeroseg.backbones.weights import choose_variants, needed_files
from zeroseg.errors import ConfigError, WeightsNotFoundError, one_line

logger = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda", "mps")

__all__ = ["DEVICES", "Backbone", "default_dtype", "load_backbone", "resolve_device", "resolve_dtype"]


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
    """Load a diffusion model of a registered family for segmentation.

    Args:
        model: a short name (``ssd1b``, ``sd14``, see ``MODEL_ALIASES``), a hub id, a local folder in diffusers
            layout, or a single ``.safetensors``/``.ckpt`` checkpoint file.
        device: ``auto``, ``cpu``, ``cuda`` or ``mps``. The library default is CPU (as diffusers').
        dtype: precision of the denoiser and text encoders; ``None``/``"auto"`` = float16 on CUDA, float32 elsewhere.
            The VAE always runs in float32.
        revision: the hub revision (branch, tag or commit).
        variant: the weight variant to load (``"fp16"``). By default the ``fp16`` variant is used where a
            component has one and ``dtype`` is float16 (it loses nothing then and halves the download), the
            full weights otherwise; an explicit variant always wins.
        config: for a single checkpoint file, a local diffusers folder (or hub id) whose configs describe it.
        local_files_only: never touch the network (defaults to the ``HF_HUB_OFFLINE`` setting). A hub model in
            the local cache is always loaded from there without a network request.

    Raises:
        WeightsNotFoundError: the weights are neither on disk nor downloadable, or no family recognises the
            model; the message names the model, what is missing and how to pass a local path.
    """
    resolved = resolve_model(model)
    dev = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, dev)
    if local_files_only is None:
        local_files_only = hub.hub_offline()
    path = Path(resolved).expanduser()
    looks_local = path.exists() or resolved.startswith((".", "/", "~")) or path.suffix in (".safetensors", ".ckpt")
    if looks_local and not path.exists():
        raise WeightsNotFoundError(f"model `{model}`: no such file or folder {str(path)!r}")
    if path.is_file():
        with _quiet_loading():
            family, parts, variants = _load_single_file(
                path, config=config, dtype=torch_dtype, local_files_only=local_files_only
            )
    elif path.is_dir():
        family, parts, variants = _load_folder(path, model=model, dtype=torch_dtype, variant=variant)
    else:
        family, parts, variants = _load_hub(
            model, resolved, dtype=torch_dtype, revision=revision, variant=variant, offline=local_files_only
        )
    for module in (parts.denoiser, parts.vae, *parts.text_encoders):
        module.to(dev).eval().requires_grad_(False)
    logger.info("loaded %s (%s family) on %s in %s", resolved, family.name, dev, torch_dtype)
    return Backbone(
        model=str(path) if path.exists() else resolved,
        family=family.name,
        denoiser=parts.denoiser,
        vae=parts.vae,
        tokenizers=parts.tokenizers,
        text_encoders=parts.text_encoders,
        schedule=parts.schedule,
        device=dev,
        dtype=torch_dtype,
        revision=revision,
        variants=variants,
    )


def local_files(folder: Path) -> list[str]:
    """Every file under ``folder`` as a ``/``-separated path relative to it."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def _load_folder(
    folder: Path, *, model: str, dtype: torch.dtype, variant: str | None, explain_errors: bool = True
) -> tuple[BackboneFamily, LoadedParts, dict[str, str | None]]:
    """Detect the family of a diffusers folder and load its components with the chosen weight variants.

    With ``explain_errors`` a component that cannot be read becomes a one-line :class:`WeightsNotFoundError`;
    without, the loader's own error is raised (the cache path then falls back to a download).
    """
    family = detect_folder_family(folder, model=model)
    variants = choose_variants(local_files(folder), family.components, dtype=dtype, variant=variant, model=model)
    try:
        with _quiet_loading():
            return family, family.load(folder, dtype=dtype, variants=variants), variants
    except (OSError, ValueError) as exc:
        if not explain_errors:
            raise
        raise WeightsNotFoundError(
            f"model `{model}`: the folder is not a complete diffusers model (need "
            f"{', '.join(c + '/' for c in family.components)}): {one_line(exc)}"
        ) from None


def _load_hub(
    model: str, repo: str, *, dtype: torch.dtype, revision: str | None, variant: str | None, offline: bool
) -> tuple[BackboneFamily, LoadedParts, dict[str, str | None]]:
    """From the local cache when the model is complete there, else download what the family needs, then load."""
    snapshot = hub.cached_snapshot(repo, revision)
    if snapshot is not None:
        try:
            return _load_folder(snapshot, model=model, dtype=dtype, variant=variant, explain_errors=False)
        except (OSError, ValueError) as exc:
            if offline:
                raise WeightsNotFoundError(_not_cached_message(model, repo, f"incomplete: {one_line(exc)}")) from None
            logger.info("%s is only partly in the local cache; completing the download", repo)
    if offline:
        raise WeightsNotFoundError(_not_cached_message(model, repo, "HF_HUB_OFFLINE is set"))
    hub.check_reachable(model, repo)
    try:
        with _quiet_hub():
            folder = _download(model, repo, dtype=dtype, revision=revision, variant=variant)
    except WeightsNotFoundError:
        raise
    except Exception as exc:
        if hub.is_connection_error(exc):
            raise hub.HubUnreachableError(hub.unreachable_message(model, repo, one_line(exc))) from None
        if isinstance(exc, (OSError, ValueError)):
            raise WeightsNotFoundError(
                f"model `{model}` ({repo}): could not be downloaded from the Hugging Face hub ({one_line(exc)}); "
                f"check the name, or pass a local folder with --model /path/to/model"
            ) from None
        raise
    return _load_folder(folder, model=model, dtype=dtype, variant=variant)


def _download(model: str, repo: str, *, dtype: torch.dtype, revision: str | None, variant: str | None) -> Path:
    """Fetch the configs, detect the family, then fetch only its components with one weight set each."""
    files = hub.repo_files(repo, revision)
    configs = ["model_index.json", *(f"{name}/config.json" for name in denoiser_folders())]
    family = detect_folder_family(hub.download(repo, [n for n in configs if n in files], revision), model=model)
    variants = choose_variants(files, family.components, dtype=dtype, variant=variant, model=model)
    return hub.download(repo, needed_files(files, family.components, variants), revision)


def _not_cached_message(model: str, repo: str, why: str) -> str:
    return (
        f"model `{model}` ({repo}): weights not found in the local Hugging Face cache ({why}); on a machine "
        f"without network, download the model elsewhere and pass its folder with --model /path/to/model"
    )


def _load_single_file(
    path: Path, *, config: str | None, dtype: torch.dtype, local_files_only: bool
) -> tuple[BackboneFamily, LoadedParts, dict[str, str | None]]:
    """Try each family's single-file reader, the later-registered (more specific) first."""
    errors: list[BaseException] = []
    for family in reversed(FAMILIES.values()):
        try:
            parts = family.load_single_file(path, config=config, dtype=dtype, local_files_only=local_files_only)
        except WeightsNotFoundError:
            raise  # the family recognised the file and says what is missing
        except (OSError, ValueError, KeyError, RuntimeError, TypeError) as exc:
            errors.append(exc)
            continue
        if parts is not None:
            return family, parts, {}
    hint = "" if config else " (pass `config=` / --model-config with a local diffusers folder of the same architecture)"
    reason = f": {one_line(errors[-1])}" if errors else ": no model family recognises it"
    raise WeightsNotFoundError(f"model `{path}`: cannot read this checkpoint file{hint}{reason}")


@contextlib.contextmanager
def _quiet_hub() -> Iterator[None]:
    """Silence the hub client's connection warnings (a failure becomes one error line instead)."""
    hub_logger = logging.getLogger("huggingface_hub")
    hub_level = hub_logger.level
    hub_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        hub_logger.setLevel(hub_level)


@contextlib.contextmanager
def _quiet_loading() -> Iterator[None]:
    """Silence diffusers' and transformers' per-file progress bars, notices and warnings while loading."""
    import diffusers.utils.logging as diffusers_logging
    import transformers.utils.logging as transformers_logging

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
        with _quiet_hub(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        diffusers_logging.set_verbosity(saved[0])
        transformers_logging.set_verbosity(saved[1])
        if saved[2]:
            diffusers_logging.enable_progress_bar()
        if saved[3]:
            transformers_logging.enable_progress_bar()
