"""What the diffusion-transformer families share: a patch-token transformer, a KL VAE, one prompt encoded once.

A family of this kind declares its transformer class, its text encoders and prompt conditioning, how it calls the
transformer, its readable layers and its tiny test model. Everything here works from the diffusers classes'
configs; no layer name is hard-coded outside the family modules.
"""

from __future__ import annotations

import json
from abc import abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from zeroseg.backbones.families.base import BackboneFamily, Default, LoadedParts
from zeroseg.backbones.schedule import NoiseSchedule
from zeroseg.backbones.tiny_parts import tiny_vae, write_model_index
from zeroseg.errors import WeightsNotFoundError

if TYPE_CHECKING:
    from zeroseg.backbones.backbone import Backbone


class TransformerFamily(BackboneFamily):
    """A latent-diffusion family whose denoiser is a diffusers transformer over patch tokens.

    Attributes:
        transformer_class: the diffusers class of ``transformer/`` (what :meth:`recognises` checks).
        checkpoint_markers: what identifies a single checkpoint file of the family: alternatives (original and
            diffusers key names), each a tuple of key fragments that must all occur.
        tiny_transformer / tiny_vae_config / tiny_scheduler: the tiny test model's configurations.
    """

    denoiser_folder = "transformer"
    transformer_class: ClassVar[str]
    checkpoint_markers: ClassVar[tuple[tuple[str, ...], ...]]
    tiny_transformer: ClassVar[dict[str, Any]]
    tiny_vae_config: ClassVar[dict[str, Any]]
    tiny_scheduler: ClassVar[tuple[str, dict[str, Any]]]

    @abstractmethod
    def load_text_encoders(
        self, folder: Path, *, dtype: torch.dtype, variants: dict[str, str | None]
    ) -> tuple[list[Any], list[Any]]:
        """The tokenizers and text encoders the empty prompt needs, from a local folder."""

    @abstractmethod
    def schedule(self, scheduler_config: dict[str, Any]) -> NoiseSchedule:
        """The training noise process from the scheduler config."""

    @abstractmethod
    def write_tiny_text_encoders(self, root: Path) -> dict[str, list[str]]:
        """Write the tiny tokenizer(s) and text encoder(s); return their ``model_index.json`` entries."""

    def recognises(self, model_index: dict[str, Any], denoiser_config: dict[str, Any]) -> bool:
        """A ``transformer/config.json`` of the family's transformer class."""
        return denoiser_config.get("_class_name") == self.transformer_class

    def patch_size(self, denoiser: Any) -> int:
        """Latent cells per token side."""
        return int(denoiser.config.patch_size)

    def token_side(self, denoiser: Any, latent_side: int) -> int:
        """The side of the token grid for latents of side ``latent_side``."""
        return latent_side // self.patch_size(denoiser)

    def latent_divisor(self, backbone: Backbone) -> int:
        """The VAE scale factor times the patch size: every image side that gives whole tokens."""
        return self.vae_scale_factor(backbone) * self.patch_size(backbone.denoiser)

    def release_text_encoders(self, backbone: Backbone) -> bool:
        """The empty prompt's conditioning has no size: encode it once and drop the (large) text encoders."""
        return True

    def load(self, folder: Path, *, dtype: torch.dtype, variants: dict[str, str | None]) -> LoadedParts:
        """Transformer in ``dtype``, VAE in float32, the text encoders the empty prompt needs, the schedule."""
        import diffusers

        source = str(folder)
        transformer = getattr(diffusers, self.transformer_class).from_pretrained(
            source,
            subfolder="transformer",
            torch_dtype=dtype,
            variant=variants.get("transformer"),
            local_files_only=True,
        )
        return self._with_other_parts(transformer, folder, dtype=dtype, variants=variants)

    def _with_other_parts(
        self, transformer: Any, folder: Path, *, dtype: torch.dtype, variants: dict[str, str | None]
    ) -> LoadedParts:
        from diffusers import AutoencoderKL

        vae = AutoencoderKL.from_pretrained(
            str(folder), subfolder="vae", torch_dtype=torch.float32, variant=variants.get("vae"), local_files_only=True
        )
        tokenizers, encoders = self.load_text_encoders(folder, dtype=dtype, variants=variants)
        scheduler_config = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
        return LoadedParts(transformer, vae, tokenizers, encoders, self.schedule(scheduler_config))

    def load_single_file(
        self, path: Path, *, config: str | None, dtype: torch.dtype, local_files_only: bool
    ) -> LoadedParts | None:
        """A transformer checkpoint of this family (recognised by its keys); the other components come from
        ``config``, a local diffusers folder of the same model. ``None`` when the file is not of this family."""
        import diffusers

        if path.suffix != ".safetensors" or not self._is_checkpoint(path):
            return None
        folder = Path(config).expanduser() if config else None
        if folder is None or not folder.is_dir():
            raise WeightsNotFoundError(
                f"model `{path}`: a {self.name} transformer checkpoint; pass the diffusers folder of the same model "
                f"with --model-config /path/to/model (its VAE, text encoders and scheduler are loaded from there)"
            )
        cls = getattr(diffusers, self.transformer_class)
        if hasattr(cls, "from_single_file"):  # original or diffusers key names
            transformer = cls.from_single_file(
                str(path), config=str(folder), subfolder="transformer", torch_dtype=dtype, local_files_only=True
            )
        else:  # diffusers key names only
            transformer = _from_state_dict(cls, path, folder, dtype=dtype)
        return self._with_other_parts(transformer, folder, dtype=dtype, variants={})

    def _is_checkpoint(self, path: Path) -> bool:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            keys = list(handle.keys())
        return any(
            all(any(fragment in key for key in keys) for fragment in alternative)
            for alternative in self.checkpoint_markers
        )

    def write_tiny_model(self, root: Path) -> None:
        """Transformer, VAE, scheduler, then the text encoders, in this order (the weights depend on the order)."""
        import diffusers

        getattr(diffusers, self.transformer_class)(**self.tiny_transformer).save_pretrained(root / "transformer")
        tiny_vae(**self.tiny_vae_config).save_pretrained(root / "vae")
        scheduler_class, scheduler_config = self.tiny_scheduler
        getattr(diffusers, scheduler_class)(**scheduler_config).save_pretrained(root / "scheduler")
        components: dict[str, list[str]] = {
            "transformer": ["diffusers", self.transformer_class],
            "vae": ["diffusers", "AutoencoderKL"],
            "scheduler": ["diffusers", scheduler_class],
        }
        components |= self.write_tiny_text_encoders(root)
        write_model_index(root, {"_class_name": self.pipeline_class}, components)

    pipeline_class: ClassVar[str]


UNTUNED_TAU = Default(0.5, "DiffCut paper's value (not tuned for this family)")


def shared_defaults(image_size: Default, timestep: Default, *, tau: Default = UNTUNED_TAU) -> dict:
    """A family's ``defaults`` when both methods read the model at the same size and timestep (the sources
    name one setting for both), with DiffCut's tau."""
    capture = {"image_size": image_size, "timestep": timestep}
    return {"diffseg": dict(capture), "diffcut": {**capture, "tau": tau}}


def _from_state_dict(cls: Any, path: Path, folder: Path, *, dtype: torch.dtype) -> Any:
    """A transformer built from ``folder``'s config with the weights of a diffusers-format checkpoint file."""
    from safetensors.torch import load_file

    model = cls.from_config(cls.load_config(str(folder), subfolder="transformer", local_files_only=True))
    try:
        model.load_state_dict(load_file(str(path)))
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise WeightsNotFoundError(
            f"model `{path}`: its weights do not fit the transformer of {str(folder)!r} ({first})"
        ) from None
    return model.to(dtype)


def relative_layer(reference: int, reference_depth: int, depth: int) -> int:
    """Layer ``reference`` of a ``reference_depth``-layer model at the same relative depth in a ``depth``-layer one."""
    if depth == reference_depth:
        return reference
    return min(depth - 1, max(0, round(reference * (depth - 1) / max(1, reference_depth - 1))))


def load_tokenizer(folder: Path, subfolder: str) -> Any:
    """A tokenizer of a component folder by its own config (CLIP, T5 fast or sentencepiece)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(folder), subfolder=subfolder, local_files_only=True)


def load_encoder(cls: Any, folder: Path, subfolder: str, *, dtype: torch.dtype, variants: dict[str, str | None]):
    """A transformers text encoder of a component folder, in ``dtype``."""
    return cls.from_pretrained(
        str(folder), subfolder=subfolder, dtype=dtype, variant=variants.get(subfolder), local_files_only=True
    )
