"""The user's MuseTalk weights folder in the official layout, checked before anything slow starts.

Layout (what MuseTalk's own download script produces):
    musetalkV15/unet.pth, musetalkV15/musetalk.json   the UNet state dict and its diffusers config
    sd-vae/config.json + diffusion_pytorch_model.{safetensors,bin}   sd-vae-ft-mse
    whisper/config.json + preprocessor_config.json + {model.safetensors,pytorch_model.bin}   whisper-tiny
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from core.errors import UserError

WHERE = "the README's 'MuseTalk weights' section says where to get them (https://huggingface.co/TMElyralab/MuseTalk)"
SOURCES = {
    "musetalkV15": "https://huggingface.co/TMElyralab/MuseTalk (musetalkV15/)",
    "sd-vae": "https://huggingface.co/stabilityai/sd-vae-ft-mse",
    "whisper": "https://huggingface.co/openai/whisper-tiny",
}
VAE_WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")
WHISPER_WEIGHTS = ("model.safetensors", "pytorch_model.bin")


@dataclass(frozen=True)
class WeightFiles:
    root: Path
    unet: Path
    unet_config: Path
    vae_dir: Path
    whisper_dir: Path

    def identity(self, part: str = "all") -> str:
        """A short fingerprint of the weights (`vae` or `all`) for cache keys: names, sizes and modification times
        of the big files (hashing 3.4 GB at every start would cost more than preparing), full hashes of configs."""
        dirs = {"vae": [self.vae_dir], "all": [self.unet.parent, self.vae_dir, self.whisper_dir]}[part]
        h = hashlib.sha256()
        for folder in dirs:
            for path in sorted(p for p in folder.iterdir() if p.is_file()):
                stat = path.stat()
                h.update(f"{folder.name}/{path.name}|{stat.st_size}|{stat.st_mtime_ns}|".encode())
                if path.suffix == ".json":
                    h.update(path.read_bytes())
        return h.hexdigest()[:16]


def _missing(path: Path, folder: str) -> UserError:
    return UserError(f"MuseTalk weights: {path} is missing; it comes from {SOURCES[folder]}, see the README")


def _first(folder: Path, names: tuple[str, ...], key: str) -> Path:
    for name in names:
        if (folder / name).is_file():
            return folder / name
    raise _missing(folder / names[0], key)


def locate(weights_dir: Path | None) -> WeightFiles:
    """The weight files in `weights_dir`, or one line naming the first one missing and where to get it."""
    if weights_dir is None:
        raise UserError(
            "engine musetalk needs its weights: set musetalk.weights_dir (or DH_MUSETALK__WEIGHTS_DIR) to the "
            f"folder holding musetalkV15/, sd-vae/ and whisper/; {WHERE}"
        )
    root = weights_dir.expanduser()
    if not root.is_dir():
        raise UserError(f"MuseTalk weights folder {root} does not exist; {WHERE}")
    unet, unet_config = root / "musetalkV15" / "unet.pth", root / "musetalkV15" / "musetalk.json"
    for path in (unet, unet_config):
        if not path.is_file():
            raise _missing(path, "musetalkV15")
    vae_dir = root / "sd-vae"
    if not (vae_dir / "config.json").is_file():
        raise _missing(vae_dir / "config.json", "sd-vae")
    _first(vae_dir, VAE_WEIGHTS, "sd-vae")
    whisper_dir = root / "whisper"
    for name in ("config.json", "preprocessor_config.json"):
        if not (whisper_dir / name).is_file():
            raise _missing(whisper_dir / name, "whisper")
    _first(whisper_dir, WHISPER_WEIGHTS, "whisper")
    return WeightFiles(root, unet, unet_config, vae_dir, whisper_dir)


def require_torch() -> None:
    """The neural stack is an extra: without it, one line saying how to install it."""
    missing = [name for name in ("torch", "diffusers", "transformers") if importlib.util.find_spec(name) is None]
    if missing:
        raise UserError(
            f"engine musetalk needs {', '.join(missing)}, which this install does not have: run `make neural`"
        )
