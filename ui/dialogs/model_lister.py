"""Asking an OpenAI-compatible server for its models, off the GUI thread (the settings dialog's
"Fetch list")."""

from __future__ import annotations

import threading
import time

from PySide6.QtCore import QObject, Signal

from ui.workers.thread_events import ThreadEvents


class ModelLister(QObject):
    """Asks a server for its models (``GET /v1/models``) in a thread of its own;
    the answer comes back on the GUI thread (no Qt call from that thread)."""

    done = Signal(object, str)  # model names (or None), error message

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.thread: threading.Thread | None = None
        self._answers = ThreadEvents(parent=self)
        self._answers.arrived.connect(self._answered)

    @property
    def busy(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def start(self, base_url: str, key: str | None, timeout: float) -> None:
        """One listing at a time (the dialog disables its button meanwhile)."""
        self._answers.start()
        # A daemon: a listing still in flight at exit holds no state worth waiting for beyond
        # ``wait_for_model_listings``' bound.
        self.thread = threading.Thread(target=self._run, args=(base_url, key, timeout), name="list-models",
                                       daemon=True)
        self.thread.start()

    def _run(self, base_url: str, key: str | None, timeout: float) -> None:
        from assistant.generators.openai_backend import list_models
        from assistant.errors import ModelLoadError
        from assistant.secrets import keys

        try:
            names, error = list_models(base_url, key or keys.key_for(base_url), timeout), ""
        except ModelLoadError as exc:
            names, error = None, str(exc)
        self._answers.put((names, error))

    def _answered(self, answer: tuple) -> None:
        self._answers.stop()
        self.done.emit(*answer)

    def abandon(self) -> None:
        """The dialog is closing: its answer is no longer wanted, and nothing waits for it here
        (the GUI thread); a listing in flight is joined at exit by ``wait_for_model_listings``."""
        self._answers.stop()
        if self.thread is not None and self.thread.is_alive():
            _in_flight.append(self.thread)
        self.thread = None


_in_flight: list[threading.Thread] = []  # listings still running after their dialog closed


def wait_for_model_listings(timeout: float) -> None:
    """At exit: join listings still in flight, ``timeout`` seconds for all of them together."""
    deadline = time.monotonic() + timeout
    while _in_flight:
        _in_flight.pop().join(max(0.0, deadline - time.monotonic()))
