"""Pieces shared by the families' tiny random-weight test models: VAE, scheduler, CLIP tokenizer and encoder.

Everything is written locally (the tokenizer vocabulary too), so a tiny model needs no download.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SCHEDULER = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
}


def tiny_vae(
    scaling_factor: float, *, latent_channels: int = 4, shift_factor: float | None = None, quant_conv: bool = True
) -> Any:
    """A KL VAE with the released models' 8x downsampling (four blocks) and every width tiny (SD3 and FLUX: 16
    latent channels, a shift factor, no quant convolutions)."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * 4,
        up_block_types=["UpDecoderBlock2D"] * 4,
        block_out_channels=[8, 8, 8, 8],
        layers_per_block=1,
        latent_channels=latent_channels,
        norm_num_groups=4,
        sample_size=64,
        scaling_factor=scaling_factor,
        shift_factor=shift_factor,
        use_quant_conv=quant_conv,
        use_post_quant_conv=quant_conv,
    )


def tiny_clip_text_config(vocab: dict[str, int]) -> Any:
    """A two-layer CLIP text encoder configuration of width 8 over ``vocab``."""
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=len(vocab),
        hidden_size=8,
        intermediate_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=77,
        bos_token_id=vocab["<|startoftext|>"],
        eos_token_id=vocab["<|endoftext|>"],
        pad_token_id=vocab["<|endoftext|>"],
        projection_dim=8,
    )


def write_clip_tokenizer(folder: Path) -> dict[str, int]:
    """A byte-level CLIP BPE vocabulary with no merges: every byte is a token (written locally, no download)."""
    folder.mkdir(parents=True, exist_ok=True)
    chars = _byte_characters()
    tokens = chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"]
    vocab = {token: i for i, token in enumerate(tokens)}
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    config = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": 77,
        "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>",
        "do_lower_case": True,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    (folder / "special_tokens_map.json").write_text(
        json.dumps({k: config[k] for k in ("bos_token", "eos_token", "unk_token", "pad_token")}, indent=2)
    )
    return vocab


def write_model_index(root: Path, pipeline: dict[str, Any], components: dict[str, list[str]]) -> None:
    """Write ``model_index.json``: the pipeline entries, the diffusers version, then the components."""
    import diffusers

    index = {**pipeline, "_diffusers_version": diffusers.__version__, **components}
    (root / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")


def _byte_characters() -> list[str]:
    """The 256 printable stand-ins for bytes used by GPT-2/CLIP byte-level BPE (Radford et al.)."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    chars, extra = [], 0
    for byte in range(256):
        if byte in printable:
            chars.append(chr(byte))
        else:
            chars.append(chr(256 + extra))
            extra += 1
    return chars


def write_t5(root: Path, tokenizer_folder: str, encoder_folder: str, *, max_length: int) -> None:
    """A tiny T5 encoder and a fast tokenizer over a small word vocabulary, written locally (no download)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast, T5Config, T5EncoderModel

    words = ["<pad>", "</s>", "<unk>", *[chr(c) for c in range(ord("a"), ord("z") + 1)]]
    vocab = {word: i for i, word in enumerate(words)}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token="<pad>", eos_token="</s>", unk_token="<unk>", model_max_length=max_length
    )
    fast.save_pretrained(root / tokenizer_folder)
    config = T5Config(
        vocab_size=len(vocab), d_model=16, d_kv=8, d_ff=32, num_layers=2, num_heads=2, pad_token_id=0, eos_token_id=1
    )
    T5EncoderModel(config).save_pretrained(root / encoder_folder)
