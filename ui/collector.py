"""Python's cyclic garbage collector runs on the GUI thread only.

Python collects cycles in whichever thread happens to allocate when a
threshold is crossed: here, often the pipeline thread or a device thread.  A
collection there can finalize Qt wrapper objects that belong to the GUI thread
(a closed dialog, a window's lambdas), and PySide then crashes.  So while the
window runs, automatic collection is off, and this object collects on a GUI
timer, honouring the usual thresholds.  The engine's explicit requests
(``assistant.garbage.collect()``, after a model is dropped) are served here too,
at the next tick.
"""

from __future__ import annotations

import gc
import threading

from PySide6.QtCore import QCoreApplication, QObject, QTimer

from assistant import garbage

INTERVAL_MS = 250


class GuiThreadCollector(QObject):
    def __init__(self, app: QCoreApplication) -> None:
        super().__init__(app)
        self._requested = threading.Event()
        self.collections = 0
        self._timer = QTimer(self)
        self._timer.setInterval(INTERVAL_MS)
        self._timer.timeout.connect(self.check)
        self._timer.start()
        gc.disable()
        garbage.set_collector(self.request)
        app.aboutToQuit.connect(self.uninstall)

    def request(self) -> None:
        """From any thread: collect now if this is the GUI thread, else at the next tick."""
        if threading.current_thread() is threading.main_thread():
            garbage.collect_now()
            self.collections += 1
        else:
            self._requested.set()

    def check(self) -> None:
        if self._requested.is_set():
            self._requested.clear()
            garbage.collect_now()
            self.collections += 1
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


_installed: GuiThreadCollector | None = None


def install() -> GuiThreadCollector:
    """Once per QApplication (idempotent)."""
    global _installed
    app = QCoreApplication.instance()
    assert app is not None, "a QApplication must exist first"
    if _installed is None or _installed.parent() is not app:
        _installed = GuiThreadCollector(app)
    return _installed
