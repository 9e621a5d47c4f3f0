"""Tiny random-initialised MuseTalk weights in the official folder layout, for contract tests.

The networks are the SAME classes as the published ones (diffusers UNet2DConditionModel and AutoencoderKL,
transformers WhisperModel and its feature extractor), only much smaller, saved the way the official download
is laid out, so the engine's real loading and inference code is what the tests run. Their output is noise:
they test our integration (shapes, timing, caching, errors), never lip-sync quality.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

TINY_UNET: dict[str, Any] = {
    "_class_name": "UNet2DConditionModel",
    "in_channels": 8,
    "out_channels": 4,
    "sample_size": 32,
    "block_out_channels": [16, 32],
    "layers_per_block": 1,
    "attention_head_dim": 4,
    "cross_attention_dim": 16,
    "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
    "norm_num_groups": 8,
    "norm_eps": 1e-5,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "downsample_padding": 1,
}
TINY_VAE: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 4,
    "block_out_channels": [8, 8, 8, 8],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "layers_per_block": 1,
    "norm_num_groups": 4,
    "sample_size": 256,
}
TINY_WHISPER: dict[str, Any] = {
    "d_model": 16,
    "encoder_layers": 2,
    "encoder_attention_heads": 2,
    "encoder_ffn_dim": 32,
    "decoder_layers": 1,
    "decoder_attention_heads": 2,
    "decoder_ffn_dim": 32,
    "num_mel_bins": 80,
    "max_source_positions": 1500,
    "max_target_positions": 32,
    "vocab_size": 64,
    "pad_token_id": 0,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "decoder_start_token_id": 1,
}
"""d_model 16 = the UNet's cross_attention_dim; 2 layers give 3 hidden states (the real whisper-tiny: 384, 4, 5)."""


def build_tiny_weights(
    root: Path,
    seed: int = 0,
    unet_config: dict[str, Any] = TINY_UNET,
    vae_config: dict[str, Any] = TINY_VAE,
    whisper_config: dict[str, Any] = TINY_WHISPER,
) -> Path:
    """Write random weights under `root` in the official layout and return `root` (tiny unless told otherwise: the
    benchmark passes the published configs)."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperModel

    torch.manual_seed(seed)
    (root / "musetalkV15").mkdir(parents=True, exist_ok=True)
    unet = UNet2DConditionModel(**{k: v for k, v in unet_config.items() if not k.startswith("_")})
    (root / "musetalkV15" / "musetalk.json").write_text(json.dumps(unet_config, indent=1))
    torch.save(unet.state_dict(), root / "musetalkV15" / "unet.pth")
    del unet
    AutoencoderKL(**vae_config).save_pretrained(root / "sd-vae")
    WhisperModel(WhisperConfig(**whisper_config)).save_pretrained(root / "whisper")
    WhisperFeatureExtractor(feature_size=80).save_pretrained(root / "whisper")
    return root
