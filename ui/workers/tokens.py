"""Streamed tokens, coalesced for the chat view.

The pipeline thread ``push``es every ``TokenChunk``; the GUI thread shows them in
batches, at most once per ``flush_ms`` and paced by what showing them costs, so a
fast model cannot flood the event loop (re-rendering a long reply is not free).
"""

from __future__ import annotations

import threading
import time

from PySide6.QtCore import QObject, QTimer, Signal, Slot

from assistant.events import TokenChunk


class TokenBatcher(QObject):
    UPDATE_COST_FACTOR = 20  # at most ~5 % of the GUI thread goes to showing tokens

    batch = Signal(int, str)  # turn id, coalesced text
    _pending = Signal()

    def __init__(self, flush_ms: int = 33, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.flush_ms = flush_ms
        self._buffer: list[TokenChunk] = []
        self._lock = threading.Lock()
        self._last_flush = 0.0
        self._interval_ms = float(flush_ms)
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self.flush)
        self._pending.connect(self._schedule)  # queued: push() runs in the pipeline thread

    def push(self, chunk: TokenChunk) -> None:
        """The pipeline thread: one more piece of a reply."""
        with self._lock:
            first = not self._buffer
            self._buffer.append(chunk)
        if first:
            self._pending.emit()

    @Slot()
    def _schedule(self) -> None:
        wait = self._interval_ms - (time.monotonic() - self._last_flush) * 1000
        if wait <= 0:
            self.flush()
        elif not self._timer.isActive():
            self._timer.start(int(wait) + 1)

    @Slot()
    def flush(self) -> None:
        """Show everything pushed so far (one ``batch`` per turn, in order)."""
        with self._lock:
            chunks, self._buffer = self._buffer, []
        self._last_flush = time.monotonic()
        if not chunks:
            return
        turn_id, parts = chunks[0].turn_id, []
        for chunk in chunks:
            if chunk.turn_id != turn_id:
                self.batch.emit(turn_id, "".join(parts))
                turn_id, parts = chunk.turn_id, []
            parts.append(chunk.text)
        self.batch.emit(turn_id, "".join(parts))
        # Pace updates by what they cost: re-rendering a long reply must not take
        # more than a few percent of the time (the GUI shares the CPU with the model).
        cost_ms = (time.monotonic() - self._last_flush) * 1000
        self._interval_ms = max(self.flush_ms, min(cost_ms * self.UPDATE_COST_FACTOR, 250.0))

    def stop(self) -> None:
        self._timer.stop()
