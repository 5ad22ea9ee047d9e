"""Search by meaning, in a thread of its own: load the image search model, index the
history, answer queries.

``SearchWorker`` (GUI thread) owns one ``QThread`` whose loop, in order of urgency:

1. answers the newest search query (older ones not yet answered are dropped);
2. gets the shared contrastive encoder ready (``SharedEncoder.load`` from the cache; a
   model that is not downloaded is only *reported*: the sidebar offers the download, and
   ``retry`` loads it once it is there);
3. indexes what the history has not indexed yet (``Retriever.index``), newest first,
   whenever ``reindex`` says something was saved.  Between batches it answers queries and
   waits while a reply is being written (``busy``), so indexing never delays an answer.

The model itself is loaded in the pipeline thread (``load_thread``), between two turns,
while this thread waits: ``transformers``' ``from_pretrained`` changes process-wide state
(the default dtype, patched ``torch`` and model functions, restored afterwards), so two
loads in two threads at once break each other ("Cannot copy out of meta tensor", weights
left untied).  Loads in the pipeline thread never overlap.

The thread has its own connection to the history file (SQLite WAL: it reads and writes
while the pipeline thread saves replies).  Nothing here touches a widget: results carry
small thumbnails as ``QImage`` (made here, off the GUI thread); the window makes pixmaps.
``shutdown`` stops the loop between two batches and joins the thread; the window calls
it before the engine's models (the shared encoder among them) are released.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from PySide6.QtCore import QObject, QSize, Qt, QThread, Signal, Slot
from PySide6.QtGui import QImage, QImageReader

from assistant.encoders.shared import EncoderChoice, SharedEncoder
from assistant.errors import AssistantError, Cancelled, ModelLoadError
from assistant.settings import DEFAULT_SEARCH_MODEL
from ui.workers import new_thread

log = logging.getLogger(__name__)

__all__ = ["SearchAnswer", "SearchState", "SearchWorker", "THUMBNAIL_SIDE", "download_size"]

THUMBNAIL_SIDE = 48  # pixels: the sidebar's result pictures
RESULTS = 20  # results a query shows
_THUMBNAILS_KEPT = 256
BUSY_POLL_S = 0.1  # while a reply is written, how often indexing looks whether it has ended

# Approximate download sizes (the weights) of known image search models.
_DOWNLOAD_BYTES = {DEFAULT_SEARCH_MODEL: 605_000_000}


def download_size(model: str) -> int:
    """About how many bytes downloading ``model`` takes (0: not known)."""
    return _DOWNLOAD_BYTES.get(model.strip(), 0)


@dataclass(frozen=True)
class SearchState:
    """Where meaning search stands (the sidebar's line says it).

    ``phase``: "starting" (not known yet), "off" (no model chosen), "missing" (not
    downloaded), "loading", "indexing" (``done`` of ``total``), "ready", "failed"
    (``message`` says why).
    """

    phase: str
    model: str = ""
    done: int = 0
    total: int = 0
    message: str = ""

    @property
    def searchable(self) -> bool:
        """Queries can be answered by meaning now (while indexing too: what is indexed is found)."""
        return self.phase in ("indexing", "ready")

    @property
    def text(self) -> str:
        if self.phase == "off":
            return "Searching words only: meaning search is off."
        if self.phase == "missing":
            return "Search by meaning and by what pictures show needs its model."
        if self.phase == "loading":
            return "Meaning search: loading its model…"
        if self.phase == "indexing":
            return f"Meaning search: indexing {self.done} of {self.total}"
        if self.phase == "failed":
            return "Searching words only: the meaning search model could not be loaded."
        if self.phase == "ready":
            return "Meaning search is ready."
        return ""


@dataclass(frozen=True)
class SearchAnswer:
    """The results for ``query`` (None: meaning search could not answer it; ask the word search)."""

    query: str
    results: tuple | None  # SearchResult, best first
    thumbnails: dict[str, QImage] = field(default_factory=dict)  # image_path -> small picture


class _Stop(Exception):
    """The loop was asked to stop (or to start over with other settings)."""


class _Token:
    """The indexing's cancel token: stopping, or other settings since it began."""

    def __init__(self, loop: _SearchLoop, generation: int) -> None:
        self._loop = loop
        self._generation = generation

    @property
    def cancelled(self) -> bool:
        return self._loop._stopping or self._loop._generation != self._generation


class _Job:
    """A call to run in another thread, and what came of it."""

    def __init__(self, call: Callable[[], object]) -> None:
        self.call = call
        self.done = threading.Event()
        self.abandoned = False  # the asker stopped waiting: do not start it
        self.value: object = None
        self.error: BaseException | None = None


class _Runner(QObject):
    """Lives in the thread where models load (the pipeline's) and runs jobs there, one at a time."""

    @Slot(object)
    def run(self, job: _Job) -> None:
        try:
            if not job.abandoned:
                job.value = job.call()
        except BaseException as exc:  # noqa: BLE001 - handed back to the asker
            job.error = exc
        finally:
            job.done.set()


class _SearchLoop(QObject):
    """Lives in the search thread; ``run`` is its loop until ``stop``."""

    state = Signal(object)  # SearchState
    answered = Signal(object)  # SearchAnswer
    encoder_ready = Signal()
    run_elsewhere = Signal(object)  # a _Job for the thread where models load

    def __init__(self, encoder: SharedEncoder, store, choice: EncoderChoice, busy: Callable[[], bool]) -> None:
        super().__init__()
        self.encoder = encoder
        self.store = store  # this thread's own HistoryStore (None: no history, the encoder only)
        self.busy = busy
        self.elsewhere = False  # loads run in another thread (run_elsewhere is connected)
        self._cond = threading.Condition()
        # Guarded by _cond:
        self._choice = choice
        self._generation = 0
        self._stopping = False
        self._query: str | None = None
        self._prepare = True
        self._retry = False
        self._dirty = False
        # Only this thread:
        self._retriever = None
        self._thumbnails: OrderedDict[str, QImage] = OrderedDict()

    # -- requests (any thread) ----------------------------------------------------------

    def ask(self, query: str) -> None:
        with self._cond:
            self._query = query  # an older query not answered yet is dropped
            self._cond.notify_all()

    def reindex(self) -> None:
        with self._cond:
            self._dirty = True
            self._cond.notify_all()

    def configure(self, choice: EncoderChoice, retry: bool = False) -> None:
        with self._cond:
            if choice != self._choice:
                self._choice = choice
                self._generation += 1
            elif not retry:
                return
            self._prepare = True
            self._retry = self._retry or retry
            self._cond.notify_all()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()

    # -- the loop (search thread) -----------------------------------------------------------

    @Slot()
    def run(self) -> None:
        try:
            while True:
                query = None
                prepare = retry = False
                with self._cond:
                    while not (self._stopping or self._query is not None or self._prepare
                               or (self._dirty and self._retriever is not None)):
                        self._cond.wait()
                    if self._stopping:
                        return
                    if self._query is not None:  # a query first: the other work can wait
                        query, self._query = self._query, None
                    elif self._prepare:
                        prepare, retry = True, self._retry
                        self._prepare = self._retry = False
                    choice, generation = self._choice, self._generation
                try:
                    if query is not None:
                        self._answer(query)
                    elif prepare:
                        self._get_ready(choice, generation, retry)
                    else:
                        self._index(generation)
                except Exception:  # noqa: BLE001 - search must never take the app down
                    log.exception("search by meaning failed")
                    self._retriever = None  # words only, until other settings or Try again
                    self.state.emit(SearchState("failed", choice.model.strip(),
                                                message="Search by meaning failed (the log says why)."))
        finally:
            self._retriever = None

    def _get_ready(self, choice: EncoderChoice, generation: int, retry: bool) -> None:
        from assistant.search.retrieval import Retriever

        self._retriever = None
        self.encoder.configure(choice)  # at once (the pipeline thread does the same in its turn)
        model = choice.model.strip()
        if not choice.on:
            self.state.emit(SearchState("off"))
            return
        encoder = self.encoder.get()
        if encoder is None:
            failure = self.encoder.failure()
            if failure is not None and not retry:
                self.state.emit(SearchState("failed", model, message=failure))  # said once, not retried
                return
            if not self.encoder.is_downloaded():
                self.state.emit(SearchState("missing", model))
                return
            self.state.emit(SearchState("loading", model))
            try:
                encoder = self._where_models_load(
                    lambda: self.encoder.load(cancel=_Token(self, generation), download=False, retry=retry))
            except Cancelled:
                return
            except ModelLoadError as exc:
                self.state.emit(SearchState("failed", model, message=str(exc)))
                return
        if generation != self._generation or encoder is None:
            return  # other settings meanwhile: the loop gets ready for those
        self.encoder_ready.emit()
        if self.store is None:
            self.state.emit(SearchState("ready", model))
            return
        try:
            retriever = Retriever(self.store, encoder)
            retriever.load()
        except (AssistantError, sqlite3.Error, OSError) as exc:
            log.warning("search: the index could not be read: %s", exc)
            self.state.emit(SearchState("failed", model, message=f"The search index could not be read: {exc}"))
            return
        self._retriever = retriever
        with self._cond:
            self._dirty = True  # next: index what is not indexed yet

    def _where_models_load(self, call: Callable[[], object]):
        """``call()`` in the thread where models load (waiting for it here); raises ``Cancelled``
        when the loop is asked to stop meanwhile."""
        if not self.elsewhere:
            return call()
        job = _Job(call)
        self.run_elsewhere.emit(job)
        while not job.done.wait(BUSY_POLL_S):
            if self._stopping:
                job.abandoned = True
                raise Cancelled("Search is stopping.")
        if job.error is not None:
            raise job.error
        return job.value

    def _index(self, generation: int) -> None:
        with self._cond:
            self._dirty = False
        retriever = self._retriever
        model = retriever.encoder.model_name

        def progress(p) -> None:
            self.state.emit(SearchState("indexing", model, p.done, p.total))

        try:
            pending = retriever.pending()
            if not pending:
                self.state.emit(SearchState("ready", model))
                return
            self.state.emit(SearchState("indexing", model, 0, pending))
            final = retriever.index(progress, _Token(self, generation), self._pause)
        except (Cancelled, _Stop):
            return  # stopping, or other settings: the loop goes on from there
        except (AssistantError, sqlite3.Error, OSError, RuntimeError) as exc:
            # A full disk, a closed model: what is indexed stays searchable; the next save tries again.
            log.warning("search: indexing failed: %s", exc)
            self.state.emit(SearchState("ready", model, message=f"Indexing stopped: {exc}"))
            return
        self.state.emit(SearchState("ready", model, final.done, final.total))

    def _pause(self) -> None:
        """Between two batches: answer a query; wait while a reply is being written."""
        while True:
            with self._cond:
                if self._stopping:
                    raise _Stop
                query, self._query = self._query, None
            if query is not None:
                self._answer(query)
                continue
            if not self.busy():
                return
            with self._cond:
                if not self._stopping and self._query is None:
                    self._cond.wait(BUSY_POLL_S)

    def _answer(self, query: str) -> None:
        retriever = self._retriever
        if retriever is None:
            self.answered.emit(SearchAnswer(query, None))
            return
        try:
            results = retriever.search(query, RESULTS)
        except (AssistantError, sqlite3.Error, OSError, RuntimeError) as exc:
            log.warning("search by meaning failed: %s", exc)
            self.answered.emit(SearchAnswer(query, None))
            return
        thumbnails = {r.image_path: self._thumbnail(r.image_path) for r in results if r.image_path}
        self.answered.emit(SearchAnswer(query, tuple(results), {k: v for k, v in thumbnails.items() if v is not None}))

    def _thumbnail(self, path: str) -> QImage | None:
        """A small copy of a saved picture (cached); read at a reduced size where the format allows."""
        image = self._thumbnails.get(path)
        if image is not None:
            self._thumbnails.move_to_end(path)
            return image
        reader = QImageReader(path)
        reader.setAutoTransform(True)
        size = reader.size()
        if size.isValid() and (size.width() > THUMBNAIL_SIDE or size.height() > THUMBNAIL_SIDE):
            reader.setScaledSize(size.scaled(QSize(THUMBNAIL_SIDE, THUMBNAIL_SIDE), Qt.AspectRatioMode.KeepAspectRatio))
        image = reader.read()
        if image.isNull():
            return None
        if image.width() > THUMBNAIL_SIDE or image.height() > THUMBNAIL_SIDE:
            image = image.scaled(THUMBNAIL_SIDE, THUMBNAIL_SIDE, Qt.AspectRatioMode.KeepAspectRatio,
                                 Qt.TransformationMode.SmoothTransformation)
        self._thumbnails[path] = image
        while len(self._thumbnails) > _THUMBNAILS_KEPT:
            self._thumbnails.popitem(last=False)
        return image


class SearchWorker(QObject):
    """The search thread, seen from the GUI thread (see the module's note).

    ``encoder``: the engine's shared encoder; ``store``: the window's history (None: the
    thread only gets the encoder ready, for the camera's uses of it); ``busy``: whether a
    reply is being written (called from the search thread: it must be thread-safe);
    ``load_thread``: the thread every model loads in (the pipeline's; None: this one).
    """

    state_changed = Signal(object)  # SearchState
    answered = Signal(object)  # SearchAnswer
    encoder_ready = Signal()  # the shared encoder is loaded (frame relevance, view labels can use it)

    def __init__(self, encoder: SharedEncoder, store, choice: EncoderChoice, busy: Callable[[], bool],
                 load_thread: QThread | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.encoder = encoder
        self.state = SearchState("starting", choice.model.strip()) if choice.on else SearchState("off")
        self._closed = False
        self._store = None
        if store is not None:
            from assistant.store.history import HistoryStore

            self._store = HistoryStore(store.path, store.images_dir)
        self._loop = _SearchLoop(encoder, self._store, choice, busy)
        self._runner: _Runner | None = None
        if load_thread is not None:
            self._runner = _Runner()
            self._runner.moveToThread(load_thread)
            load_thread.finished.connect(self._runner.deleteLater)
            self._loop.run_elsewhere.connect(self._runner.run)  # queued: runs in load_thread
            self._loop.elsewhere = True
        self._thread = new_thread("search")
        self._loop.moveToThread(self._thread)
        self._thread.started.connect(self._loop.run)
        self._thread.finished.connect(self._loop.deleteLater)
        self._loop.state.connect(self._on_state)
        self._loop.answered.connect(self.answered)
        self._loop.encoder_ready.connect(self.encoder_ready)
        self._thread.start()

    @property
    def searchable(self) -> bool:
        return self._store is not None and self.state.searchable

    # -- requests (GUI thread) ------------------------------------------------------------------

    def search(self, query: str) -> None:
        """Answered by ``answered`` (only the newest of queries asked meanwhile)."""
        if not self._closed:
            self._loop.ask(query)

    def reindex(self) -> None:
        """Something was saved: index what is new."""
        if not self._closed:
            self._loop.reindex()

    def configure(self, choice: EncoderChoice) -> None:
        """Other settings (model, device, offline): get that model ready and index for it."""
        if not self._closed:
            self._loop.configure(choice)

    def retry(self) -> None:
        """Try to load the model again (it was just downloaded, or the user asks)."""
        if not self._closed:
            self._loop.configure(self._loop._choice, retry=True)

    def shutdown(self, timeout_ms: int = 2000, patience_ms: int = 0) -> bool:
        """Stop the loop (between two batches) and join the thread; True once it has ended.
        A model load cannot stop half-way: the window asks again later.  Safe to call again."""
        if not self._closed:
            self._closed = True
            self._loop.stop()
            self._thread.quit()
        finished = self._thread.wait(timeout_ms)
        if not finished and patience_ms > 0:
            finished = self._thread.wait(patience_ms)
        if finished and self._store is not None:
            self._store.close()
            self._store = None
        return finished

    @Slot(object)
    def _on_state(self, state: SearchState) -> None:
        self.state = state
        self.state_changed.emit(state)
