"""The one bridge between the engine and Qt.

``EngineBridge`` owns a long-lived ``QThread`` with a worker object that owns the
``Engine`` (and so the model).  Requests go to the worker as queued signals;
engine events come back as Qt signals on the GUI thread.  Tokens are coalesced:
the worker appends them to a buffer and the GUI drains it at most once per
``flush_ms``, so a fast model cannot flood the event loop.  Stop does not queue
behind the work: it bumps the engine's cancel epoch directly.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import weakref
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, QThread, QTimer, Signal, Slot

from assistant.engine import BackendFactory, Engine, default_backend_factory
from assistant.messages import (
    ConversationOpened,
    ConversationsListed,
    ErrorEvent,
    Event,
    FramesChosen,
    ReplyFinished,
    SearchResults,
    State,
    StatusEvent,
    TokenChunk,
    Transcribed,
    UserTurn,
    next_turn_id,
)
from assistant.settings import AppPaths, Settings
from assistant.voice.audio import Speaker
from assistant.voice.mic import Microphone, open_microphone
from assistant.voice.vad import Utterance
from assistant.voice.voice_in import ListenEvent, ListenState, VoiceIn

if TYPE_CHECKING:
    from assistant.history import HistoryStore
from assistant.voice.voice_out import SpeechEvent, VoiceOut

log = logging.getLogger(__name__)

_threads: weakref.WeakSet[QThread] = weakref.WeakSet()


def running_threads() -> list[QThread]:
    """Bridge threads still running (tests fail when one leaks)."""
    return [t for t in list(_threads) if t.isRunning()]


class _Worker(QObject):
    """Lives in the pipeline thread; every slot runs there, one at a time."""

    event = Signal(object)
    turn_done = Signal(int)

    def __init__(self, engine: Engine) -> None:
        super().__init__()
        self.engine = engine

    @Slot(int)
    def load(self, epoch: int) -> None:
        self.engine.load(epoch)

    @Slot(object, int, bool)
    def apply_settings(self, settings: Settings, epoch: int, reload: bool) -> None:
        self.engine.apply_settings(settings, epoch, reload)

    @Slot(str, str)
    def save_api_key(self, base_url: str, key: str) -> None:
        """Store a key in the system keyring here: keyring calls may block (a locked keychain)."""
        from assistant.messages import ErrorKind
        from assistant.secrets import keys

        warning = keys.save(base_url, key)
        if warning:
            self.event.emit(ErrorEvent(warning, ErrorKind.SETTINGS))

    @Slot()
    def unload(self) -> None:
        self.engine.unload(announce=True)

    @Slot(object, int)
    def run_turn(self, turn: UserTurn, epoch: int) -> None:
        try:
            self.engine.handle_turn(turn, epoch)
        finally:
            self.turn_done.emit(turn.id)

    @Slot(object, object, int, int)
    def run_utterance(self, samples, frames: tuple, turn_id: int, epoch: int) -> None:
        try:
            self.engine.handle_utterance(samples, frames, turn_id, epoch)
        finally:
            self.turn_done.emit(turn_id)

    @Slot(int)
    def load_recognizer(self, epoch: int) -> None:
        self.engine.load_recognizer(epoch)

    @Slot()
    def new_chat(self) -> None:
        self.engine.new_chat()

    @Slot(str, object)
    def history(self, method: str, args: tuple) -> None:
        """Conversation-store work (list, open, rename, delete, search, export, import): I/O stays here."""
        getattr(self.engine, method)(*args)


class _Reader(QObject):
    """Reads the conversation store in a thread of its own (own connection): the sidebar
    and search answer at once, even while the pipeline thread is busy with a reply."""

    event = Signal(object)

    def __init__(self, store: HistoryStore) -> None:
        super().__init__()
        self.store = store

    @Slot(str, object)
    def read(self, method: str, args: tuple) -> None:
        from assistant.errors import HistoryError

        try:
            if method == "search":
                query = args[0]
                hits = self.store.search(query) if query.strip() else []
                self.event.emit(SearchResults(query, tuple(hits)))
            elif method == "list_conversations":
                self.event.emit(ConversationsListed(tuple(self.store.list_conversations()), args[0]))
        except HistoryError as exc:
            log.warning("history read failed: %s", exc)


class EngineBridge(QObject):
    UPDATE_COST_FACTOR = 20  # at most ~5 % of the GUI thread goes to showing tokens

    status_changed = Signal(object)  # StatusEvent
    tokens = Signal(int, str)  # turn id, coalesced text
    reply_finished = Signal(object)  # ReplyFinished
    error = Signal(object)  # ErrorEvent
    busy_changed = Signal(bool)
    speech = Signal(object)  # SpeechEvent from the speech thread
    conversations = Signal(object)  # ConversationsListed
    conversation_opened = Signal(object)  # ConversationOpened
    search_results = Signal(object)  # SearchResults
    frames_chosen = Signal(object)  # FramesChosen
    transcribed = Signal(object)  # Transcribed: what the user said
    listen_event = Signal(object)  # ListenEvent from the listening thread
    utterance_ready = Signal(object)  # Utterance: the window adds camera frames and submits it

    _load = Signal(int)
    _apply = Signal(object, int, bool)
    _unload = Signal()
    _save_key = Signal(str, str)
    _turn = Signal(object, int)
    _utterance = Signal(object, object, int, int)
    _load_recognizer = Signal(int)
    _new_chat = Signal()
    _history = Signal(str, object)
    _read = Signal(str, object)
    _tokens_pending = Signal()

    def __init__(
        self,
        settings: Settings,
        paths: AppPaths,
        backend_factory: BackendFactory = default_backend_factory,
        flush_ms: int = 33,
        parent: QObject | None = None,
        speaker: Speaker | None = None,
        history: HistoryStore | None = None,
    ) -> None:
        super().__init__(parent)
        self.flush_ms = flush_ms
        self.status = StatusEvent(State.UNLOADED, model=settings.generator_name, device=settings.generator_place)
        self._buffer: list[TokenChunk] = []
        self._lock = threading.Lock()
        self._last_flush = 0.0
        self._interval_ms = float(flush_ms)
        self._flush_timer = QTimer(self)
        self._flush_timer.setSingleShot(True)
        self._flush_timer.timeout.connect(self.flush_tokens)
        self._pending: set[int] = set()
        self._closed = False
        self._settings = settings  # the latest requested (the worker applies them in order)

        self.engine = Engine(settings, paths, self._from_engine, backend_factory, history)
        self._thread = QThread()
        self._thread.setObjectName("pipeline")
        _threads.add(self._thread)
        self._worker = _Worker(self.engine)
        self._worker.moveToThread(self._thread)
        self._thread.finished.connect(self._worker.deleteLater)
        self._load.connect(self._worker.load)
        self._apply.connect(self._worker.apply_settings)
        self._unload.connect(self._worker.unload)
        self._save_key.connect(self._worker.save_api_key)
        self._turn.connect(self._worker.run_turn)
        self._utterance.connect(self._worker.run_utterance)
        self._load_recognizer.connect(self._worker.load_recognizer)
        self._new_chat.connect(self._worker.new_chat)
        self._history.connect(self._worker.history)
        self._worker.event.connect(self._on_event)
        self._worker.turn_done.connect(self._on_turn_done)
        self._tokens_pending.connect(self._schedule_flush)
        self._thread.start()

        self._reader_thread: QThread | None = None
        if history is not None:
            from assistant.history import HistoryStore as _Store

            self._reader = _Reader(_Store(history.path, history.images_dir))
            self._reader_thread = QThread()
            self._reader_thread.setObjectName("history-reader")
            _threads.add(self._reader_thread)
            self._reader.moveToThread(self._reader_thread)
            self._reader_thread.finished.connect(self._reader.deleteLater)
            self._read.connect(self._reader.read)
            self._reader.event.connect(self._on_event)
            self._reader_thread.start()

        # Spoken replies: a speech thread of its own, fed straight from the pipeline thread.
        # Its events are collected from the speech thread (a plain Python thread) and
        # re-emitted here on a timer: no Qt object is touched from a foreign thread.
        self.voice: VoiceOut | None = None
        self._speech_events: queue.SimpleQueue[SpeechEvent] = queue.SimpleQueue()
        self._speech_timer = QTimer(self)
        self._speech_timer.setInterval(25)
        self._speech_timer.timeout.connect(self._drain_speech)
        # Listening: a thread of its own; its events and utterances come back the same way.
        self.listener: VoiceIn | None = None
        self._listen_events: queue.SimpleQueue[ListenEvent | Utterance] = queue.SimpleQueue()
        self._listen_timer = QTimer(self)
        self._listen_timer.setInterval(25)
        self._listen_timer.timeout.connect(self._drain_listening)
        if speaker is not None:
            self._speech_timer.start()
            self.voice = VoiceOut(
                speaker,
                self._speech_events.put,
                voice=settings.voice,
                rate=settings.speech_rate,
                volume=settings.speech_volume,
                enabled=settings.speak_replies,
            )
            self.voice.start()

    # -- requests (GUI thread) -------------------------------------------------------

    @property
    def busy(self) -> bool:
        return bool(self._pending)

    def load(self) -> None:
        self._load.emit(self.engine.epoch)

    def apply_settings(self, settings: Settings, reload: bool = False) -> None:
        """Switch settings; a different model/device/dtype/server is reloaded in the background
        (``reload``: reload even so, e.g. with a new API key)."""
        old, self._settings = self._settings, settings
        if self.voice is not None:
            self.voice.set_enabled(settings.speak_replies)
            self.voice.set_volume(settings.speech_volume)
            if settings.voice != old.voice:
                self.voice.set_voice(settings.voice)
            if settings.speech_rate != old.speech_rate:
                self.voice.set_rate(settings.speech_rate)
        if self.listener is not None:
            listening = ("mic", "vad_threshold", "vad_min_silence", "max_utterance")
            if any(getattr(settings, k) != getattr(old, k) for k in listening):
                self.start_listening()  # the new microphone or detector settings
            elif settings.hands_free != old.hands_free:
                self.set_hands_free(settings.hands_free)
        if settings.generator_key() == old.generator_key() and not reload:
            self._apply.emit(settings, self.engine.epoch, False)  # no reload: the reply in progress goes on
            return
        self._silence()
        self._apply.emit(settings, self.engine.cancel(), reload)

    def save_api_key(self, base_url: str, key: str) -> None:
        """Use ``key`` for the server from now on; it is written to the keyring in the
        pipeline thread (before any reload queued after this), never to the settings file.
        When there is no keyring, an error event says it is kept for this session only."""
        from assistant.secrets import keys

        keys.remember(base_url, key)  # in memory at once: a reload queued next uses it
        self._save_key.emit(base_url, key)

    def unload(self) -> None:
        """Stop any reply and drop the model from memory; the next question loads it again."""
        self._silence()
        self.engine.cancel()
        self._unload.emit()

    def submit(self, turn: UserTurn) -> None:
        self._silence()  # a new question interrupts the spoken answer to the last one
        was_busy = self.busy
        self._pending.add(turn.id)
        self._turn.emit(turn, self.engine.epoch)
        if not was_busy:
            self.busy_changed.emit(True)

    def submit_utterance(self, utterance: Utterance, frames: tuple = ()) -> int:
        """Transcribe and answer what the user said (in the pipeline thread); returns its turn id."""
        self._silence()
        turn_id = next_turn_id()
        was_busy = self.busy
        self._pending.add(turn_id)
        self._utterance.emit(utterance.samples, frames, turn_id, self.engine.epoch)
        if not was_busy:
            self.busy_changed.emit(True)
        return turn_id

    # -- listening ---------------------------------------------------------------------------

    def start_listening(self, mic: Microphone | str | None = None, hands_free: bool | None = None) -> VoiceIn:
        """Open the microphone (``mic``: a Microphone, or a device/WAV spec; None: the settings')
        and listen in a thread of its own.  Problems arrive as a ``listen_event`` of kind error."""
        self.stop_listening()
        settings = self._settings
        if not isinstance(mic, Microphone):
            mic = open_microphone(settings.mic if mic is None else mic, realtime=True)
        voice = self.voice

        def muted() -> bool:  # half-duplex: the assistant must not answer its own voice
            return voice is not None and self._settings.half_duplex and voice.sounding(0.4)

        self.listener = VoiceIn(
            mic, self._listen_events.put, self._listen_events.put, settings.vad_config(),
            hands_free=settings.hands_free if hands_free is None else hands_free, muted=muted,
        )
        self.listener.start()
        self._listen_timer.start()
        self._load_recognizer.emit(self.engine.epoch)  # Whisper loads while the user starts talking
        return self.listener

    def stop_listening(self) -> None:
        listener, self.listener = self.listener, None
        if listener is not None:
            listener.close()
            self._drain_listening()
        self._listen_timer.stop()

    def set_hands_free(self, on: bool) -> None:
        if self.listener is not None:
            self.listener.set_hands_free(on)

    def push_to_talk(self, pressed: bool) -> None:
        """Hold to talk; pressing it interrupts the assistant's voice (a deliberate barge-in)."""
        if pressed:
            self._silence()
        if self.listener is not None:
            self.listener.push_to_talk(pressed)

    @property
    def listen_state(self) -> ListenState:
        return self.listener.state if self.listener is not None else ListenState.OFF

    def stop(self) -> None:
        """Stop the reply being generated (between two tokens), any queued turn, and speech."""
        self.engine.cancel()
        self._silence()

    def interrupt_speech(self) -> None:
        """Silence the spoken reply now (the text goes on)."""
        if self.voice is not None:
            self.voice.stop()

    def _silence(self) -> None:
        if self.voice is not None:
            self.voice.stop(silence=self._pending)

    def new_chat(self) -> None:
        self.engine.cancel()
        self._silence()
        self._new_chat.emit()

    def open_conversation(self, conversation_id: int) -> None:
        """Switch to a saved conversation (stops any reply in progress first)."""
        self.engine.cancel()
        self._silence()
        self._history.emit("open_conversation", (conversation_id,))

    def read_request(self, method: str, *args) -> None:
        """``search(query)`` or ``list_conversations()``, answered from the reader thread."""
        if self._reader_thread is None:
            self.history_request(method, *args)
        elif method == "list_conversations":
            self._read.emit(method, (self.engine.conversation_id,))
        else:
            self._read.emit(method, args)

    def history_request(self, method: str, *args) -> None:
        """list_conversations, rename_conversation, delete_conversation, search, export_conversation,
        import_conversation: run in the pipeline thread; answers come back as signals."""
        self._history.emit(method, args)

    def shutdown(self, timeout_ms: int = 2000) -> bool:
        """Stop work, end the pipeline thread and join it; True when it ended in time."""
        if self._closed:
            return True
        self._closed = True
        self.engine.cancel()
        self.stop_listening()  # devices first, then the pipeline
        if self.voice is not None:
            self.voice.close()
            self._speech_timer.stop()
            self._drain_speech()
        self._thread.quit()
        if self._reader_thread is not None:
            self._reader_thread.quit()
            self._reader_thread.wait(timeout_ms)
            self._reader.store.close()
        finished = self._thread.wait(timeout_ms)
        if not finished:
            # A model load cannot be interrupted half-way; it ends on its own.
            log.warning("pipeline thread still busy after %d ms; waiting for it", timeout_ms)
            finished = self._thread.wait(60_000)
        self._flush_timer.stop()
        if finished:
            self.engine.unload()  # the thread has ended: nothing else touches the model now
            self.engine.unload_recognizer()
        return finished

    # -- engine → Qt -----------------------------------------------------------------------

    def _from_engine(self, event: Event) -> None:
        """Called in the pipeline thread for every engine event."""
        if self.voice is not None:
            if isinstance(event, TokenChunk):
                self.voice.feed(event.turn_id, event.text)
            elif isinstance(event, (ReplyFinished, ErrorEvent)) and event.turn_id is not None:
                self.voice.end_reply(event.turn_id)
        if isinstance(event, TokenChunk):
            with self._lock:
                first = not self._buffer
                self._buffer.append(event)
            if first:
                self._tokens_pending.emit()
        else:
            self._worker.event.emit(event)

    @Slot()
    def _schedule_flush(self) -> None:
        wait = self._interval_ms - (time.monotonic() - self._last_flush) * 1000
        if wait <= 0:
            self.flush_tokens()
        elif not self._flush_timer.isActive():
            self._flush_timer.start(int(wait) + 1)

    @Slot()
    def flush_tokens(self) -> None:
        with self._lock:
            chunks, self._buffer = self._buffer, []
        self._last_flush = time.monotonic()
        if not chunks:
            return
        turn_id, parts = chunks[0].turn_id, []
        for chunk in chunks:
            if chunk.turn_id != turn_id:
                self.tokens.emit(turn_id, "".join(parts))
                turn_id, parts = chunk.turn_id, []
            parts.append(chunk.text)
        self.tokens.emit(turn_id, "".join(parts))
        # Pace updates by what they cost: re-rendering a long reply must not take
        # more than a few percent of the time (the GUI shares the CPU with the model).
        cost_ms = (time.monotonic() - self._last_flush) * 1000
        self._interval_ms = max(self.flush_ms, min(cost_ms * self.UPDATE_COST_FACTOR, 250.0))

    @Slot(object)
    def _on_event(self, event: Event) -> None:
        self.flush_tokens()  # everything streamed before this event is shown first
        if isinstance(event, StatusEvent):
            self.status = event
            self.status_changed.emit(event)
        elif isinstance(event, ReplyFinished):
            self.reply_finished.emit(event)
        elif isinstance(event, ErrorEvent):
            self.error.emit(event)
        elif isinstance(event, ConversationsListed):
            self.conversations.emit(event)
        elif isinstance(event, ConversationOpened):
            self.conversation_opened.emit(event)
        elif isinstance(event, SearchResults):
            self.search_results.emit(event)
        elif isinstance(event, FramesChosen):
            self.frames_chosen.emit(event)
        elif isinstance(event, Transcribed):
            self.transcribed.emit(event)

    @Slot()
    def _drain_speech(self) -> None:
        while True:
            try:
                event = self._speech_events.get_nowait()
            except queue.Empty:
                return
            self.speech.emit(event)

    @Slot()
    def _drain_listening(self) -> None:
        while True:
            try:
                item = self._listen_events.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, Utterance):
                self.utterance_ready.emit(item)
            else:
                self.listen_event.emit(item)

    @Slot(int)
    def _on_turn_done(self, turn_id: int) -> None:
        self.flush_tokens()
        self._pending.discard(turn_id)
        if not self._pending:
            self.busy_changed.emit(False)



# -- model management: the cache, downloads ------------------------------------------------------


class _CancelFlag:
    """A download's cancel token: set from the GUI thread, polled per chunk by the download."""

    def __init__(self) -> None:
        self._event = threading.Event()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def set(self) -> None:
        self._event.set()


class _ModelsWorker(QObject):
    """Lives in the models thread: cache scans, deletes and downloads (one at a time)."""

    listed = Signal(object)  # CacheListing
    capabilities = Signal(object)  # dict: what this computer can do (CUDA, bitsandbytes, MPS)
    downloaded = Signal(str, str)  # model, folder
    download_failed = Signal(str, str, bool)  # model, message, cancelled
    deleted = Signal(str, int)  # model, bytes freed
    failed = Signal(str)  # a scan or delete problem, one line

    def __init__(self, cache_dir, progress_sink) -> None:
        super().__init__()
        self.cache_dir = cache_dir
        self.progress_sink = progress_sink

    @Slot()
    def scan(self) -> None:
        from assistant.errors import AssistantError
        from assistant.models import list_cached

        try:
            self.listed.emit(list_cached(self.cache_dir))
        except AssistantError as exc:
            self.failed.emit(str(exc))

    @Slot()
    def probe(self) -> None:
        """Importing torch and asking for CUDA takes a while: never on the GUI thread."""
        import importlib.util

        import torch

        from assistant.devices import _mps_available

        cuda = torch.cuda.is_available()
        self.capabilities.emit({
            "cuda": cuda,
            "cuda_name": torch.cuda.get_device_name(0) if cuda else "",
            "mps": _mps_available(),
            "bitsandbytes": importlib.util.find_spec("bitsandbytes") is not None,
        })

    @Slot(str, object, bool)
    def download(self, model: str, flag: _CancelFlag, offline: bool) -> None:
        from assistant.errors import AssistantError, Cancelled
        from assistant.models import download

        try:
            folder = download(model, self.cache_dir, self.progress_sink, flag, offline=offline)
        except Cancelled:
            self.download_failed.emit(model, f"Download of {model} cancelled; Download again continues where it stopped.", True)
        except AssistantError as exc:
            self.download_failed.emit(model, str(exc), False)
        except Exception as exc:  # noqa: BLE001 - a failed download must never end the thread
            log.exception("download failed")
            self.download_failed.emit(model, f"Downloading '{model}' failed: {exc}", False)
        else:
            self.downloaded.emit(model, str(folder))
        self.scan()

    @Slot(str)
    def delete(self, repo_id: str) -> None:
        from assistant.models import ModelStoreError, delete_cached

        try:
            self.deleted.emit(repo_id, delete_cached(self.cache_dir, repo_id))
        except ModelStoreError as exc:
            self.failed.emit(str(exc))
        self.scan()


class ModelsBridge(QObject):
    """Model files off the GUI thread: list the cache, download (with progress), delete.

    Its own thread, so a download never waits behind a reply (and a reply never waits
    behind a download).  Download progress comes from huggingface_hub's worker threads:
    only the newest report is kept, and a GUI-thread timer shows it (no Qt object is
    touched from a foreign thread).
    """

    listed = Signal(object)  # CacheListing
    capabilities = Signal(object)  # dict
    download_progress = Signal(object)  # Progress
    download_finished = Signal(str, str)  # model, folder
    download_failed = Signal(str, str, bool)  # model, message, cancelled
    deleted = Signal(str, int)
    error = Signal(str)
    downloading_changed = Signal(bool)

    _scan = Signal()
    _probe = Signal()
    _download = Signal(str, object, bool)
    _delete = Signal(str)

    def __init__(self, paths: AppPaths, parent: QObject | None = None, poll_ms: int = 100) -> None:
        super().__init__(parent)
        self.paths = paths
        self.downloading: str | None = None  # the hub id being downloaded
        self._flag: _CancelFlag | None = None
        self._latest = None  # the newest Progress, from any thread
        self._latest_lock = threading.Lock()
        self._closed = False
        self._poll = QTimer(self)
        self._poll.setInterval(poll_ms)
        self._poll.timeout.connect(self._show_progress)

        self._thread = QThread()
        self._thread.setObjectName("models")
        _threads.add(self._thread)
        self._worker = _ModelsWorker(paths.models, self._progress_from_any_thread)
        self._worker.moveToThread(self._thread)
        self._thread.finished.connect(self._worker.deleteLater)
        self._scan.connect(self._worker.scan)
        self._probe.connect(self._worker.probe)
        self._download.connect(self._worker.download)
        self._delete.connect(self._worker.delete)
        self._worker.listed.connect(self.listed)
        self._worker.capabilities.connect(self.capabilities)
        self._worker.deleted.connect(self.deleted)
        self._worker.failed.connect(self.error)
        self._worker.downloaded.connect(self._on_downloaded)
        self._worker.download_failed.connect(self._on_download_failed)
        self._thread.start()

    # -- requests (GUI thread) ----------------------------------------------------------------

    def refresh(self) -> None:
        self._scan.emit()

    def probe(self) -> None:
        self._probe.emit()

    def download(self, model: str, offline: bool = False) -> bool:
        """Start downloading ``model``; False when a download is already running."""
        if self.downloading is not None or self._closed:
            return False
        self.downloading = model.strip()
        self._flag = _CancelFlag()
        with self._latest_lock:
            self._latest = None
        self._poll.start()
        self.downloading_changed.emit(True)
        self._download.emit(self.downloading, self._flag, offline)
        return True

    def cancel_download(self) -> None:
        """Stop the download at its next chunk; what arrived stays, for the next try."""
        if self._flag is not None:
            self._flag.set()

    def delete(self, repo_id: str) -> None:
        self._delete.emit(repo_id)

    def shutdown(self, timeout_ms: int = 15_000) -> bool:
        """Cancel a download, end the thread and join it; True when it ended in time."""
        if self._closed:
            return True
        self._closed = True
        self.cancel_download()
        self._poll.stop()
        self._thread.quit()
        finished = self._thread.wait(timeout_ms)  # a stalled connection gives up within its timeout
        if not finished:
            log.warning("models thread still busy after %d ms; waiting for it", timeout_ms)
            finished = self._thread.wait(60_000)
        return finished

    # -- worker → GUI ----------------------------------------------------------------------------

    def _progress_from_any_thread(self, progress) -> None:
        with self._latest_lock:
            self._latest = progress

    @Slot()
    def _show_progress(self) -> None:
        with self._latest_lock:
            progress, self._latest = self._latest, None
        if progress is not None:
            self.download_progress.emit(progress)

    def _download_ended(self) -> None:
        self._poll.stop()
        self._show_progress()  # the last report (100 %) before the result
        self.downloading = None
        self._flag = None
        self.downloading_changed.emit(False)

    @Slot(str, str)
    def _on_downloaded(self, model: str, folder: str) -> None:
        self._download_ended()
        self.download_finished.emit(model, folder)

    @Slot(str, str, bool)
    def _on_download_failed(self, model: str, message: str, cancelled: bool) -> None:
        self._download_ended()
        self.download_failed.emit(model, message, cancelled)
