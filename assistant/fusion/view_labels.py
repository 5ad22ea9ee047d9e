"""What is in view: the camera's newest frame named from a list of labels (zero-shot).

The shared contrastive encoder (``encoders.contrastive``) scores one picture against
one text per label ("a photo of a mug.").  ``ViewLabeler`` embeds the label texts once
per list and ranks the labels for a picture; ``LabelLoop`` labels the camera's newest
frame in a background thread, at a rate that keeps it to a small share of one core,
and hands each result to a callback (the window pulls it on its display timer: no Qt
call leaves the GUI thread).  ``describe`` writes labels for a question's context.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from assistant.errors import short_message

log = logging.getLogger(__name__)

__all__ = ["PROMPT", "LabelLoop", "ViewLabeler", "ViewLabels", "describe", "percentages"]

PROMPT = "a photo of a {label}."  # CLIP's zero-shot template: better than the bare word


class ViewLabeler:
    """Ranks ``labels`` for a picture with ``encoder`` (a ``ContrastiveEncoder``).

    The label texts are embedded once, here.  Scores are the encoder's
    ``label_scores``: CLIP's softmax over the labels (they sum to 1), or SigLIP's
    independent sigmoids (each 0..1 on its own).
    """

    def __init__(self, encoder: Any, labels: Sequence[str], top: int = 3, prompt: str = PROMPT) -> None:
        self.labels = [str(label) for label in labels]
        if not self.labels:
            raise ValueError("ViewLabeler needs at least one label")
        self.encoder = encoder
        self.top = max(1, int(top))
        self.vectors = np.asarray(encoder.embed_texts([prompt.format(label=label) for label in self.labels]),
                                  np.float32)

    def scores(self, image: Any, key: str | None = None) -> np.ndarray:
        """Every label's score for ``image`` (H x W x 3 uint8 RGB), in the order of ``labels``."""
        vectors = self.encoder.embed_images([image], None if key is None else [key])
        return np.asarray(self.encoder.label_scores(vectors, self.vectors), np.float64)[0]

    def label(self, image: Any, key: str | None = None) -> list[tuple[str, float]]:
        """The ``top`` labels for ``image`` with their scores, best first."""
        scores = self.scores(image, key)
        order = np.argsort(-scores, kind="stable")[: self.top]
        return [(self.labels[i], float(scores[i])) for i in order]


def describe(labels: Sequence[tuple[str, float]]) -> str:
    """Labels as context for a question: ``"mug 0.62, keyboard 0.21"``."""
    return ", ".join(f"{label} {score:.2f}" for label, score in labels)


def percentages(labels: Sequence[tuple[str, float]]) -> str:
    """Labels as the camera panel shows them: ``"mug 62 % · keyboard 21 %"``."""
    return " · ".join(f"{label} {round(100 * score)} %" for label, score in labels)


@dataclass(frozen=True)
class ViewLabels:
    """One result of the loop: what frame ``frame_index`` showed, and when it was labelled."""

    labels: tuple[tuple[str, float], ...]
    frame_index: int
    t: float  # time.monotonic() when labelled
    seconds: float  # wall time the picture took (embedding and scoring)
    cpu_seconds: float  # the process's CPU time meanwhile (every thread: torch's workers count)


class LabelLoop:
    """Labels the newest frame in a background thread, never more than ``core_share`` of the time.

    ``encoder()`` returns the encoder or None (not loaded yet: the loop waits and asks
    again); it may raise to say why there is none.  ``latest()`` returns the newest
    frame (a ``devices.camera.Frame``) or None; a frame already labelled (same index)
    is skipped.  Each result goes to ``on_labels(ViewLabels)``; a problem (the encoder
    closed, a model that failed to load) goes to ``on_problem(message)`` once, not on
    every try; nothing is raised in the thread.  Both callbacks run in the loop's
    thread: they must only hand the value over.

    Pacing: a labelling's ``cost`` is the larger of its wall time and the process's CPU
    time meanwhile (torch computes on several threads: two cores busy for 0.1 s cost
    0.2 s of one core).  The next labelling starts no sooner than
    ``max(min_interval, cost / core_share)`` seconds after it began, so labelling uses
    at most ``core_share`` of one core (the preview and the replies keep the rest).
    Embedding the label texts (once per list and encoder) is not paced.
    """

    def __init__(
        self,
        encoder: Callable[[], Any | None],
        latest: Callable[[], Any | None],
        labels: Sequence[str],
        on_labels: Callable[[ViewLabels], None],
        on_problem: Callable[[str], None] | None = None,
        *,
        top: int = 3,
        min_interval: float = 0.5,
        core_share: float = 0.15,
        poll: float = 0.1,
        wait: float = 1.0,
    ) -> None:
        if not 0 < core_share <= 1:
            raise ValueError("core_share must be in (0, 1]")
        self._encoder = encoder
        self._latest = latest
        self._on_labels = on_labels
        self._on_problem = on_problem or (lambda _message: None)
        self.top = top
        self.min_interval = float(min_interval)
        self.core_share = float(core_share)
        self.poll = float(poll)  # how soon to look again for a new frame
        self.wait = float(wait)  # how soon to ask again for an encoder that is not there
        self.interval = self.min_interval  # from one labelling's start to the next's (adapted to the cost)
        self.labelled = 0  # frames labelled
        self.busy_seconds = 0.0  # the cost of every labelling so far (seconds of one core)
        self._labels = [str(label) for label in labels]
        if not self._labels:
            raise ValueError("LabelLoop needs at least one label")
        self._lock = threading.Lock()  # guards _labels
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._labeler: ViewLabeler | None = None
        self._said: str | None = None  # the last problem reported (said once)

    # -- control (any thread) ----------------------------------------------------------------

    def start(self) -> LabelLoop:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="view-labels", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 2.0) -> bool:
        """Stop and join the thread (at most ``timeout`` seconds: a labelling in progress
        ends first); True when it has ended."""
        self._stop.set()
        thread = self._thread
        if thread is None:
            return True
        thread.join(timeout)
        return not thread.is_alive()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._stop.is_set()

    def set_labels(self, labels: Sequence[str]) -> None:
        """Name the view from ``labels`` from the next frame on."""
        labels = [str(label) for label in labels]
        if not labels:
            raise ValueError("LabelLoop needs at least one label")
        with self._lock:
            self._labels = labels

    # -- the thread --------------------------------------------------------------------------

    def _run(self) -> None:
        last_index: int | None = None
        while not self._stop.is_set():
            try:
                encoder = self._encoder()
            except Exception as exc:  # noqa: BLE001 - said once, never raised in the thread
                self._problem(short_message(exc))
                self._stop.wait(self.wait)
                continue
            if encoder is None:
                self._labeler = None
                self._stop.wait(self.wait)
                continue
            frame = self._latest()
            if frame is None or frame.index == last_index:
                self._stop.wait(self.poll)
                continue
            try:
                labeler = self._labeler_for(encoder)  # the label texts: once per list and encoder
                started, cpu_started = time.monotonic(), time.process_time()
                labels = labeler.label(frame.image)
            except Exception as exc:  # noqa: BLE001 - the encoder closed, a bad frame: said once
                log.debug("view labelling failed", exc_info=True)
                self._labeler = None
                self._problem(short_message(exc))
                self._stop.wait(self.wait)
                continue
            seconds, cpu_seconds = time.monotonic() - started, time.process_time() - cpu_started
            cost = max(seconds, cpu_seconds)
            last_index = frame.index
            self.labelled += 1
            self.busy_seconds += cost
            self.interval = max(self.min_interval, cost / self.core_share)
            self._said = None
            try:
                self._on_labels(ViewLabels(tuple(labels), frame.index, time.monotonic(), seconds, cpu_seconds))
            except Exception:  # noqa: BLE001 - a receiver's fault must not end the loop
                log.exception("view labels receiver failed")
            self._stop.wait(max(0.0, started + self.interval - time.monotonic()))

    def _labeler_for(self, encoder: Any) -> ViewLabeler:
        with self._lock:
            labels = self._labels
        labeler = self._labeler
        if labeler is None or labeler.encoder is not encoder or labeler.labels != labels:
            labeler = self._labeler = ViewLabeler(encoder, labels, self.top)
        return labeler

    def _problem(self, message: str) -> None:
        if message == self._said:
            return
        self._said = message
        try:
            self._on_problem(message)
        except Exception:  # noqa: BLE001
            log.exception("view labels problem receiver failed")
