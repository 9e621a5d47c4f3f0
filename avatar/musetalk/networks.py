"""The three networks (UNet, VAE, Whisper encoder) loaded once per process and the tensor work done with them.

Single-step inference: the UNet sees [masked latent, reference latent] and the audio tokens at timestep 0
and predicts the latent of the face with the mouth for that audio; the VAE decodes it to a 256x256 crop.
"""

from __future__ import annotations

import json
import math
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from avatar.musetalk.weights import WHERE, WeightFiles
from core.errors import UserError

if TYPE_CHECKING:
    import torch

LATENT_SCALE = 0.18215
"""sd-vae-ft-mse's latent scaling factor, which MuseTalk was trained with."""
CROP = 256
"""Side of the face crop the networks work on (a 4x32x32 latent)."""

_lock = threading.Lock()
_loaded: dict[tuple[str, str, str], MuseTalkNetworks] = {}


def pick_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("musetalk.device is cuda but PyTorch sees no CUDA GPU here: use device auto or cpu")
    return device


@dataclass
class MuseTalkNetworks:
    unet: Any
    vae: Any
    whisper: Any
    """The Whisper encoder only (the decoder is never used)."""
    extractor: Any
    device: str
    dtype: Any
    weights: WeightFiles

    @property
    def audio_dim(self) -> int:
        return int(self.whisper.config.d_model)

    @property
    def audio_layers(self) -> int:
        """Hidden states per Whisper frame: the embeddings plus one per encoder layer (5 for whisper-tiny)."""
        return int(self.whisper.config.encoder_layers) + 1

    def whisper_states(self, pcm16k: np.ndarray) -> np.ndarray:
        """(frames at 50/s, layers, dim) float32 hidden states of 16 kHz audio (at most 30 s), like MuseTalk's
        own feature extraction: the log-mel of the audio padded to Whisper's 30 s window, all hidden states."""
        import torch

        mel = self.extractor(pcm16k, sampling_rate=16_000, return_tensors="pt").input_features
        with torch.inference_mode():
            states = self.whisper(mel.to(self.device, self.dtype), output_hidden_states=True).hidden_states
        return torch.stack(states, dim=2)[0].float().cpu().numpy()

    def encode(self, crops_rgb: np.ndarray, *, half_mask: bool = False) -> np.ndarray:
        """(n, 4, 32, 32) float32 latents of (n, 256, 256, 3) uint8 RGB crops (the distribution's mode, so the
        same avatar always gives the same latents); `half_mask` blanks the lower half first, as MuseTalk does."""
        import torch

        x = torch.from_numpy(np.ascontiguousarray(crops_rgb)).permute(0, 3, 1, 2).float() / 255.0
        if half_mask:
            x[:, :, CROP // 2 :, :] = 0.0
        x = (x * 2.0 - 1.0).to(self.device, self.dtype)
        with torch.inference_mode():
            latents = self.vae.encode(x).latent_dist.mode() * LATENT_SCALE
        return latents.float().cpu().numpy()

    def generate(self, inputs: np.ndarray, tokens: np.ndarray) -> np.ndarray:
        """(n, 256, 256, 3) uint8 RGB faces from (n, 8, 32, 32) UNet inputs and (n, tokens, dim) audio tokens."""
        import torch

        audio = torch.from_numpy(tokens + positional_encoding(tokens.shape[1], tokens.shape[2])[None])
        with torch.inference_mode():
            latents = self.unet(
                torch.from_numpy(inputs).to(self.device, self.dtype),
                torch.zeros((), device=self.device),
                encoder_hidden_states=audio.to(self.device, self.dtype),
            ).sample
            image = self.vae.decode(latents / LATENT_SCALE).sample
            image = ((image.float() / 2 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8)
        return image.permute(0, 2, 3, 1).cpu().numpy()


def positional_encoding(length: int, dim: int) -> np.ndarray:
    """The standard sinusoidal encoding (sin on even, cos on odd channels) MuseTalk adds to the audio tokens."""
    position = np.arange(length, dtype=np.float64)[:, None]
    rate = np.exp(np.arange(0, dim, 2, dtype=np.float64) * (-math.log(10000.0) / dim))
    pe = np.zeros((length, dim), np.float64)
    pe[:, 0::2] = np.sin(position * rate)
    pe[:, 1::2] = np.cos(position * rate)[:, : dim // 2]
    return pe.astype(np.float32)


def load_networks(weights: WeightFiles, device: str = "auto", fp16: bool = True) -> MuseTalkNetworks:
    """The networks for `weights`, loaded once per process (sessions and avatars share them)."""
    import torch

    device = pick_device(device)
    dtype = torch.float16 if fp16 and device == "cuda" else torch.float32
    key = (weights.identity(), device, str(dtype))
    with _lock:
        if key not in _loaded:
            _loaded[key] = _load(weights, device, dtype)
        return _loaded[key]


def _load(weights: WeightFiles, device: str, dtype: torch.dtype) -> MuseTalkNetworks:
    import diffusers
    import transformers
    from diffusers import AutoencoderKL
    from transformers import WhisperFeatureExtractor, WhisperModel

    # Their progress bars and advice about optional packages are noise next to our one-line notes.
    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()

    unet = _load_unet(weights)
    try:
        vae, vae_info = AutoencoderKL.from_pretrained(weights.vae_dir, output_loading_info=True)
    except Exception as error:  # damaged or foreign files fail in many ways (safetensors, pickle, shapes, JSON)
        raise UserError(
            f"MuseTalk weights: {weights.vae_dir} is not a usable sd-vae-ft-mse ({_first_line(error)})"
        ) from None
    try:
        whisper, info = WhisperModel.from_pretrained(weights.whisper_dir, output_loading_info=True)
        extractor = WhisperFeatureExtractor.from_pretrained(weights.whisper_dir)
    except Exception as error:  # as above
        problem = (
            "does not match its config.json (tensors of another shape)"
            if "mismatched_sizes" in str(error)
            else f"is not a usable whisper-tiny ({_first_line(error)})"
        )
        raise UserError(f"MuseTalk weights: {weights.whisper_dir} {problem}; {WHERE}") from None
    vae_problems = [*vae_info.get("missing_keys", []), *vae_info.get("mismatched_keys", [])]
    if vae_problems:
        raise UserError(
            f"MuseTalk weights: {weights.vae_dir} does not match its config.json ({len(vae_problems)} tensors "
            f"missing or of another shape, e.g. {vae_problems[0]}); {WHERE}"
        )
    problems = [k for k in info.get("missing_keys", []) if k.startswith("encoder.")] + list(
        info.get("mismatched_keys", [])
    )
    if problems:
        raise UserError(
            f"MuseTalk weights: {weights.whisper_dir} does not match its config.json ({len(problems)} encoder "
            f"tensors missing or of another shape, e.g. {problems[0]}); {WHERE}"
        )
    if unet.config.cross_attention_dim != whisper.config.d_model:
        raise UserError(
            f"MuseTalk weights: the UNet expects {unet.config.cross_attention_dim}-wide audio features but "
            f"{weights.whisper_dir} gives {whisper.config.d_model}: use whisper-tiny ({WHERE})"
        )
    modules = [m.to(device, dtype).eval() for m in (unet, vae, whisper.encoder)]
    return MuseTalkNetworks(*modules, extractor=extractor, device=device, dtype=dtype, weights=weights)


def _load_unet(weights: WeightFiles) -> Any:
    import torch
    from diffusers import UNet2DConditionModel

    try:
        config = json.loads(weights.unet_config.read_text())
        unet = UNet2DConditionModel.from_config(config)
    except (ValueError, TypeError, KeyError) as error:
        raise UserError(
            f"MuseTalk weights: {weights.unet_config} is not a UNet config ({_first_line(error)})"
        ) from None
    try:
        state = torch.load(weights.unet, map_location="cpu", weights_only=True)
    except Exception:  # a truncated or foreign file fails in many ways inside the unpickler
        raise UserError(
            f"MuseTalk weights: {weights.unet} cannot be read as a PyTorch state dict (a truncated download?); {WHERE}"
        ) from None
    if not isinstance(state, dict):
        raise UserError(f"MuseTalk weights: {weights.unet} is not a state dict; {WHERE}")
    own = unet.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mismatched = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or mismatched:
        example = (mismatched or missing or unexpected)[0]
        raise UserError(
            f"MuseTalk weights: {weights.unet} does not match {weights.unet_config.name} ({len(missing)} tensors "
            f"missing, {len(unexpected)} unexpected, {len(mismatched)} of another shape, e.g. {example}); {WHERE}"
        )
    unet.load_state_dict(state, strict=True)
    return unet


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:200] if text else type(error).__name__
