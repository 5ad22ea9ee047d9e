"""What the speaker played, and when: the reference for echo cancellation and the echo room.

The app synthesizes and plays its own voice, so it knows exactly what comes out
of the speaker.  ``TappedSpeaker`` notes every chunk it plays in a
``PlaybackTap``: 16 kHz mono, placed on a ``Timeline`` (the time origin the
microphone shares).  ``PlaybackTap.read(start, count)`` gives the samples played
from timeline second ``start`` on, with silence where nothing played: what a
simulated room sends back to its microphone, and what an echo canceller
subtracts from a real one.  It keeps the last ``seconds`` of sound.
"""

from __future__ import annotations

import threading
import time

import numpy as np

from assistant.devices.audio import resample
from assistant.devices.speaker import Speaker
from assistant.devices.timeline import Timeline

RATE = 16000


class PlaybackTap:
    def __init__(self, timeline: Timeline, seconds: float = 10.0) -> None:
        self.timeline = timeline
        self._size = int(seconds * RATE)
        self._ring = np.zeros(self._size, np.int16)
        self._end = 0  # absolute sample index (on the timeline) after the newest sample written
        self._lock = threading.Lock()

    def played(self, samples: np.ndarray, rate: int, at: float | None = None) -> None:
        """``samples`` (int16 mono at ``rate``) started playing at monotonic time ``at`` (default now)."""
        origin = self.timeline.start(at)  # the first sound starts the timeline if nothing else has
        chunk = resample(samples, rate, RATE) if rate != RATE else samples
        start = round(((time.monotonic() if at is None else at) - origin) * RATE)
        with self._lock:
            if start + len(chunk) <= self._end - self._size:
                return  # older than what is kept
            if start > self._end:  # a gap: silence in between (the ring may still hold older sound there)
                self._write(self._end, np.zeros(min(start - self._end, self._size), np.int16))
            self._write(start, chunk[-self._size:] if len(chunk) > self._size else chunk)
            self._end = max(self._end, start + len(chunk))

    def read(self, start: float, count: int) -> np.ndarray:
        """``count`` samples played from timeline second ``start`` on (zeros where nothing played)."""
        first = round(start * RATE)
        out = np.zeros(count, np.int16)
        with self._lock:
            lo, hi = max(first, self._end - self._size, 0), min(first + count, self._end)
            if hi > lo:
                index = np.arange(lo, hi) % self._size
                out[lo - first : hi - first] = self._ring[index]
        return out

    def _write(self, start: int, chunk: np.ndarray) -> None:
        index = np.arange(start, start + len(chunk)) % self._size
        self._ring[index] = chunk


class TappedSpeaker(Speaker):
    """A speaker that notes what it plays in a ``PlaybackTap`` (at the moment it starts playing).

    A speaker is a sound card's buffer: ``play`` returns while the chunk before is
    still sounding, so a chunk starts where the one before ends, unless it comes
    later than that (``SLACK``, as ``WavRecorderSpeaker``): then it starts now.
    Noting each chunk at the moment ``play`` is called would put continuous speech
    one chunk early and write each chunk over the one before."""

    SLACK = 0.03  # seconds a chunk may come after the one before has ended and still follow it

    def __init__(self, speaker: Speaker, tap: PlaybackTap) -> None:
        self.speaker = speaker
        self.tap = tap
        self.name = getattr(speaker, "name", "speaker")
        self._ends: float | None = None  # monotonic instant the last chunk noted ends
        self._lock = threading.Lock()

    def play(self, chunk: np.ndarray, rate: int) -> None:
        now = time.monotonic()
        with self._lock:
            at = now if self._ends is None or now - self._ends > self.SLACK else self._ends
            self._ends = at + len(chunk) / rate
        self.tap.played(chunk, rate, at)
        self.speaker.play(chunk, rate)

    def abort(self) -> None:
        self._ends = None  # what was queued is dropped: the next chunk starts when it comes
        self.speaker.abort()

    def close(self) -> None:
        self.speaker.close()

    def __getattr__(self, name: str):
        return getattr(self.speaker, name)
