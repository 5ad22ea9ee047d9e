"""``Engine``: turns, one at a time: a question in (typed, spoken, with images or camera
frames), a streamed reply out; answering again and editing; cancellation by epoch."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from PIL import Image as PILImage

from assistant.encoders.images import decode_image, encode_jpeg, read_image_bytes
from assistant.encoders.shared import SharedEncoder
from assistant.engine.camera_context import CameraContext
from assistant.engine.loading import BackendFactory, ModelLoading, default_backend_factory, encoder_choice
from assistant.engine.said import Said, model_context, with_view_labels
from assistant.engine.saved import SavedConversations
from assistant.engine.speech import SpeechInput
from assistant.engine.streaming_save import StreamingSave
from assistant.errors import AssistantError, BadInputError, GenerationError, ModelLoadError, short_message
from assistant.events import ErrorEvent, ErrorKind, Event, ReplyFinished, State, StatusEvent, TokenChunk, UserTurn
from assistant.generators.base import (
    BackendInfo,
    ChatMessage,
    GenerationParams,
    GeneratorBackend,
    PromptTooLongError,
)
from assistant.settings import AppPaths, Settings

if TYPE_CHECKING:
    from assistant.encoders.asr import SpeechRecognizer
    from assistant.store.history import HistoryStore

log = logging.getLogger(__name__)

EMPTY_ANSWER = ("The model ended its answer without writing anything. Ask again or rephrase; if it keeps "
                "happening, its files may be damaged (download it again on the Models page).")


@dataclass(frozen=True)
class _EpochToken:
    engine: Engine
    epoch: int

    @property
    def cancelled(self) -> bool:
        return self.engine.epoch != self.epoch


class Engine(ModelLoading, SpeechInput, SavedConversations, CameraContext):
    """The pipeline's worker: one conversation, its model and its history; every part of it
    (``ModelLoading``, ``SpeechInput``, ``SavedConversations``, ``CameraContext``) runs in the
    thread that calls ``handle_turn``, except ``cancel`` and ``transcribe_if_ready`` (any thread)."""

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
        self._said: list[Said] = []  # the conversation as shown (failed turns too): edit and regenerate use it
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

    # -- conversation (pipeline thread) ------------------------------------------------

    def new_chat(self) -> None:
        self.chat.clear()
        self._said.clear()
        self.conversation_id = None

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
        self._said.append(Said("user", turn.id, user, question_id))
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
        history = model_context(said[:-1])
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
        history = model_context(self._said)
        self._said.append(Said("user", turn.id, user, question_id))
        self._announce_versions(turn.id, "user", question_id)
        self.list_conversations()
        return self._reply(turn.id, user, history, conversation, epoch)

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
        said = Said("assistant", turn_id, ChatMessage("assistant", ""), failed=True)
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

    def _fail_turn(
        self, turn_id: int, exc: AssistantError, partial: str, conversation: int | None = None,
        message_id: int | None = None, said: Said | None = None, version_of: int | None = None,
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
