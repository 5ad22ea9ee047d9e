"""The window's session: the engine in the pipeline thread, its events as Qt signals.

``SessionBridge`` holds the ``Session`` (engine, voice, listening) and one
long-lived ``QThread`` whose worker runs everything that touches the models or
writes the history, one call at a time.  Requests go to the worker as queued
signals, one per kind of call; engine events come back as Qt signals on the GUI
thread.  Stop never queues behind the work: it bumps the engine's cancel epoch
directly (``Session.stop``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, QThread, Signal, Slot

from assistant.engine import BackendFactory, default_backend_factory
from assistant.events import (
    ConversationOpened,
    ConversationsListed,
    ErrorEvent,
    ErrorKind,
    Event,
    FramesChosen,
    MessageVersions,
    ModelKept,
    ReplyFinished,
    SearchResults,
    State,
    StatusEvent,
    TokenChunk,
    Transcribed,
    UserTurn,
    next_turn_id,
)
from assistant.devices.microphone import Microphone, open_microphone
from assistant.encoders.listener import ListenState, VoiceIn
from assistant.encoders.listener import ListenEvent
from assistant.encoders.vad import Utterance
from assistant.session import Session
from assistant.settings import AppPaths, Settings
from ui.workers import new_thread
from ui.workers.history_reader import HistoryReader
from ui.workers.thread_events import ThreadEvents
from ui.workers.tokens import TokenBatcher

if TYPE_CHECKING:
    from assistant.devices.speaker import Speaker
    from assistant.engine import Engine
    from assistant.speech.voice_out import VoiceOut
    from assistant.store.history import HistoryStore

log = logging.getLogger(__name__)


class _PipelineWorker(QObject):
    """Lives in the pipeline thread; every slot runs there, one at a time."""

    event = Signal(object)
    turn_done = Signal(int)

    def __init__(self, session: Session) -> None:
        super().__init__()
        self.session = session
        self.engine = session.engine

    @Slot(int)
    def load(self, epoch: int) -> None:
        self.session.load(epoch)

    @Slot(int)
    def load_recognizer(self, epoch: int) -> None:
        self.session.load_recognizer(epoch)

    @Slot(object, int, bool)
    def apply_settings(self, settings: Settings, epoch: int, reload: bool) -> None:
        self.session.apply_settings(settings, epoch, reload)

    @Slot(str, str)
    def save_api_key(self, base_url: str, key: str) -> None:
        """Store a key in the system keyring here: keyring calls may block (a locked keychain)."""
        from assistant.secrets import keys

        warning = keys.save(base_url, key)
        if warning:
            self.event.emit(ErrorEvent(warning, ErrorKind.SETTINGS))

    @Slot()
    def probe_keyring(self) -> None:
        """Find out once whether a system keyring is usable (the settings dialog shows it)."""
        from assistant.secrets import keys

        keys.status()

    @Slot()
    def unload(self) -> None:
        self.session.unload()

    @Slot(object, int)
    def answer(self, turn: UserTurn, epoch: int) -> None:
        try:
            self.session.answer(turn, epoch)
        finally:
            self.turn_done.emit(turn.id)

    @Slot(int, int, int)
    def regenerate(self, reply_turn_id: int, turn_id: int, epoch: int) -> None:
        try:
            self.session.regenerate(reply_turn_id, turn_id, epoch)
        finally:
            self.turn_done.emit(turn_id)

    @Slot(int, object, int)
    def edit(self, question_turn_id: int, turn: UserTurn, epoch: int) -> None:
        try:
            self.session.edit(question_turn_id, turn, epoch)
        finally:
            self.turn_done.emit(turn.id)

    @Slot(str, int, int)
    def show_version(self, role: str, turn_id: int, step: int) -> None:
        self.session.show_version(role, turn_id, step)

    @Slot(object, object, int, int)
    def answer_utterance(self, samples, frames: tuple, turn_id: int, epoch: int) -> None:
        try:
            self.session.answer_utterance(samples, frames, turn_id, epoch)
        finally:
            self.turn_done.emit(turn_id)

    # -- saved conversations: writes and opening stay in this thread ----------------------

    @Slot()
    def new_chat(self) -> None:
        self.session.new_chat()

    @Slot(int)
    def open_conversation(self, conversation_id: int) -> None:
        self.engine.open_conversation(conversation_id)

    @Slot(int, str)
    def rename_conversation(self, conversation_id: int, title: str) -> None:
        self.engine.rename_conversation(conversation_id, title)

    @Slot(int)
    def delete_conversation(self, conversation_id: int) -> None:
        self.engine.delete_conversation(conversation_id)

    @Slot(int, str, object)
    def export_conversation(self, conversation_id: int, fmt: str, destination: Path) -> None:
        self.engine.export_conversation(conversation_id, fmt, destination)

    @Slot(object)
    def import_conversation(self, source: Path) -> None:
        self.engine.import_conversation(source)

    @Slot()
    def list_conversations(self) -> None:
        self.engine.list_conversations()

    @Slot(str)
    def search(self, query: str) -> None:
        self.engine.search(query)


class SessionBridge(QObject):
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
    model_kept = Signal(object)  # ModelKept: a switch failed, the model in use stays
    versions = Signal(object)  # MessageVersions: an edited question's or a regenerated reply's
    transcribed = Signal(object)  # Transcribed: what the user said
    listen_event = Signal(object)  # ListenEvent from the listening thread
    utterance_ready = Signal(object)  # Utterance: the window adds camera frames and submits it

    _load = Signal(int)
    _apply = Signal(object, int, bool)
    _unload = Signal()
    _save_key = Signal(str, str)
    _answer = Signal(object, int)
    _answer_utterance = Signal(object, object, int, int)
    _regenerate = Signal(int, int, int)
    _edit = Signal(int, object, int)
    _show_version = Signal(str, int, int)
    _load_recognizer = Signal(int)
    _new_chat = Signal()
    _open = Signal(int)
    _rename = Signal(int, str)
    _delete = Signal(int)
    _export = Signal(int, str, object)
    _import = Signal(object)
    _list = Signal()
    _search = Signal(str)
    _probe_keyring = Signal()

    def __init__(
        self,
        settings: Settings,
        paths: AppPaths,
        backend_factory: BackendFactory = default_backend_factory,
        flush_ms: int = 33,
        parent: QObject | None = None,
        speaker: Speaker | None = None,
        store: HistoryStore | None = None,
    ) -> None:
        super().__init__(parent)
        self.status = StatusEvent(State.UNLOADED, model=settings.generator_name, device=settings.generator_place)
        self._closed = False
        self._released = False
        self._batcher = TokenBatcher(flush_ms, self)
        self._batcher.batch.connect(self.tokens)
        # Speech and listening run in plain Python threads: their events come back on a GUI timer.
        self._speech_events = ThreadEvents(parent=self)
        self._speech_events.arrived.connect(self.speech)
        self._listen_events = ThreadEvents(parent=self)
        self._listen_events.arrived.connect(self._on_listened)

        self.session = Session(settings, paths, self._from_engine, speaker=speaker,
                               on_speech=self._speech_events.put, store=store, backend_factory=backend_factory)
        if self.session.voice is not None:
            self._speech_events.start()

        self._thread = new_thread("pipeline")
        self._worker = _PipelineWorker(self.session)
        self._worker.moveToThread(self._thread)
        self._thread.finished.connect(self._worker.deleteLater)
        for signal, slot in (
            (self._load, self._worker.load),
            (self._apply, self._worker.apply_settings),
            (self._unload, self._worker.unload),
            (self._save_key, self._worker.save_api_key),
            (self._answer, self._worker.answer),
            (self._answer_utterance, self._worker.answer_utterance),
            (self._regenerate, self._worker.regenerate),
            (self._edit, self._worker.edit),
            (self._show_version, self._worker.show_version),
            (self._load_recognizer, self._worker.load_recognizer),
            (self._new_chat, self._worker.new_chat),
            (self._open, self._worker.open_conversation),
            (self._rename, self._worker.rename_conversation),
            (self._delete, self._worker.delete_conversation),
            (self._export, self._worker.export_conversation),
            (self._import, self._worker.import_conversation),
            (self._list, self._worker.list_conversations),
            (self._search, self._worker.search),
            (self._probe_keyring, self._worker.probe_keyring),
        ):
            signal.connect(slot)
        self._worker.event.connect(self._on_event)
        self._worker.turn_done.connect(self._on_turn_done)
        self._thread.start()
        self._probe_keyring.emit()  # here, not in the settings dialog: a keyring can block

        # The sidebar reads from a thread (and connection) of its own.
        self._reader: HistoryReader | None = None
        if store is not None:
            self._reader = HistoryReader(store, self)
            self._reader.event.connect(self._on_event)

    # -- what the window looks at -------------------------------------------------------------

    @property
    def engine(self) -> Engine:
        return self.session.engine

    @property
    def voice(self) -> VoiceOut | None:
        return self.session.voice

    @property
    def listener(self) -> VoiceIn | None:
        return self.session.listener

    @property
    def busy(self) -> bool:
        return self.session.busy

    @property
    def listen_state(self) -> ListenState:
        listener = self.session.listener
        return listener.state if listener is not None else ListenState.OFF

    # -- requests (GUI thread) -------------------------------------------------------

    def load(self) -> None:
        self._load.emit(self.engine.epoch)

    def apply_settings(self, settings: Settings, reload: bool = False) -> None:
        """Switch settings; a different model/device/dtype/server is reloaded in the background
        (``reload``: reload even so, e.g. with a new API key)."""
        old = self.session.settings  # the latest requested (the worker applies them in order)
        self.session.follow_settings(settings)
        if self.session.listener is not None:
            listening = ("mic", "vad_threshold", "vad_min_silence", "max_utterance", "echo_cancellation", "half_duplex",
                         "wake_word", "wake_follow_up")
            if any(getattr(settings, k) != getattr(old, k) for k in listening):
                self.start_listening()  # the new microphone or detector settings
            elif settings.hands_free != old.hands_free:
                self.set_hands_free(settings.hands_free)
        if settings.generator_key() == old.generator_key() and not reload:
            self._apply.emit(settings, self.engine.epoch, False)  # no reload: the reply in progress goes on
            return
        self._apply.emit(settings, self.session.stop(), reload)

    def settings_kept(self, settings: Settings) -> None:
        """The engine kept its model after a failed switch: ``settings`` (with the model in use)
        are the latest requested again; nothing is reloaded."""
        self.session.follow_settings(settings)

    def save_api_key(self, base_url: str, key: str) -> None:
        """Use ``key`` for the server from now on; it is written to the keyring in the
        pipeline thread (before any reload queued after this), never to the settings file.
        When there is no keyring, an error event says it is kept for this session only."""
        from assistant.secrets import keys

        keys.remember(base_url, key)  # in memory at once: a reload queued next uses it
        self._save_key.emit(base_url, key)

    def unload(self) -> None:
        """Stop any reply and drop the model from memory; the next question loads it again."""
        self.session.stop()
        self._unload.emit()

    def submit(self, turn: UserTurn) -> None:
        self._begin(turn.id)
        self._answer.emit(turn, self.engine.epoch)

    def regenerate(self, reply_turn_id: int, turn_id: int) -> None:
        """Answer the last question again (streaming under ``turn_id``), in place of the reply
        shown under ``reply_turn_id``."""
        self._begin(turn_id)
        self._regenerate.emit(reply_turn_id, turn_id, self.engine.epoch)

    def edit(self, question_turn_id: int, turn: UserTurn) -> None:
        """Ask the question shown under ``question_turn_id`` again as ``turn`` (its text), in
        place of it and everything after it; the answer streams under ``turn.id``."""
        self._begin(turn.id)
        self._edit.emit(question_turn_id, turn, self.engine.epoch)

    def show_version(self, role: str, turn_id: int, step: int) -> None:
        """Show another version of a message (the conversation is opened again with it)."""
        self._show_version.emit(role, turn_id, step)

    def submit_utterance(self, utterance: Utterance, frames: tuple = ()) -> int:
        """Transcribe and answer what the user said (in the pipeline thread); returns its turn id."""
        turn_id = next_turn_id()
        if self.session.offer_utterance(turn_id):
            self.listen_event.emit(ListenEvent("dropped", text="You spoke again before the last thing you said "
                                               "was answered: the newest is answered next."))
        self._begin(turn_id)
        self._answer_utterance.emit(utterance.samples, frames, turn_id, self.engine.epoch)
        return turn_id

    def _begin(self, turn_id: int) -> None:
        was_busy = self.busy
        self.session.begin_turn(turn_id)  # a new question interrupts the spoken answer to the last one
        if not was_busy:
            self.busy_changed.emit(True)

    @property
    def pipeline_thread(self) -> QThread:
        """The thread the engine runs in: where models load and turns run, one at a time."""
        return self._thread

    def stop(self) -> None:
        """Stop the reply being generated (between two tokens), any queued turn, and speech."""
        self.session.stop()

    def interrupt_speech(self) -> None:
        """Silence the spoken reply now (the text goes on)."""
        self.session.interrupt_speech()

    def new_chat(self) -> None:
        self.session.stop()
        self._new_chat.emit()

    # -- saved conversations --------------------------------------------------------------

    def open_conversation(self, conversation_id: int) -> None:
        """Switch to a saved conversation (stops any reply in progress first)."""
        self.session.stop()
        self._open.emit(conversation_id)

    def rename_conversation(self, conversation_id: int, title: str) -> None:
        self._rename.emit(conversation_id, title)

    def delete_conversation(self, conversation_id: int) -> None:
        self._delete.emit(conversation_id)

    def export_conversation(self, conversation_id: int, fmt: str, destination: Path) -> None:
        """``fmt``: "md" (``destination`` is a folder) or "json" (a file)."""
        self._export.emit(conversation_id, fmt, destination)

    def import_conversation(self, source: Path) -> None:
        self._import.emit(source)

    def list_conversations(self) -> None:
        """The sidebar's list, from the reader thread (the pipeline thread without one)."""
        if self._reader is not None:
            self._reader.list_conversations(self.engine.conversation_id)
        else:
            self._list.emit()

    def search(self, query: str) -> None:
        if self._reader is not None:
            self._reader.search(query)
        else:
            self._search.emit(query)

    # -- listening ---------------------------------------------------------------------------

    def start_listening(self, mic: Microphone | str | None = None, hands_free: bool | None = None) -> VoiceIn:
        """Open the microphone (``mic``: a Microphone, or a device/WAV/``room:`` spec; None: the settings')
        and listen in a thread of its own.  Problems arrive as a ``listen_event`` of kind error."""
        self.stop_listening()
        if not isinstance(mic, Microphone):
            # The echo room (room:USER.wav) hears what the session's speaker plays (its tap).
            mic = open_microphone(self.session.settings.mic if mic is None else mic, realtime=True,
                                  tap=self.session.tap)
        listener = self.session.listen(mic, self._listen_events.put, self._listen_events.put, hands_free)
        self._listen_events.start()
        self._load_recognizer.emit(self.engine.epoch)  # Whisper loads while the user starts talking
        return listener

    def stop_listening(self) -> None:
        self.session.stop_listening(timeout=0)  # the GUI thread never waits on the microphone's thread
        self._listen_events.stop()

    def set_hands_free(self, on: bool) -> None:
        if self.session.listener is not None:
            self.session.listener.set_hands_free(on)

    def push_to_talk(self, pressed: bool) -> None:
        """Hold to talk; pressing it interrupts the assistant's voice (a deliberate barge-in)."""
        if pressed:
            self.session.silence()
        if self.session.listener is not None:
            self.session.listener.push_to_talk(pressed)

    def shutdown(self, timeout_ms: int = 2000, patience_ms: int = 60_000) -> bool:
        """Stop work, end the pipeline thread and join it; True when it has ended.

        Waits ``timeout_ms``, then (a model load cannot be interrupted half-way) up to
        ``patience_ms`` more.  The window passes ``patience_ms=0`` and asks again later, so
        that its thread never waits on a load.  Safe to call again."""
        if not self._closed:
            self._closed = True
            self.session.close_devices()  # devices first, then the pipeline
            self._listen_events.stop()
            self._speech_events.stop()
            self._thread.quit()
            if self._reader is not None:
                self._reader.shutdown(timeout_ms)
        finished = self._thread.wait(timeout_ms)
        if not finished and patience_ms > 0:
            log.warning("pipeline thread still busy after %d ms; waiting for it", timeout_ms)
            finished = self._thread.wait(patience_ms)
        if finished and not self._released:
            self._released = True
            self._batcher.stop()
            self.session.release_models()  # the thread has ended: nothing else touches the model now
        return finished

    # -- engine → Qt -----------------------------------------------------------------------

    def _from_engine(self, event: Event) -> None:
        """Called in the pipeline thread for every engine event (after the session spoke it)."""
        if isinstance(event, TokenChunk):
            self._batcher.push(event)
        else:
            self._worker.event.emit(event)

    def flush_tokens(self) -> None:
        self._batcher.flush()

    @Slot(object)
    def _on_event(self, event: Event) -> None:
        self._batcher.flush()  # everything streamed before this event is shown first
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
        elif isinstance(event, ModelKept):
            self.model_kept.emit(event)
        elif isinstance(event, MessageVersions):
            self.versions.emit(event)
        elif isinstance(event, Transcribed):
            self.transcribed.emit(event)

    @Slot(object)
    def _on_listened(self, item: object) -> None:
        if isinstance(item, Utterance):
            self.utterance_ready.emit(item)
        else:
            self.listen_event.emit(item)

    @Slot(int)
    def _on_turn_done(self, turn_id: int) -> None:
        self._batcher.flush()
        self.session.end_turn(turn_id)
        if not self.session.busy:
            self.busy_changed.emit(False)
