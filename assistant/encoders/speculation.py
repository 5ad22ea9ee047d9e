"""Speculative recognition: transcribe a pause's utterance before the pause is known to end it.

The detector decides that an utterance has ended only after ``min_silence``
(0.5 s) of quiet, but the utterance's samples are final much sooner, once the
end pad has been heard (``Segmenter.take_pause``).  ``SpeculativeTranscriber``
starts recognition then, in a thread of its own, so that by the time the end is
decided the transcript is usually ready.  If speech resumes, the newer pause
replaces the older one and its result is simply never asked for.

The final utterance is matched by its samples (a hash of them): the transcript
handed out is exactly the one recognition gives for those samples, so the
result is the same with or without speculation.  Recognition itself runs under
the engine's recognizer lock, one at a time, whichever thread asks.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from assistant.encoders.asr import Transcript

log = logging.getLogger(__name__)

KEEP_RESULTS = 4  # finished speculations kept for the utterance that may still come


def samples_key(samples: np.ndarray) -> bytes:
    return hashlib.blake2b(np.ascontiguousarray(samples).tobytes(), digest_size=16).digest()


class SpeculativeTranscriber:
    """``offer`` (the listening thread) starts recognition of a pause's samples; ``take``
    (the engine's thread) returns its transcript for exactly those samples, waiting for
    one still in progress, or None when there is none (recognize as usual)."""

    def __init__(self, transcribe: Callable[[np.ndarray], Transcript | None]) -> None:
        """``transcribe``: recognition of samples, or None when no recognizer is ready."""
        self._transcribe = transcribe
        self._lock = threading.Condition()
        self._waiting: tuple[bytes, np.ndarray] | None = None  # the newest pause, not started yet
        self._running: bytes | None = None
        self._results: OrderedDict[bytes, Transcript] = OrderedDict()
        self._closed = False
        self.used = 0  # transcripts handed out (tests read it)
        self._thread = threading.Thread(target=self._run, name="asr-speculation", daemon=True)
        self._thread.start()

    def offer(self, samples: np.ndarray) -> None:
        """A pause has begun: transcribe its utterance-to-be (replacing a pause not yet started)."""
        with self._lock:
            if not self._closed:
                self._waiting = (samples_key(samples), samples)
                self._lock.notify_all()

    def take(self, samples: np.ndarray, timeout: float = 30.0) -> Transcript | None:
        """The speculative transcript of exactly ``samples``: at once when done, after waiting
        for it when it is being made, else None."""
        key = samples_key(samples)
        with self._lock:
            while key not in self._results and (self._running == key or (self._waiting or (None,))[0] == key):
                if not self._lock.wait(timeout):
                    return None
            transcript = self._results.pop(key, None)
            if transcript is not None:
                self.used += 1
            return transcript

    def close(self, timeout: float = 5.0) -> None:
        with self._lock:
            self._closed = True
            self._waiting = None
            self._lock.notify_all()
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._lock:
                while self._waiting is None and not self._closed:
                    self._lock.wait()
                if self._closed:
                    return
                assert self._waiting is not None
                (key, samples), self._waiting = self._waiting, None
                self._running = key
            transcript = None
            try:
                transcript = self._transcribe(samples)
            except Exception:  # noqa: BLE001 - a speculation that fails is redone (and reported) for real
                log.debug("speculative recognition failed", exc_info=True)
            with self._lock:
                self._running = None
                if transcript is not None:
                    self._results[key] = transcript
                    while len(self._results) > KEEP_RESULTS:
                        self._results.popitem(last=False)
                self._lock.notify_all()
