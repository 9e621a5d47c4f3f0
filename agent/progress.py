"""A progress bar on stderr that appears only for renders longer than a couple of seconds."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from tqdm import tqdm

from agent.render_job import Progress


@contextmanager
def progress_bar(label: str) -> Iterator[Progress]:
    bar = tqdm(
        desc=label,
        unit="s",
        unit_scale=False,
        delay=2.0,
        file=sys.stderr,
        leave=False,
        bar_format="{desc}: {n:.1f} s of speech [{elapsed}, {rate_fmt}]",
    )

    def update(seconds: float) -> None:
        bar.update(seconds - bar.n)

    try:
        yield update
    finally:
        bar.close()
