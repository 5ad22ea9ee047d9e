"""The camera panel's "What's in view": a check box and one line under the preview.

While the camera is on and the box is checked, a ``LabelLoop`` (``assistant.fusion.
view_labels``) names the newest buffered frame from the list of things to look for, in
its own thread, with the shared image search model.  Its results and problems go into
a one-value mailbox; the panel's display timer pulls the newest (``refresh``), so no Qt
call ever leaves the GUI thread.  The line says why there are no labels when there are
none: the model is off, still loading, or could not be loaded.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from PySide6.QtWidgets import QCheckBox, QLabel, QWidget

from assistant.encoders.shared import SharedEncoder
from assistant.errors import ModelLoadError
from assistant.fusion.frame_buffer import FrameBuffer
from assistant.fusion.view_labels import LabelLoop, ViewLabels, percentages

OFF = "Image search model is off (Settings… → Camera)"
WAITING = "Waiting for the image search model…"
NOT_DOWNLOADED = "The image search model is not downloaded yet"
LOOKING = "Looking…"
FRESH_SECONDS = 5.0  # labels older than this (or a few intervals) are not "the newest"


class Mailbox:
    """The newest value put in (any thread); ``take`` gives it once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._value: Any = None
        self._new = False

    def put(self, value: Any) -> None:
        with self._lock:
            self._value, self._new = value, True

    def take(self) -> tuple[bool, Any]:
        with self._lock:
            new, self._new = self._new, False
            return new, self._value

    def clear(self) -> None:
        with self._lock:
            self._value, self._new = None, False


def encoder_getter(shared: SharedEncoder):
    """For the loop's thread: the loaded encoder, or None while it is loading.

    The window's search thread loads it (models load one at a time, between turns); this
    never does.  Raises ``ModelLoadError`` with the reason when it cannot be had (said once
    by the loop): it failed to load, or it is not downloaded.
    """

    def get():
        encoder = shared.get()
        if encoder is not None or not shared.choice.on:
            return encoder
        failure = shared.failure()
        if failure:
            raise ModelLoadError(failure)
        if not shared.is_downloaded():
            raise ModelLoadError(NOT_DOWNLOADED)
        return None

    return get


def newest_frame(buffer: FrameBuffer):
    """The newest frame the buffer kept (the frames that go with a question: labelling one
    of them puts its vector in the encoder's cache for the question), or None."""
    frames = buffer.frames()
    return frames[-1] if frames else None


class ViewLabelsControl:
    """The box (``box``), the line (``line``) and the loop (``loop``, None while off)."""

    def __init__(self, buffer: FrameBuffer, labels: list[str], checked: bool = False,
                 parent: QWidget | None = None) -> None:
        self.buffer = buffer
        self.labels = list(labels)
        self.encoder: SharedEncoder | None = None
        self.loop: LabelLoop | None = None
        self.camera_on = False
        self._mail = Mailbox()
        self._shown: ViewLabels | str | None = None  # the newest result or problem
        self._stopping: list[LabelLoop] = []
        self.box = QCheckBox("What's in view", parent)
        self.box.setObjectName("cameraViewLabels")
        self.box.setAccessibleName("Name what is in view")
        self.box.setToolTip("Name what the camera sees, from the things to look for (Settings… → Camera), "
                            "with the image search model")
        self.box.setChecked(checked)
        self.box.toggled.connect(lambda _on: self._run_or_stop())
        self.line = QLabel("", parent)
        self.line.setObjectName("cameraViewLabelsLine")
        self.line.setAccessibleName("What is in view")
        self.line.setWordWrap(True)
        self.line.hide()

    # -- what the window and the panel tell it --------------------------------------------

    def set_encoder(self, encoder: SharedEncoder | None) -> None:
        self.encoder = encoder
        self._restart()

    def set_labels(self, labels: list[str]) -> None:
        if labels and labels != self.labels:
            self.labels = list(labels)
            self._shown = None  # the old list's labels are not shown as the new one's
            self._mail.clear()
            if self.loop is not None:
                self.loop.set_labels(self.labels)
            self.refresh()

    def set_camera_on(self, on: bool) -> None:
        self.camera_on = on
        self._run_or_stop()

    def shutdown(self, timeout: float = 2.0) -> None:
        """Stop the loop and join every loop thread (each bounded by ``timeout``)."""
        self.camera_on = False
        self._run_or_stop()
        for loop in self._stopping:
            loop.stop(timeout)
        self._stopping = []

    # -- the loop ---------------------------------------------------------------------------

    def _run_or_stop(self) -> None:
        wanted = self.camera_on and self.box.isChecked() and self.encoder is not None
        if wanted and self.loop is None:
            self._mail.clear()
            self._shown = None
            self.loop = LabelLoop(encoder_getter(self.encoder), lambda: newest_frame(self.buffer), self.labels,
                                  self._mail.put, self._mail.put).start()
        elif not wanted and self.loop is not None:
            loop, self.loop = self.loop, None
            loop.stop(timeout=0)  # never wait on a labelling here: joined at shutdown
            self._stopping = [old for old in self._stopping if not old.stop(timeout=0)] + [loop]
        self.refresh()

    def _restart(self) -> None:
        if self.loop is not None:
            loop, self.loop = self.loop, None
            loop.stop(timeout=0)
            self._stopping.append(loop)
        self._run_or_stop()

    # -- showing ----------------------------------------------------------------------------

    def refresh(self) -> None:
        """On the display timer (GUI thread): the newest result or problem, in one line."""
        new, value = self._mail.take()
        if new:
            self._shown = value
        visible = self.camera_on and self.box.isChecked()
        self.line.setVisible(visible)
        if not visible:
            return
        text = self._text()
        if text != self.line.text():
            self.line.setText(text)
            self.line.setAccessibleDescription(text)

    def _text(self) -> str:
        encoder = self.encoder
        if encoder is None or not encoder.choice.on:
            return OFF
        shown = self._shown
        if isinstance(shown, str):  # why there are no labels, saying which model it is about
            return shown if "image search model" in shown.lower() else f"Image search model: {shown}"
        if encoder.get() is None:  # loading, or another model is chosen: no stale labels
            return WAITING
        return percentages(shown.labels) if isinstance(shown, ViewLabels) else LOOKING

    def latest(self) -> ViewLabels | None:
        """The newest labels, if they are fresh and the labels are on."""
        shown = self._shown
        if not (self.loop is not None and isinstance(shown, ViewLabels)):
            return None
        if time.monotonic() - shown.t > max(FRESH_SECONDS, 3 * self.loop.interval):
            return None
        return shown
