"""Caches written as one .npz file, atomically: a crash or a full disk never leaves half a cache behind."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np


def save_npz(path: Path, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    """`meta` (JSON) and `arrays` into `path`, which appears only when complete."""
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, meta=np.array(json.dumps(meta)), **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
