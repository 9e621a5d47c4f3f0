"""Progress bars on stderr that appear only for work that takes longer than a couple of seconds.

Only on a terminal: in a log or a pipe the bar's carriage returns would be noise around the one-line
notes and errors (tqdm's `disable=None`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from tqdm import tqdm

from agent.render_job import Progress

SHOW_AFTER_SECONDS = 2.0


@contextmanager
def progress_bar(label: str) -> Iterator[Progress]:
    bar = tqdm(
        desc=label,
        unit="s",
        unit_scale=False,
        delay=SHOW_AFTER_SECONDS,
        disable=None,
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


@contextmanager
def fraction_bar(label: str) -> Iterator[Callable[[float], None]]:
    """A percentage bar for work whose share done is known (0.0 ... 1.0), such as preparing an avatar."""
    bar = tqdm(
        desc=label,
        total=100,
        delay=SHOW_AFTER_SECONDS,
        disable=None,
        file=sys.stderr,
        leave=False,
        bar_format="{desc}: {percentage:3.0f}% [{elapsed}]",
    )

    def update(done: float) -> None:
        bar.update(max(0.0, min(100.0, round(100 * done, 1)) - bar.n))

    try:
        yield update
    finally:
        bar.close()
