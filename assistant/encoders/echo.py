"""Acoustic echo cancellation: the assistant's own voice taken out of the microphone.

The app plays the audio it synthesizes, so it knows the echo's source exactly:
``PlaybackTap`` holds what the speaker played, on the timeline the microphone
shares.  ``EchoCanceller`` feeds WebRTC's AEC3 (the canceller in Chrome and
WebRTC calls; Python bindings: ``pywebrtc-audio``, Apache-2.0, a wheel that needs
only numpy) each microphone chunk with the reference played at the same moment;
AEC3 estimates the room's delay and response itself and adapts within about a
second.  With it the microphone stays open while the assistant speaks, so the
user can interrupt (barge-in).

AEC3 works in 10 ms frames (160 samples at 16 kHz) and the detector reads 32 ms
chunks (512 samples), so frames are regrouped: the cleaned audio lags the
microphone by at most one frame (10 ms).

Without the package (or when it fails to start) ``make_echo_canceller`` returns
None, and the session falls back to half-duplex listening.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

from assistant.devices.microphone import SAMPLE_RATE
from assistant.devices.playback_tap import PlaybackTap

log = logging.getLogger(__name__)

FRAME = SAMPLE_RATE // 100  # AEC3's 10 ms frame
STREAM_DELAY_MS = 0  # a hint only: AEC3 finds the delay itself (measured: 30-80 ms rooms are cancelled)
# A live microphone's first chunk is placed this much earlier than it arrived: delivery can be
# late (a busy machine), and AEC3 can follow an echo that comes after its reference, never before.
LIVE_MARGIN = 0.1
# AEC3 needs about a second of the assistant's voice to learn the room; until it has heard that
# much, the microphone is treated half-duplex (measured: the first word of the first reply leaks).
CONVERGENCE_SECONDS = 1.0


class EchoCanceller:
    """Microphone chunks in, the same number of cleaned samples out (10 ms later at most)."""

    def __init__(self, tap: PlaybackTap, stream_delay_ms: int = STREAM_DELAY_MS, start: float | None = None,
                 where: Callable[[], float | None] | None = None) -> None:
        """Where the microphone's first sample lies on the timeline: ``start`` (seconds) when
        it is known beforehand (a recording replayed faster than real time); else ``where()``
        after the first chunk was read (the timeline second of the next sample: a microphone
        that knows it, as the simulated room does); else the first chunk is taken to end now,
        less ``LIVE_MARGIN`` (a late reading must not put the reference after its echo)."""
        from pywebrtc_audio import EchoCanceller as Aec3

        self.tap = tap
        self._where = where
        self.reference_seconds = 0.0  # how much of the assistant's voice it has learned from
        self._aec = Aec3(SAMPLE_RATE, 1, stream_delay_ms)
        # The timeline position (in samples) of the next microphone sample.
        self._heard: int | None = None if start is None else round(start * SAMPLE_RATE)
        self._near = np.zeros(0, np.int16)
        self._far = np.zeros(0, np.int16)
        self._out = np.zeros(FRAME, np.int16)  # one frame of silence: the regrouping lag

    def process(self, chunk: np.ndarray) -> np.ndarray:
        """The chunk with the assistant's voice taken out (int16, same length)."""
        if self._heard is None:
            known = self._where() if self._where is not None else None
            if known is not None:
                self._heard = round(known * SAMPLE_RATE) - len(chunk)
            else:  # it ended about now: it began one chunk (and the margin) ago on the shared timeline
                timeline = self.tap.timeline
                timeline.start()
                ended = round((timeline.elapsed() - LIVE_MARGIN) * SAMPLE_RATE)
                self._heard = max(0, ended - len(chunk))
        far = self.tap.read(self._heard / SAMPLE_RATE, len(chunk))
        self._heard += len(chunk)
        if far.any():
            self.reference_seconds += len(far) / SAMPLE_RATE
        self._near = np.concatenate([self._near, chunk.astype(np.int16, copy=False)])
        self._far = np.concatenate([self._far, far])
        whole = len(self._near) // FRAME * FRAME
        if whole:
            cleaned = self._aec.process(self._near[:whole], self._far[:whole])
            self._out = np.concatenate([self._out, np.asarray(cleaned, np.int16).reshape(-1)])
            self._near, self._far = self._near[whole:], self._far[whole:]
        out, self._out = self._out[: len(chunk)], self._out[len(chunk):]
        if len(out) < len(chunk):  # cannot happen with a frame of lag; kept safe
            out = np.concatenate([out, np.zeros(len(chunk) - len(out), np.int16)])
        return out

    @property
    def converged(self) -> bool:
        """Whether it has heard enough of the assistant's voice to take it out reliably."""
        return self.reference_seconds >= CONVERGENCE_SECONDS


def make_echo_canceller(tap: PlaybackTap | None, where: Callable[[], float | None] | None = None
                        ) -> EchoCanceller | None:
    """An echo canceller reading ``tap``, or None (no tap, or AEC3 not available here)."""
    if tap is None:
        return None
    try:
        return EchoCanceller(tap, where=where)
    except Exception as exc:  # noqa: BLE001 - ImportError, or a build that does not run here
        log.info("echo cancellation is not available (%s): listening is half-duplex", exc)
        return None
