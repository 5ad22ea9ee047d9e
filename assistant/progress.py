"""Long work that reports progress and can be cancelled: model loads, downloads, replies.

Shared by every stage that loads or fetches something (generators, encoders,
model downloads): a ``Progress`` record goes to a callback, and a ``CancelToken``
is polled between steps (it never waits).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol


class CancelToken(Protocol):
    """Polled between tokens (and between downloaded chunks): never waits."""

    @property
    def cancelled(self) -> bool: ...


class NeverCancelled:
    cancelled = False


class CancelFlag:
    """A ``CancelToken`` that one thread sets (Cancel, Ctrl+C) and the work polls."""

    def __init__(self) -> None:
        self._event = threading.Event()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def set(self) -> None:
        self._event.set()


@dataclass(frozen=True)
class Progress:
    """Loading progress: ``fraction`` is None when the total is unknown.

    Downloads also give byte figures: bytes in the cache so far (files finished
    earlier and resumed parts included), the total, the current speed (bytes/s,
    over the last few seconds) and the time left (seconds); None when unknown.
    """

    stage: str  # "download" | "load"
    fraction: float | None
    detail: str
    done_bytes: int | None = None
    total_bytes: int | None = None
    bytes_per_second: float | None = None
    seconds_left: float | None = None


ProgressCallback = Callable[[Progress], None]
