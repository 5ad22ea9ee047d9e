"""One time origin shared by the devices of a conversation, so that their recordings line up.

A real-time file microphone and a time-aligned WAV recorder (``--headless
--realtime --mic in.wav --speaker out.wav``) both measure time from the same
instant on the monotonic clock: sample *t* seconds into the microphone's
recording is heard at ``origin + t``, and second *t* of the recorder's file is
what the speaker played at ``origin + t``.  So second *t* of out.wav is second
*t* of in.wav, and latency or barge-in can be measured from outside.

The first device to need the origin sets it (``start``): in a conversation
that is the microphone's first read, i.e. the moment listening starts.
"""

from __future__ import annotations

import threading
import time


class Timeline:
    """A shared origin on ``time.monotonic()``; thread-safe, set once."""

    def __init__(self, origin: float | None = None) -> None:
        self._origin = origin
        self._lock = threading.Lock()

    @property
    def origin(self) -> float | None:
        """The instant second 0 happened, or None before anyone started the timeline."""
        return self._origin

    @property
    def started(self) -> bool:
        return self._origin is not None

    def start(self, at: float | None = None) -> float:
        """Set the origin to ``at`` (default: now) unless it is already set; returns the origin."""
        with self._lock:
            if self._origin is None:
                self._origin = time.monotonic() if at is None else at
            return self._origin

    def elapsed(self) -> float:
        """Seconds since the origin (0 before the timeline has started)."""
        origin = self._origin
        return 0.0 if origin is None else time.monotonic() - origin
