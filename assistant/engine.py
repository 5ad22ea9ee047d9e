"""The pipeline: one long-lived worker that owns the model and handles turns one at a time.

``Engine`` is plain Python.  Its host (a ``Session``: in the window's pipeline
``QThread``, or on the command line) calls ``load`` and ``handle_turn`` from one
thread, and may call ``cancel`` from any thread.  Everything the engine has to
say goes to the ``emit`` callback as immutable events (see ``events``).

Cancellation is an epoch counter: ``cancel()`` bumps it, and every piece of
work remembers the epoch it was submitted under.  Work whose epoch is stale
stops between tokens, and turns queued before a Stop are dropped unstarted.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from PIL import Image as PILImage

from assistant.generators.base import (
    BackendInfo,
    ChatMessage,
    GenerationParams,
    GeneratorBackend,
    PromptTooLongError,
)
from assistant.errors import (
    AssistantError,
    BadInputError,
    Cancelled,
    GenerationError,
    HistoryError,
    ModelLoadError,
    short_message,
)
from assistant.encoders.images import decode_image, encode_jpeg, read_image_bytes
from assistant.encoders.shared import EncoderChoice, SharedEncoder
from assistant.garbage import collect
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
from assistant.progress import Progress
from assistant.reply_saving import StreamingSave
from assistant.settings import GENERATOR_FIELDS, AppPaths, Settings


def with_view_labels(text: str, meta: dict | None) -> str:
    """The question as the model sees it: with what is in view when it was asked, if known."""
    seen = (meta or {}).get("view_labels")
    if not seen:
        return text
    from assistant.fusion.view_labels import describe

    return f"{text}\n\n(The camera sees: {describe([(label, score) for label, score in seen])}.)".lstrip()


def encoder_choice(settings: Settings) -> EncoderChoice:
    """The image search model the settings name."""
    return EncoderChoice(settings.search_model.strip(), settings.device, settings.offline)
from assistant.store.records import describe_storage_error

if TYPE_CHECKING:
    import numpy as np

    from assistant.store.history import HistoryStore
    from assistant.encoders.asr import SpeechRecognizer, Transcript

log = logging.getLogger(__name__)
T = TypeVar("T")

BackendFactory = Callable[[Settings, AppPaths], GeneratorBackend]

EMPTY_ANSWER = ("The model ended its answer without writing anything. Ask again or rephrase; if it keeps "
                "happening, its files may be damaged (download it again on the Models page).")


def default_backend_factory(settings: Settings, paths: AppPaths) -> GeneratorBackend:
    """The generator the settings ask for: in-process ``transformers``, or an OpenAI-compatible server."""
    if settings.backend == "openai":
        from assistant.generators.openai_backend import OpenAIBackend
        from assistant.secrets import keys

        return OpenAIBackend(
            settings.base_url,
            settings.remote_model,
            api_key=keys.key_for(settings.base_url),
            timeout=settings.request_timeout,
            first_token_timeout=settings.first_token_timeout,
            stall_timeout=settings.stall_timeout,
            image_max_side=settings.remote_image_max_side,
        )
    from assistant.generators.transformers_backend import TransformersBackend

    return TransformersBackend(
        settings.model,
        settings.device,
        settings.dtype,
        cache_dir=paths.models,
        quantization=settings.quantization,
        offline=settings.offline,
    )


@dataclass(frozen=True)
class _EpochToken:
    engine: Engine
    epoch: int

    @property
    def cancelled(self) -> bool:
        return self.engine.epoch != self.epoch


@dataclass
class _Said:
    """A message of the conversation as shown, with what answering it again or editing it needs."""

    role: str  # "user" | "assistant"
    turn_id: int  # the front end's: a live turn's id, or ``StoredMessage.turn_id`` when reopened
    message: ChatMessage  # what the model sees of it (a question's images and camera frames included)
    stored_id: int | None = None  # in the history (None: not saved)
    failed: bool = False  # a reply that failed: neither it nor its question is part of the model's context


def _context(said: list[_Said]) -> list[ChatMessage]:
    """What the model sees of a conversation: failed turns left out, and an unanswered
    question at the end (the app was killed before the reply began)."""
    history: list[ChatMessage] = []
    for entry in said:
        if entry.role == "assistant" and entry.failed:
            if history and history[-1].role == "user":
                history.pop()  # a failed turn was never part of what the model saw
            continue
        history.append(entry.message)
    while history and history[-1].role == "user":
        history.pop()
    return history


class Engine:
    def __init__(
        self,
        settings: Settings,
        paths: AppPaths,
        emit: Callable[[Event], None],
        backend_factory: BackendFactory = default_backend_factory,
        store: HistoryStore | None = None,
        encoder: SharedEncoder | None = None,
    ) -> None:
        self.settings = settings
        self.paths = paths
        self._emit = emit
        self._factory = backend_factory
        self.backend: GeneratorBackend | None = None
        self.info: BackendInfo | None = None
        self._last_load_error: str | None = None  # what the last failed load said
        self.chat: list[ChatMessage] = []  # what the model sees of this conversation (no system prompt)
        self._said: list[_Said] = []  # the conversation as shown (failed turns too): edit and regenerate use it
        self.store = store  # where conversations are saved (None: not saved)
        self.conversation_id: int | None = None  # created with the first message of a new chat
        self._store_warned = False
        self._selector = None  # the attention-fusion stage, built on first use
        self._labeler = None  # (key, ViewLabeler): what is in view, sent with a question when asked
        # The image search model (CLIP/SigLIP), shared with search and the view labels.
        self.encoder = encoder if encoder is not None else SharedEncoder(paths.models, encoder_choice(settings))
        # Whether frame relevance may load a downloaded encoder when it is first needed (a
        # command line); the window loads it in the background and never waits for it here.
        self.encoder_loads_on_use = True
        self.recognizer: SpeechRecognizer | None = None  # Whisper, loaded with the first utterance
        self._recognizer_key: tuple | None = None
        self._recognizer_lock = threading.Lock()  # one recognition at a time, whichever thread asks
        self._selector_key: tuple | None = None
        self._epoch = 0
        self._epoch_lock = threading.Lock()

    # -- cancellation (any thread) -----------------------------------------------------

    @property
    def epoch(self) -> int:
        return self._epoch

    def cancel(self) -> int:
        """Stop the running turn (between tokens) and drop turns queued before now."""
        with self._epoch_lock:
            self._epoch += 1
            return self._epoch

    def token(self, epoch: int | None = None) -> _EpochToken:
        return _EpochToken(self, self._epoch if epoch is None else epoch)

    # -- status ------------------------------------------------------------------------

    def _status(self, state: State, detail: str = "", progress: float | None = None) -> None:
        info = self.info
        self._emit(
            StatusEvent(
                state,
                detail,
                progress,
                model=info.model if info else self.settings.generator_name,
                device=info.device if info else self.settings.generator_place,
                memory_bytes=info.memory_bytes if info else None,
                cache_bytes=self._cache_bytes(),
                dtype=info.dtype if info else "",
                quantization=info.quantization if info else "none",
            )
        )

    def _cache_bytes(self) -> int:
        """What the backend keeps between turns (any backend: the method is optional)."""
        measure = getattr(self.backend, "cache_bytes", None)
        return int(measure()) if callable(measure) else 0

    # -- loading (pipeline thread) -----------------------------------------------------

    def load(self, epoch: int | None = None, backend: GeneratorBackend | None = None) -> bool:
        """Load the model named in the settings (``backend``: one already made for them and
        prepared); report progress; never raise."""
        token = self.token(epoch)
        self.unload()
        self._status(State.LOADING, f"Loading {self.settings.generator_name}…")

        def on_progress(p: Progress) -> None:
            self._status(State.LOADING, p.detail, p.fraction)

        started = time.monotonic()
        try:
            backend = backend if backend is not None else self._factory(self.settings, self.paths)
            self.info = backend.load(on_progress, token)
            self.backend = backend
        except Cancelled:
            self._status(State.UNLOADED, "Loading was cancelled.")
            return False
        except AssistantError as exc:
            self._fail_load(str(exc))
            return False
        except Exception as exc:  # noqa: BLE001 - a load must never take the pipeline down
            from assistant.devices.compute import is_out_of_memory, out_of_memory_message

            if is_out_of_memory(exc):
                message = out_of_memory_message(self.settings.generator_name, "loading")
            else:
                log.exception("model load failed")
                message = f"Could not load model '{self.settings.generator_name}': {exc}"
            self._fail_load(message)
            return False
        log.info("loaded %s on %s in %.1f s", self.info.model, self.info.device, time.monotonic() - started)
        self._status(State.READY, "Ready")
        return True

    def _fail_load(self, message: str) -> None:
        self._last_load_error = message
        self.info = None
        self._emit(ErrorEvent(message, ErrorKind.MODEL_LOAD))
        self._status(State.ERROR, message)

    def unload(self, announce: bool = False) -> None:
        """Drop the model (and the frame selector) and free their memory (the shared image
        search model stays: search and the view labels use it; ``encoder.close()`` frees it).

        Nothing in the engine keeps a reference to the old model: once this returns,
        its weights have been collected and GPU memory handed back to the driver (in the
        window the collection runs on the GUI thread, which this waits for, at most 2 s).
        ``announce``: say so in a status event (the user asked to unload).
        """
        had_model = self.backend is not None
        backend, self.backend = self.backend, None
        self.info = None
        if backend is not None:
            backend.unload()
            del backend
        selector, self._selector, self._selector_key = self._selector, None, None
        relevance = getattr(selector, "relevance", None)
        if relevance is not None and hasattr(relevance, "close"):
            relevance.close()
        del selector, relevance
        collect()
        if announce:
            detail = "Model unloaded; the next question loads it again." if had_model else "No model was loaded."
            self._status(State.UNLOADED, detail)

    def unload_recognizer(self) -> None:
        with self._recognizer_lock:
            if self.recognizer is not None:
                self.recognizer.unload()
            self.recognizer = None
            self._recognizer_key = None

    def transcribe_if_ready(self, samples: np.ndarray) -> Transcript | None:
        """Recognize ``samples`` now if a recognizer is loaded (None otherwise), from any
        thread: what speculative recognition runs while a pause goes on."""
        with self._recognizer_lock:
            recognizer = self.recognizer
            return recognizer.transcribe(samples) if recognizer is not None else None

    # -- speech (pipeline thread) --------------------------------------------------------

    def load_recognizer(self, epoch: int | None = None) -> bool:
        """Load the speech recognizer the settings name (once); report problems; never raise."""
        from assistant.encoders.asr import make_recognizer

        settings = self.settings
        key = (settings.asr_model, settings.device, settings.asr_language)
        if self.recognizer is not None and self._recognizer_key == key:
            return True
        self.unload_recognizer()
        token = self.token(epoch)
        after = State.READY if self.backend else State.UNLOADED

        def on_progress(p: Progress) -> None:
            self._status(State.LOADING, p.detail, p.fraction)

        name = settings.asr_model or "the speech recognizer"
        self._status(State.LOADING, f"Loading {name}…")
        try:
            recognizer = make_recognizer(settings.asr_model, settings.device, "auto", self.paths.models,
                                         settings.asr_language, on_progress, token, settings.offline)
            described = recognizer.load(on_progress, token)
        except Cancelled:
            self._status(after, "Loading the speech recognizer was cancelled.")
            return False
        except AssistantError as exc:
            self._emit(ErrorEvent(f"Speech recognition is not available: {exc}", ErrorKind.SPEECH))
            self._status(after, "Speech recognition is not available.")
            return False
        except Exception as exc:  # noqa: BLE001
            log.exception("speech recognizer failed to load")
            self._emit(ErrorEvent(f"Speech recognition is not available: {exc}", ErrorKind.SPEECH))
            self._status(after, "Speech recognition is not available.")
            return False
        self.recognizer, self._recognizer_key = recognizer, key
        log.info("speech recognizer: %s", described)
        self._status(after, f"Speech recognizer ready ({described})")
        return True

    def handle_utterance(
        self,
        samples: np.ndarray,
        frames: tuple = (),
        turn_id: int | None = None,
        epoch: int | None = None,
        transcript: Transcript | None = None,
    ) -> ReplyFinished | None:
        """Transcribe one utterance (16 kHz mono int16) and answer it like a typed turn.

        Emits ``Transcribed`` first (the window shows it as the user's message),
        then everything ``handle_turn`` emits.  Nothing recognized: ``Transcribed``
        with empty text and no turn.  Never raises.  ``transcript``: these samples'
        transcript when it was already made (speculatively, during the pause).
        """
        token = self.token(epoch)
        turn_id = next_turn_id() if turn_id is None else turn_id
        if token.cancelled or (transcript is None and not self.load_recognizer(epoch)):
            return None
        after = State.READY if self.backend else State.UNLOADED
        try:
            if transcript is None:
                self._status(State.TRANSCRIBING, "Transcribing…")
                transcript = self.transcribe_if_ready(samples)  # loaded above, in this thread
                assert transcript is not None
        except AssistantError as exc:
            self._emit(ErrorEvent(str(exc), ErrorKind.SPEECH, turn_id))
            self._status(after, str(exc))
            return None
        if token.cancelled:
            self._status(after, "Stopped")
            return None
        self._emit(Transcribed(turn_id, transcript.text, transcript.audio_seconds, transcript.seconds))
        if not transcript.text:
            self._status(after, "No words were recognized in what was heard.")
            return None
        return self.handle_turn(UserTurn(transcript.text, frames=frames, id=turn_id), epoch)

    def apply_settings(self, settings: Settings, epoch: int | None = None, reload: bool = False) -> bool:
        """Use new settings; reload the model when anything it depends on changed
        (or when ``reload`` says so: a new API key for the same server)."""
        switch = settings.generator_key() != self.settings.generator_key()
        old, self.settings = self.settings, settings
        self.encoder.configure(encoder_choice(settings))
        if self._recognizer_key not in (None, (settings.asr_model, settings.device, settings.asr_language)):
            self.unload_recognizer()  # a different speech model: the next utterance loads it
        if switch and self.backend is not None:
            return self._switch(old, epoch)
        if reload or switch:
            return self.load(epoch)
        return True  # a model unloaded on purpose, or one that failed, stays so: the next question loads it

    def _switch(self, old: Settings, epoch: int | None) -> bool:
        """Another model while one is loaded: the one in use stays until the new one is known
        to load.  What can fail without memory (a mistyped name, a download, a server that does
        not answer) is tried first, with the old model still loaded; if the weights then fail to
        load, the old model is loaded again.  Either way ``ModelKept`` says so."""
        token = self.token(epoch)
        name = self.settings.generator_name
        self._status(State.LOADING, f"Getting {name} ready (the model in use stays until it is)…")

        def on_progress(p: Progress) -> None:
            self._status(State.LOADING, p.detail, p.fraction)

        try:
            candidate = self._factory(self.settings, self.paths)
            prepare = getattr(candidate, "prepare", None)  # (a backend made for tests may have none)
            if prepare is not None:
                prepare(on_progress, token)
        except Cancelled:
            self._keep(old, f"Switching to {name} was cancelled.", failed=False)
            return False
        except Exception as exc:  # noqa: BLE001 - whatever it is, the model in use stays
            if not isinstance(exc, AssistantError):
                log.exception("preparing %s failed", name)
            self._keep(old, str(exc) if isinstance(exc, AssistantError) else f"Could not load model '{name}': {exc}")
            return False
        if self.load(epoch, backend=candidate):
            return True
        failed = self._last_load_error or f"Could not load model '{name}'."
        self.settings = old
        self._emit(ModelKept(tuple((f, getattr(old, f)) for f in GENERATOR_FIELDS),
                             f"{failed} Loading {old.generator_name} again."))
        self.load(epoch)
        return False

    def _keep(self, old: Settings, message: str, failed: bool = True) -> None:
        """The switch failed before anything was unloaded: say why; the model in use stays."""
        self.settings = self.settings.replace(**{f: getattr(old, f) for f in GENERATOR_FIELDS})
        kept = f"{message} Still using {old.generator_name}."
        self._emit(ModelKept(tuple((f, getattr(old, f)) for f in GENERATOR_FIELDS), kept))
        if failed:
            self._emit(ErrorEvent(kept, ErrorKind.MODEL_LOAD))
        self._status(State.READY, "Ready")

    # -- conversation (pipeline thread) ------------------------------------------------

    def new_chat(self) -> None:
        self.chat.clear()
        self._said.clear()
        self.conversation_id = None

    # -- saved conversations (pipeline thread) --------------------------------------------

    def _store_call(self, what: str, write: Callable[[HistoryStore], T]) -> T | None:
        """One call to the store; a failure is reported once and never stops a turn."""
        if self.store is None:
            return None
        try:
            return write(self.store)
        except (HistoryError, sqlite3.Error, OSError) as exc:
            # An expected failure (a full disk): one line in the log, the traceback only when debugging.
            log.warning("history: could not %s: %s", what, exc, exc_info=log.isEnabledFor(logging.DEBUG))
            if not self._store_warned:
                self._store_warned = True
                reason = exc.reason if isinstance(exc, HistoryError) else describe_storage_error(exc)
                self._emit(ErrorEvent(f"Chat history: could not {what}: {reason}. What is on screen stays, "
                                      "but this conversation may not be saved.", ErrorKind.HISTORY))
            return None

    def list_conversations(self) -> None:
        if self.store is not None:
            items = self._store_call("list conversations", lambda s: s.list_conversations()) or []
            self._emit(ConversationsListed(tuple(items), self.conversation_id))

    def open_conversation(self, conversation_id: int) -> bool:
        """Make a saved conversation the current one: the model sees its history from now on."""
        if self.store is None:
            return False
        summary = self._store_call("open a conversation", lambda s: s.get_conversation(conversation_id))
        stored = self._store_call("open a conversation", lambda s: s.messages(conversation_id))
        if summary is None or stored is None:
            self._emit(ErrorEvent("That conversation could not be opened.", ErrorKind.HISTORY))
            return False
        said: list[_Said] = []
        for message in stored:
            if message.role not in ("user", "assistant"):
                continue
            images = []
            for image in message.images:
                try:
                    images.append(decode_image(image.path.read_bytes(), image.path.name))
                except (OSError, BadInputError):
                    log.warning("history: image %s of message %s is missing", image.sha256, message.id)
            text = with_view_labels(message.text, message.meta) if message.role == "user" else message.text
            said.append(_Said(message.role, message.turn_id, ChatMessage(message.role, text, tuple(images)),
                              message.id, failed=message.role == "assistant" and message.status == "failed"))
        self._said = said
        self.chat = _context(said)
        self.conversation_id = conversation_id
        self._emit(ConversationOpened(conversation_id, summary.title, tuple(stored)))
        return True

    def rename_conversation(self, conversation_id: int, title: str) -> None:
        self._store_call("rename", lambda s: s.rename_conversation(conversation_id, title))
        self.list_conversations()

    def delete_conversation(self, conversation_id: int) -> None:
        self._store_call("delete", lambda s: s.delete_conversation(conversation_id))
        if conversation_id == self.conversation_id:
            self.new_chat()
            self._emit(ConversationOpened(None, "", ()))
        self.list_conversations()

    def export_conversation(self, conversation_id: int, fmt: str, destination: Path) -> Path | None:
        """Write a conversation as Markdown (a folder: .md plus images/) or JSON (a file)."""
        from assistant.files import atomic_write
        from assistant.store.export import export_json, export_markdown

        def write(store: HistoryStore) -> Path:
            if fmt == "md":
                return export_markdown(store, conversation_id, destination)
            atomic_write(destination, json.dumps(export_json(store, conversation_id), ensure_ascii=False, indent=1).encode())
            return destination

        path = self._store_call("export", write)
        if path is not None:
            self._status(State.READY if self.backend else State.UNLOADED, f"Exported to {path}")
        return path

    def import_conversation(self, source: Path) -> int | None:
        from assistant.store.export import import_json

        try:
            data = json.loads(source.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            self._emit(ErrorEvent(f"'{source.name}' could not be imported: {exc}", ErrorKind.HISTORY))
            return None
        try:
            conversation_id = import_json(self.store, data) if self.store is not None else None
        except HistoryError as exc:
            self._emit(ErrorEvent(f"'{source.name}' could not be imported: {exc}", ErrorKind.HISTORY))
            return None
        if conversation_id is not None:
            self.list_conversations()
            self.open_conversation(conversation_id)
        return conversation_id

    def search(self, query: str) -> None:
        hits = self._store_call("search", lambda s: s.search(query)) if query.strip() else []
        self._emit(SearchResults(query, tuple(hits or ())))

    def _messages(self, history: list[ChatMessage]) -> list[ChatMessage]:
        system = self.settings.system_prompt.strip()
        return ([ChatMessage("system", system)] if system else []) + history

    def handle_turn(self, turn: UserTurn, epoch: int | None = None) -> ReplyFinished | None:
        """Answer one user turn, streaming ``TokenChunk`` events; never raise.

        Every turn ends in exactly one terminal event: ``ReplyFinished`` (``stopped``
        with no text when it was cancelled before it started) or ``ErrorEvent``.
        Returns the finished reply, or None when the turn failed or never started.
        """
        token = self.token(epoch)
        if token.cancelled:  # stopped while it waited in the queue: it still ends, once
            self._emit(ReplyFinished(turn.id, "", stopped=True))
            return None
        try:
            if not turn.text.strip() and not turn.images and not turn.frames:
                raise BadInputError("There is nothing to send: type a question or attach an image.")
            encoded = [read_image_bytes(image) for image in turn.images]
            images = tuple(
                image.decoded if image.decoded is not None else decode_image(data, image.name)
                for data, image in zip(encoded, turn.images)
            )
        except BadInputError as exc:
            self._emit(ErrorEvent(str(exc), ErrorKind.BAD_INPUT, turn.id))
            self._status(State.READY if self.backend else State.ERROR, str(exc))
            return None
        meta = None
        if turn.frames:  # attention fusion: which of the recent camera frames go with the question
            try:
                chosen = self._select_frames(turn)
                images += tuple(PILImage.fromarray(choice.frame.image) for choice in chosen)
                encoded += [encode_jpeg(choice.frame.image) for choice in chosen]
            except Exception as exc:  # noqa: BLE001 - a turn never raises, whatever the frames hold
                log.exception("camera frames could not be used")
                message = f"The camera frames could not be used ({short_message(exc)}); ask again without the camera."
                self._emit(ErrorEvent(message, ErrorKind.BAD_INPUT, turn.id))
                self._status(State.READY if self.backend else State.UNLOADED, message)
                return None
            meta = {"frames": [{"t": round(c.frame.t, 3), "weight": round(c.weight, 4)} for c in chosen]}
            seen = self._labels_for(chosen)
            if seen:
                meta["view_labels"] = [[label, round(score, 3)] for label, score in seen]
        # Saved before the model runs: a crash mid-reply never loses the question.
        new_conversation = self.conversation_id is None
        if new_conversation:
            self.conversation_id = self._store_call("start a conversation", lambda s: s.create_conversation())
        conversation = self.conversation_id
        question_id = None
        if conversation is not None:
            question_id = self._store_call(
                "save the question", lambda s: s.add_message(conversation, "user", turn.text, encoded, meta=meta)
            )
            if new_conversation:
                self.list_conversations()
        user = ChatMessage("user", with_view_labels(turn.text, meta), images)
        self._said.append(_Said("user", turn.id, user, question_id))
        return self._reply(turn.id, user, list(self.chat), conversation, epoch)

    def regenerate(self, reply_turn_id: int, turn_id: int, epoch: int | None = None) -> ReplyFinished | None:
        """Answer the last question again, in place of its reply (the one shown under
        ``reply_turn_id``), streaming under the new ``turn_id``; never raises.

        With a history the new reply is saved as a new version of the old one (both stay,
        ``MessageVersions`` says which is shown); the model's context holds the new one.
        Ends in exactly one ``ReplyFinished`` or ``ErrorEvent`` for ``turn_id``.
        """
        if self.token(epoch).cancelled:
            self._emit(ReplyFinished(turn_id, "", stopped=True))
            return None
        said = self._said
        if len(said) < 2 or said[-1].role != "assistant" or said[-1].turn_id != reply_turn_id or said[-2].role != "user":
            return self._refuse(turn_id, "Only the last reply can be answered again.")
        old, question = said.pop(), said[-1]
        history = _context(said[:-1])
        return self._reply(turn_id, question.message, history, self.conversation_id, epoch, version_of=old.stored_id)

    def edit(self, question_turn_id: int, turn: UserTurn, epoch: int | None = None) -> ReplyFinished | None:
        """Ask the question shown under ``question_turn_id`` again with ``turn.text``, in place
        of it and of everything that followed it, and answer it (streaming under ``turn.id``);
        never raises.  The question keeps its images and camera frames (``turn.images`` are not
        used).  The model's context is cut where the question was; with a history the edited
        question is saved as a new version of the old one, which stays with what followed it.
        Ends in exactly one ``ReplyFinished`` or ``ErrorEvent`` for ``turn.id``.
        """
        if self.token(epoch).cancelled:
            self._emit(ReplyFinished(turn.id, "", stopped=True))
            return None
        at = next((i for i, s in enumerate(self._said) if s.role == "user" and s.turn_id == question_turn_id), None)
        if at is None:
            return self._refuse(turn.id, "That question is no longer part of this conversation, so it cannot be edited.")
        old = self._said[at]
        if not turn.text.strip() and not old.message.images:
            return self._refuse(turn.id, "There is nothing to send: type a question.")
        conversation = self.conversation_id
        question_id = None
        if conversation is not None:
            text = turn.text
            if old.stored_id is not None:
                question_id = self._store_call("save the edited question", lambda s: s.add_version(old.stored_id, text))
            else:  # its first save failed: it goes at the end, as a new question
                question_id = self._store_call("save the edited question",
                                               lambda s: s.add_message(conversation, "user", text))
        user = ChatMessage("user", turn.text, old.message.images)
        del self._said[at:]
        history = _context(self._said)
        self._said.append(_Said("user", turn.id, user, question_id))
        self._announce_versions(turn.id, "user", question_id)
        self.list_conversations()
        return self._reply(turn.id, user, history, conversation, epoch)

    def show_version(self, role: str, turn_id: int, step: int) -> bool:
        """Show the previous (``step`` -1) or next (+1) version of the message shown under
        ``turn_id``: the conversation is opened again with it (``ConversationOpened``), and
        what followed that version when it was shown follows it again.  The model's context
        is the conversation shown.  False (and an error event) when there is no such version."""
        entry = next((s for s in self._said if s.role == role and s.turn_id == turn_id), None)
        conversation = self.conversation_id
        if entry is None or entry.stored_id is None or conversation is None or self.store is None:
            self._emit(ErrorEvent("That message has no other versions.", ErrorKind.HISTORY))
            return False
        stored_id = entry.stored_id
        versions = self._store_call("read the versions", lambda s: s.versions(stored_id)) or []
        index = versions.index(stored_id) + step if stored_id in versions else -1
        if not 0 <= index < len(versions):
            self._emit(ErrorEvent("That message has no other versions.", ErrorKind.HISTORY))
            return False
        self._store_call("choose the version", lambda s: s.select_version(versions[index]))
        return self.open_conversation(conversation)

    def _announce_versions(self, turn_id: int, role: str, stored_id: int | None) -> None:
        if stored_id is None:
            return
        versions = self._store_call("read the versions", lambda s: s.versions(stored_id)) or []
        if stored_id in versions:
            self._emit(MessageVersions(turn_id, role, versions.index(stored_id) + 1, len(versions)))

    def _refuse(self, turn_id: int, message: str) -> None:
        self._emit(ErrorEvent(message, ErrorKind.BAD_INPUT, turn_id))
        self._status(State.READY if self.backend else State.UNLOADED, message)
        return None

    def _reply(
        self,
        turn_id: int,
        user: ChatMessage,
        history: list[ChatMessage],
        conversation: int | None,
        epoch: int | None,
        version_of: int | None = None,
    ) -> ReplyFinished | None:
        """Answer ``user`` after ``history`` (streaming under ``turn_id``), save the reply (as a
        new version of the saved reply ``version_of``, when given) and make it the model's context."""
        token = self.token(epoch)
        said = _Said("assistant", turn_id, ChatMessage("assistant", ""), failed=True)
        self._said.append(said)
        if self.backend is None and not self.load(epoch):
            message = "No model is loaded, so the question was not answered."
            said.stored_id = self._save_reply(conversation, "", "failed", message, version_of=version_of)
            self._emit(ErrorEvent(message, ErrorKind.MODEL_LOAD, turn_id))
            return None
        backend = self.backend
        assert backend is not None

        self._status(State.THINKING, "Thinking…")
        started = time.monotonic()
        first: list[float] = []
        parts: list[str] = []
        saver = StreamingSave(self, conversation, version_of)

        def on_text(text: str) -> None:
            if not first:
                first.append(time.monotonic() - started)
                self._status(State.GENERATING, "Answering…")
            parts.append(text)
            self._emit(TokenChunk(turn_id, text))
            saver.grew(parts)

        params = GenerationParams(self.settings.max_new_tokens, self.settings.temperature, self.settings.image_detail)
        while True:
            try:
                result = backend.generate(self._messages(history + [user]), params, on_text, token)
                break
            except PromptTooLongError:
                if not history:
                    too_long = BadInputError("This message is too long for the model's context window.")
                    return self._fail_turn(turn_id, too_long, "", conversation, said=said, version_of=version_of)
                history = history[2:]  # forget the oldest exchange and try again
            except AssistantError as exc:
                return self._fail_turn(turn_id, exc, "".join(parts), conversation, saver.message_id, said, version_of)
            except Exception as exc:  # noqa: BLE001
                from assistant.devices.compute import is_out_of_memory, out_of_memory_message

                if is_out_of_memory(exc):
                    failure = GenerationError(out_of_memory_message(self.settings.model, "answering with"))
                else:
                    log.exception("unexpected generation failure")
                    failure = GenerationError(f"The model failed while answering: {exc}")
                return self._fail_turn(turn_id, failure, "".join(parts), conversation, saver.message_id, said,
                                       version_of)
        reply_text = result.text
        if not reply_text and not result.stopped:  # an answer of nothing is a fault, not a reply to show blank
            return self._fail_turn(turn_id, GenerationError(EMPTY_ANSWER), "", conversation, saver.message_id, said,
                                   version_of)
        said.message, said.failed = ChatMessage("assistant", reply_text), False
        self.chat = history + [user, said.message]
        said.stored_id = self._save_reply(conversation, reply_text, "stopped" if result.stopped else "complete",
                                          message_id=saver.message_id, version_of=version_of)
        if version_of is not None:
            self._announce_versions(turn_id, "assistant", said.stored_id)
        reply = ReplyFinished(
            turn_id,
            reply_text,
            stopped=result.stopped,
            tokens=result.tokens,
            seconds=time.monotonic() - started,
            first_token_seconds=first[0] if first else None,
        )
        self._emit(reply)
        self._status(State.READY, "Stopped" if result.stopped else "Ready")
        return reply

    def _select_frames(self, turn: UserTurn) -> tuple:
        from assistant.fusion.attention import FrameSelector
        from assistant.fusion.relevance import ClipRelevance

        settings = self.settings
        encoder = self._frame_encoder()
        key = (settings.camera_frames, settings.attention_temperature, id(encoder) if encoder else None)
        if self._selector is None or self._selector_key != key:
            relevance = ClipRelevance(encoder) if encoder is not None else None
            self._selector = FrameSelector(settings.camera_frames, settings.attention_temperature, relevance=relevance)
            self._selector_key = key
        result = self._selector.select(turn.frames, turn.text)
        chosen = tuple(result.chosen)
        self._emit(FramesChosen(turn.id, chosen, len(turn.frames)))
        return chosen

    def _labels_for(self, chosen: tuple) -> list[tuple[str, float]]:
        """What is in view in the question's main frame (the one with the most weight), named
        from the user's labels, when the settings say to send it; [] otherwise or when the
        image search model is not ready (a reply never waits for it)."""
        if not self.settings.labels_with_question or not chosen:
            return []
        from assistant.fusion.view_labels import ViewLabeler
        from assistant.settings import parse_labels

        encoder = self._frame_encoder()
        if encoder is None:
            return []
        key = (id(encoder), self.settings.view_label_list)
        if self._labeler is None or self._labeler[0] != key:
            self._labeler = (key, ViewLabeler(encoder, parse_labels(self.settings.view_label_list)))
        main = max(chosen, key=lambda c: c.weight)
        try:
            return self._labeler[1].label(main.frame.image)
        except Exception:  # noqa: BLE001 - context is a bonus: the question goes without it
            log.exception("view labels failed")
            return []

    def _frame_encoder(self):
        """The shared image search model for frame relevance, if it is on and can be had
        without waiting for a download (None: frames are chosen without the question)."""
        encoder = self.encoder.get()
        if encoder is not None or not self.encoder_loads_on_use or not self.encoder.choice.on:
            return encoder
        if self.encoder.failure() is not None or not self.encoder.is_downloaded():
            return None  # not downloaded: the search panel offers it; a failure was said once
        try:
            return self.encoder.load(download=False)
        except AssistantError as exc:
            self._emit(ErrorEvent(f"{exc} Frames are chosen by sharpness, novelty and recency.", ErrorKind.MODEL_LOAD))
            return None

    def save_unanswered(self, turn: UserTurn, reason: str) -> None:
        """A question that could not be asked at all (its model or server could not be loaded):
        kept in the history with a failed reply that says why, so asking again is one click away."""
        try:
            encoded = [read_image_bytes(image) for image in turn.images]
        except BadInputError:
            encoded = []
        if self.conversation_id is None:
            self.conversation_id = self._store_call("start a conversation", lambda s: s.create_conversation())
        conversation = self.conversation_id
        if conversation is not None:
            self._store_call("save the question", lambda s: s.add_message(conversation, "user", turn.text, encoded))
            self._save_reply(conversation, "", "failed", reason)

    def _save_reply(
        self, conversation: int | None, text: str, status: str, error: str = "", message_id: int | None = None,
        version_of: int | None = None,
    ) -> int | None:
        """The reply, finished: written over what was saved while it streamed (``message_id``), or
        added (as a new version of the saved reply ``version_of``, when given); returns its id."""
        if conversation is None:
            return None
        meta = {"error": error} if error else {}
        if message_id is not None:
            self._store_call("save the reply", lambda s: s.update_message(message_id, text, status, meta))
        elif version_of is not None:
            message_id = self._store_call("save the reply", lambda s: s.add_version(version_of, text, (), status, meta))
        else:
            message_id = self._store_call(
                "save the reply", lambda s: s.add_message(conversation, "assistant", text, (), status, meta))
        self.list_conversations()  # its "updated" time moved: the sidebar order changes
        return message_id

    def _fail_turn(
        self, turn_id: int, exc: AssistantError, partial: str, conversation: int | None = None,
        message_id: int | None = None, said: _Said | None = None, version_of: int | None = None,
    ) -> None:
        stored_id = self._save_reply(conversation, partial, "failed", str(exc), message_id, version_of)
        if said is not None:
            said.message, said.stored_id = ChatMessage("assistant", partial), stored_id
            if version_of is not None:
                self._announce_versions(turn_id, "assistant", stored_id)
        kind = ErrorKind.BAD_INPUT if isinstance(exc, BadInputError) else ErrorKind.GENERATION
        if isinstance(exc, ModelLoadError):
            kind = ErrorKind.MODEL_LOAD
        self._emit(ErrorEvent(str(exc), kind, turn_id, partial_text=partial))
        self._status(State.READY, str(exc))
        return None
