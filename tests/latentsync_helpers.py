"""A fake LatentSync checkout around `latentsync_standin.py`, laid out like the real one."""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

STANDIN = Path(__file__).resolve().parent / "latentsync_standin.py"


def make_checkout(root: Path, **options: Any) -> Path:
    """configs/unet/stage2.yaml, checkpoints/latentsync_unet.pt, scripts/inference.py (the stand-in), a `temp`
    with a file of the user's in it (a job must never wipe it), and `standin.json` with `options`."""
    checkout = root / "LatentSync"
    (checkout / "configs" / "unet").mkdir(parents=True)
    (checkout / "configs" / "unet" / "stage2.yaml").write_text("model: {}\n")
    (checkout / "checkpoints").mkdir()
    (checkout / "checkpoints" / "latentsync_unet.pt").write_bytes(b"\0" * 16)
    (checkout / "scripts").mkdir()
    shutil.copyfile(STANDIN, checkout / "scripts" / "inference.py")
    (checkout / "temp").mkdir()
    (checkout / "temp" / "users-file.txt").write_text("keep me")
    set_mode(checkout, **options)
    return checkout


def set_mode(checkout: Path, **options: Any) -> None:
    (checkout / "standin.json").write_text(json.dumps(options))


def latentsync_section(checkout: Path, **extra: Any) -> dict[str, Any]:
    return {"checkout": str(checkout), "python": sys.executable, **extra}


def recorded_pids(path: Path) -> list[int]:
    if not path.exists():
        return []
    return [pid for line in path.read_text().splitlines() for pid in json.loads(line)["pids"]]


def alive(pid: int) -> bool:
    """Running (a zombie waiting for a reaper that never comes, in a container without init, is not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def wait_for(check: Any, timeout: float = 60.0, what: str = "condition") -> Any:
    """Poll until `check()` is truthy; the timeout only catches a hang (generous: the machine is shared)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def group_gone(pids: list[int]) -> bool:
    return bool(pids) and not any(alive(pid) for pid in pids)
