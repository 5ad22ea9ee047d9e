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

import numpy as np

from assistant.devices.microphone import SAMPLE_RATE
from assistant.devices.playback_tap import PlaybackTap

log = logging.getLogger(__name__)

FRAME = SAMPLE_RATE // 100  # AEC3's 10 ms frame
STREAM_DELAY_MS = 0  # a hint only: AEC3 finds the delay itself (measured: 30-80 ms rooms are cancelled)


class EchoCanceller:
    """Microphone chunks in, the same number of cleaned samples out (10 ms later at most)."""

    def __init__(self, tap: PlaybackTap, stream_delay_ms: int = STREAM_DELAY_MS, start: float | None = None) -> None:
        """``start``: the timeline second of the microphone's first sample, when it is known
        (a recording replayed faster than real time); None: the first chunk ends now."""
        from pywebrtc_audio import EchoCanceller as Aec3

        self.tap = tap
        self._aec = Aec3(SAMPLE_RATE, 1, stream_delay_ms)
        # The timeline position (in samples) of the next microphone sample.
        self._heard: int | None = None if start is None else round(start * SAMPLE_RATE)
        self._near = np.zeros(0, np.int16)
        self._far = np.zeros(0, np.int16)
        self._out = np.zeros(FRAME, np.int16)  # one frame of silence: the regrouping lag

    def process(self, chunk: np.ndarray) -> np.ndarray:
        """The chunk with the assistant's voice taken out (int16, same length)."""
        if self._heard is None:  # the first chunk ends now: it began one chunk ago on the shared timeline
            timeline = self.tap.timeline
            timeline.start()
            self._heard = max(0, round(timeline.elapsed() * SAMPLE_RATE) - len(chunk))
        far = self.tap.read(self._heard / SAMPLE_RATE, len(chunk))
        self._heard += len(chunk)
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

    def restart(self) -> None:
        """The microphone started again (its timeline position is 0 again)."""
        self._aec.reset()
        self._heard = None
        self._near = self._far = np.zeros(0, np.int16)
        self._out = np.zeros(FRAME, np.int16)


def make_echo_canceller(tap: PlaybackTap | None) -> EchoCanceller | None:
    """An echo canceller reading ``tap``, or None (no tap, or AEC3 not available here)."""
    if tap is None:
        return None
    try:
        return EchoCanceller(tap)
    except Exception as exc:  # noqa: BLE001 - ImportError, or a build that does not run here
        log.info("echo cancellation is not available (%s): listening is half-duplex", exc)
        return None
