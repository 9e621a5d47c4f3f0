"""Kokoro's voice files: fetched once by `make` from the npm registry, each pinned by SHA-256.

No Python package carries Kokoro's Mandarin (or English) voices; the npm package `kokoro-js` 1.2.1
(Apache-2.0) does, as raw float32 style tables (510 phoneme counts x 256). `make` runs this module:
`npm pack` fetches the tarball, its SHA-512 is checked against the registry integrity pinned here, and
the voices listed in `VOICES` are extracted into the virtual environment, each checked against its
own SHA-256. At run time only the extracted files are read, and checked again.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np

from core.errors import UserError

PACKAGE = "kokoro-js@1.2.1"
INTEGRITY = "sha512-oq0HZJWis3t8lERkMJh84WLU86dpYD0EuBPtqYnLlQzyFP1OkyBRDcweAqCfhNOpltyN9j/azp1H6uuC47gShw=="
VOICES: dict[str, tuple[str, str]] = {
    # name: (language, sha256). zf_xiaoni is left out: Whisper misheard half of what it said.
    "zf_xiaobei": ("zh", "5dde6e1c9c4f12c8b327bc29c0cee361a23b52b952c04636858ba637ec66e640"),
    "zf_xiaoxiao": ("zh", "03adb5d5e3ddd88b047954e974e651cb0a4b524c985057e5d872e962c7be1169"),
    "zf_xiaoyi": ("zh", "bc1555c5c486099196ac254bae5e0bb543c121952a3092f50b7d8724f1bc36b3"),
    "zm_yunjian": ("zh", "de48a00bdbf3649f07162269a2b6e0513604389bfac8a2e6c75cb34b323ad6fa"),
    "zm_yunxi": ("zh", "7243892fb4e560d47014090ddf010f8b8b790f3c6b029ff82b2ac06aa4e27c8b"),
    "zm_yunxia": ("zh", "6b2b8fc15b3df19a368daebe5c581c7fabf433ee5b8a17ffd6b3d723cff8936d"),
    "zm_yunyang": ("zh", "261e2c89470534dbbcb8fd98b8fdc495ec94063d9bb6c8277f7be43cccba3f42"),
    "af_heart": ("en-us", "d583ccff3cdca2f7fae535cb998ac07e9fcb90f09737b9a41fa2734ec44a8f0b"),
    "am_michael": ("en-us", "1d1f21dd8da39c30705cd4c75d039d265e9bc4a2a93ed09bc9e1b1225eb95ba1"),
    "bf_emma": ("en-gb", "669fe0647f9dd04fcab92f1439a40eeb4c8b4ab1f82e4996fe3d918ce4a63b73"),
    "bm_george": ("en-gb", "c4b235a4c1f2cd3b939fed08b899ce9385638b763f7b73a59616c4fc9bd6c9bc"),
}
STYLE_SHAPE = (510, 1, 256)
"""One 256-value style vector per phoneme count (1-510): Kokoro picks the row for the input's length."""


def voices_dir() -> Path:
    """Where `make` puts the voices: inside the virtual environment, like the packages' own data."""
    return Path(sys.prefix) / "share" / "digital-human" / "kokoro-voices"


def installed_voices() -> dict[str, str]:
    """Voices whose file is present: name → language ("zh", "en-us", "en-gb"); not yet hash-checked."""
    folder = voices_dir()
    return {name: lang for name, (lang, _) in VOICES.items() if (folder / f"{name}.bin").is_file()}


def load_voice(name: str) -> np.ndarray:
    """A voice's style table, refused if its file does not match the pinned hash."""
    path = voices_dir() / f"{name}.bin"
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"the Kokoro voice {name} is not installed: run `make install`") from None
    if hashlib.sha256(data).hexdigest() != VOICES[name][1]:
        raise UserError(f"the Kokoro voice file {path} is damaged: delete it and run `make install`")
    return np.frombuffer(data, dtype=np.float32).reshape(STYLE_SHAPE)


def _integrity(path: Path) -> str:
    digest = hashlib.sha512(path.read_bytes()).digest()
    return "sha512-" + base64.b64encode(digest).decode()


def install(target: Path, tarball: Path | None = None) -> None:
    """Fetch `PACKAGE` with npm (unless `tarball` is given), check it, and extract the pinned voices."""
    with tempfile.TemporaryDirectory() as tmp:
        if tarball is None:
            if shutil.which("npm") is None:
                raise UserError("npm is needed once to fetch the Kokoro voices: install it (apt-get install npm)")
            done = subprocess.run(
                ["npm", "pack", PACKAGE, "--pack-destination", tmp, "--silent"],
                capture_output=True,
                text=True,
                check=False,
            )
            if done.returncode != 0:
                raise UserError(f"npm could not fetch {PACKAGE}: {done.stderr.strip().splitlines()[-1:]}")
            tarball = next(Path(tmp).glob("*.tgz"))
        if _integrity(tarball) != INTEGRITY:
            raise UserError(f"{tarball.name} does not match the pinned integrity of {PACKAGE}")
        target.mkdir(parents=True, exist_ok=True)
        with tarfile.open(tarball) as archive:
            for name, (_, digest) in VOICES.items():
                member = archive.extractfile(f"package/voices/{name}.bin")
                data = member.read() if member is not None else b""
                if hashlib.sha256(data).hexdigest() != digest:
                    raise UserError(f"voice {name} in {PACKAGE} does not match its pinned hash")
                partial = target / f".{name}.bin.{os.getpid()}"
                partial.write_bytes(data)
                os.replace(partial, target / f"{name}.bin")


def main() -> int:
    try:
        install(voices_dir(), Path(sys.argv[1]) if len(sys.argv) > 1 else None)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"Kokoro voices: {len(VOICES)} in {voices_dir()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
