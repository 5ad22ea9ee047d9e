"""The sidebar's reads of the chat history, in a thread of their own.

``HistoryReader`` opens a second connection to the history file (WAL lets it
read while the pipeline thread writes), so the list of chats and search
results answer at once, even while a reply is being generated and saved.
Once, at start, the same thread removes old image files no message uses.
"""

from __future__ import annotations

import logging

from PySide6.QtCore import QObject, Signal, Slot

from assistant.errors import HistoryError
from assistant.events import ConversationsListed, SearchResults
from assistant.store.history import HistoryStore
from ui.workers import new_thread

log = logging.getLogger(__name__)


class _ReaderWorker(QObject):
    """Lives in the reader thread, with its own connection."""

    event = Signal(object)  # ConversationsListed | SearchResults

    def __init__(self, store: HistoryStore) -> None:
        super().__init__()
        self.store = store

    @Slot(object)
    def list_conversations(self, current_id: int | None) -> None:
        try:
            self.event.emit(ConversationsListed(tuple(self.store.list_conversations()), current_id))
        except HistoryError as exc:
            log.warning("history read failed: %s", exc)

    @Slot()
    def prune_images(self) -> None:
        try:
            removed = self.store.prune_images()
        except HistoryError as exc:
            log.warning("history: image clean-up failed: %s", exc)
            return
        if removed:
            log.info("history: removed %d image file(s) no message uses", removed)

    @Slot(str)
    def search(self, query: str) -> None:
        try:
            hits = self.store.search(query) if query.strip() else []
            self.event.emit(SearchResults(query, tuple(hits)))
        except HistoryError as exc:
            log.warning("history search failed: %s", exc)


class HistoryReader(QObject):
    event = Signal(object)  # ConversationsListed | SearchResults, on the GUI thread

    _list = Signal(object)
    _search = Signal(str)
    _prune = Signal()

    def __init__(self, store: HistoryStore, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._worker = _ReaderWorker(HistoryStore(store.path, store.images_dir))
        self._thread = new_thread("history-reader")
        self._worker.moveToThread(self._thread)
        self._thread.finished.connect(self._worker.deleteLater)
        self._list.connect(self._worker.list_conversations)
        self._search.connect(self._worker.search)
        self._prune.connect(self._worker.prune_images)
        self._worker.event.connect(self.event)
        self._thread.start()
        self._prune.emit()

    def list_conversations(self, current_id: int | None) -> None:
        self._list.emit(current_id)

    def search(self, query: str) -> None:
        self._search.emit(query)

    def shutdown(self, timeout_ms: int = 2000) -> bool:
        self._thread.quit()
        finished = self._thread.wait(timeout_ms)
        if finished:
            self._worker.store.close()
        return finished
