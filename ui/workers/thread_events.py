"""Events from plain Python threads, delivered on the GUI thread.

PySide must not be called from a thread Qt did not start, not even to emit a
signal (it crashed at exit).  The speech and listening threads ``put`` their
events here instead; a GUI-thread timer drains the queue and emits them.
"""

from __future__ import annotations

import queue

from PySide6.QtCore import QObject, QTimer, Signal, Slot


class ThreadEvents(QObject):
    arrived = Signal(object)

    def __init__(self, interval_ms: int = 25, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._timer = QTimer(self)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self.drain)

    def put(self, item: object) -> None:
        """Any thread: hand ``item`` over (it is emitted at the next tick)."""
        self._queue.put(item)

    def start(self) -> None:
        self._timer.start()

    def stop(self) -> None:
        """Stop the timer, delivering what has arrived so far."""
        self._timer.stop()
        self.drain()

    @Slot()
    def drain(self) -> None:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            self.arrived.emit(item)
