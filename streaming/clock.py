"""Clocks for paced loops: the real monotonic one, and a virtual one that makes pacing testable
without sleeping (time jumps straight to each deadline)."""

from __future__ import annotations

import asyncio
import time
from abc import ABC, abstractmethod


class Clock(ABC):
    @abstractmethod
    def now(self) -> float:
        """Seconds on a monotonic scale."""

    @abstractmethod
    async def sleep_until(self, deadline: float) -> None: ...


class MonotonicClock(Clock):
    def now(self) -> float:
        return time.monotonic()

    async def sleep_until(self, deadline: float) -> None:
        delay = deadline - time.monotonic()
        await asyncio.sleep(delay if delay > 0 else 0)


class VirtualClock(Clock):
    """Time advances only when something sleeps, to exactly its deadline; `advance` simulates a stall.

    Exact only while one task sleeps on it (a session's media loop): two sleepers would push each
    other's time forward.
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = start

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += seconds

    async def sleep_until(self, deadline: float) -> None:
        self._now = max(self._now, deadline)
        await asyncio.sleep(0)
