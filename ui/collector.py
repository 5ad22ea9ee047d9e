"""Python's cyclic garbage collector runs on the GUI thread only.

Python collects cycles in whichever thread happens to allocate when a
threshold is crossed: here, often the pipeline thread or a device thread.  A
collection there can finalize Qt wrapper objects that belong to the GUI thread
(a closed dialog, a window's lambdas), and PySide then crashes.  So while the
window runs, automatic collection is off, and this object collects on a GUI
timer, honouring the usual thresholds.  The engine's explicit requests
(``assistant.garbage.collect()``, after a model is dropped) are served here too,
at the next tick, and the requesting thread waits for that collection (at most
``REQUEST_WAIT_SECONDS``: a GUI thread busy for longer must not hold the engine),
so that "unloaded" means the memory is free.
"""

from __future__ import annotations

import gc
import logging
import threading

from PySide6.QtCore import QCoreApplication, QObject, QTimer

from assistant import garbage

log = logging.getLogger(__name__)

INTERVAL_MS = 250
REQUEST_WAIT_SECONDS = 2.0


class GuiThreadCollector(QObject):
    def __init__(self, app: QCoreApplication) -> None:
        super().__init__(app)
        self._requested = threading.Event()
        self._waiting: list[threading.Event] = []  # threads waiting for the requested collection
        self._waiting_lock = threading.Lock()
        self.collections = 0
        self._timer = QTimer(self)
        self._timer.setInterval(INTERVAL_MS)
        self._timer.timeout.connect(self.check)
        self._timer.start()
        gc.disable()
        garbage.set_collector(self.request)
        app.aboutToQuit.connect(self.uninstall)

    def request(self) -> None:
        """From any thread: collect now if this is the GUI thread, else at the next tick,
        and return once that collection has run (or after ``REQUEST_WAIT_SECONDS``)."""
        if threading.current_thread() is threading.main_thread():
            garbage.collect_now()
            self.collections += 1
            return
        done = threading.Event()
        with self._waiting_lock:
            self._waiting.append(done)
        self._requested.set()
        if not done.wait(REQUEST_WAIT_SECONDS):
            log.info("the GUI thread is busy: memory is freed at its next collection")

    def check(self) -> None:
        if self._requested.is_set():
            self._requested.clear()
            with self._waiting_lock:
                waiting, self._waiting = self._waiting, []
            garbage.collect_now()
            self.collections += 1
            for done in waiting:
                done.set()
            return
        counts, thresholds = gc.get_count(), gc.get_threshold()
        for generation in (2, 1, 0):
            if thresholds[generation] and counts[generation] > thresholds[generation]:
                gc.collect(generation)
                return

    def uninstall(self) -> None:
        self._timer.stop()
        garbage.set_collector(None)
        gc.enable()
        with self._waiting_lock:
            waiting, self._waiting = self._waiting, []
        for done in waiting:  # nobody collects on this thread any more: do not keep them waiting
            done.set()


_installed: GuiThreadCollector | None = None


def install() -> GuiThreadCollector:
    """Once per QApplication (idempotent)."""
    global _installed
    app = QCoreApplication.instance()
    assert app is not None, "a QApplication must exist first"
    if _installed is None or _installed.parent() is not app:
        _installed = GuiThreadCollector(app)
    return _installed
