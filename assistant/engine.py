"""The pipeline: one long-lived worker that owns the model and handles turns one at a time.

``Engine`` is plain Python.  Whoever hosts it (the Qt bridge's QThread, or the
command line) calls ``load`` and ``handle_turn`` from one thread, and may call
``cancel`` from any thread.  Everything the engine has to say goes to the
``emit`` callback as immutable events (see ``messages``).

Cancellation is an epoch counter: ``cancel()`` bumps it, and every piece of
work remembers the epoch it was submitted under.  Work whose epoch is stale
stops between tokens, and turns queued before a Stop are dropped unstarted.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from .backends.base import (
    BackendInfo,
    ChatMessage,
    GenerationParams,
    GeneratorBackend,
    Progress,
    PromptTooLongError,
)
from .errors import AssistantError, BadInputError, Cancelled, GenerationError, ModelLoadError
from .images import load_image
from .messages import (
    ErrorEvent,
    ErrorKind,
    Event,
    ReplyFinished,
    State,
    StatusEvent,
    TokenChunk,
    UserTurn,
)
from .settings import AppPaths, Settings

log = logging.getLogger(__name__)

BackendFactory = Callable[[Settings, AppPaths], GeneratorBackend]


def default_backend_factory(settings: Settings, paths: AppPaths) -> GeneratorBackend:
    from .backends.transformers_backend import TransformersBackend

    return TransformersBackend(settings.model, settings.device, settings.dtype, cache_dir=paths.models)


@dataclass(frozen=True)
class _EpochToken:
    engine: Engine
    epoch: int

    @property
    def cancelled(self) -> bool:
        return self.engine.epoch != self.epoch


class Engine:
    def __init__(
        self,
        settings: Settings,
        paths: AppPaths,
        emit: Callable[[Event], None],
        backend_factory: BackendFactory = default_backend_factory,
    ) -> None:
        self.settings = settings
        self.paths = paths
        self._emit = emit
        self._factory = backend_factory
        self.backend: GeneratorBackend | None = None
        self.info: BackendInfo | None = None
        self.history: list[ChatMessage] = []  # the conversation so far, without the system prompt
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
                model=info.model if info else self.settings.model,
                device=info.device if info else self.settings.device,
            )
        )

    # -- loading (pipeline thread) -----------------------------------------------------

    def load(self, epoch: int | None = None) -> bool:
        """Load the model named in the settings; report progress; never raise."""
        token = self.token(epoch)
        self.unload()
        self._status(State.LOADING, f"Loading {self.settings.model}…")

        def on_progress(p: Progress) -> None:
            self._status(State.LOADING, p.detail, p.fraction)

        started = time.monotonic()
        try:
            backend = self._factory(self.settings, self.paths)
            self.info = backend.load(on_progress, token)
            self.backend = backend
        except Cancelled:
            self._status(State.UNLOADED, "Loading was cancelled.")
            return False
        except AssistantError as exc:
            self._fail_load(str(exc))
            return False
        except Exception as exc:  # noqa: BLE001 - a load must never take the pipeline down
            log.exception("model load failed")
            self._fail_load(f"Could not load model '{self.settings.model}': {exc}")
            return False
        log.info("loaded %s on %s in %.1f s", self.info.model, self.info.device, time.monotonic() - started)
        self._status(State.READY, "Ready")
        return True

    def _fail_load(self, message: str) -> None:
        self.info = None
        self._emit(ErrorEvent(message, ErrorKind.MODEL_LOAD))
        self._status(State.ERROR, message)

    def unload(self) -> None:
        if self.backend is not None:
            self.backend.unload()
        self.backend = None
        self.info = None

    def apply_settings(self, settings: Settings, epoch: int | None = None) -> bool:
        """Use new settings; reload the model when anything it depends on changed."""
        reload = (settings.model, settings.device, settings.dtype) != (
            self.settings.model,
            self.settings.device,
            self.settings.dtype,
        )
        self.settings = settings
        if reload or self.backend is None:
            return self.load(epoch)
        return True

    # -- conversation (pipeline thread) ------------------------------------------------

    def new_chat(self) -> None:
        self.history.clear()

    def _messages(self, history: list[ChatMessage]) -> list[ChatMessage]:
        system = self.settings.system_prompt.strip()
        return ([ChatMessage("system", system)] if system else []) + history

    def handle_turn(self, turn: UserTurn, epoch: int | None = None) -> ReplyFinished | None:
        """Answer one user turn, streaming ``TokenChunk`` events; never raise.

        Returns the finished reply, or None when the turn failed (an ``ErrorEvent``
        says why) or was cancelled before it started.
        """
        token = self.token(epoch)
        if token.cancelled:
            return None  # stopped while it waited in the queue
        try:
            if not turn.text.strip() and not turn.images:
                raise BadInputError("There is nothing to send: type a question or attach an image.")
            images = tuple(load_image(image) for image in turn.images)
        except BadInputError as exc:
            self._emit(ErrorEvent(str(exc), ErrorKind.BAD_INPUT, turn.id))
            self._status(State.READY if self.backend else State.ERROR, str(exc))
            return None
        if self.backend is None and not self.load(epoch):
            self._emit(ErrorEvent("No model is loaded, so the question was not answered.", ErrorKind.MODEL_LOAD, turn.id))
            return None
        backend = self.backend
        assert backend is not None

        self._status(State.THINKING, "Thinking…")
        user = ChatMessage("user", turn.text, images)
        history = list(self.history)
        started = time.monotonic()
        first: list[float] = []
        parts: list[str] = []

        def on_text(text: str) -> None:
            if not first:
                first.append(time.monotonic() - started)
                self._status(State.GENERATING, "Answering…")
            parts.append(text)
            self._emit(TokenChunk(turn.id, text))

        params = GenerationParams(self.settings.max_new_tokens, self.settings.temperature)
        while True:
            try:
                result = backend.generate(self._messages(history + [user]), params, on_text, token)
                break
            except PromptTooLongError:
                if not history:
                    return self._fail_turn(turn, BadInputError("This message is too long for the model's context window."), "")
                history = history[2:]  # forget the oldest exchange and try again
            except AssistantError as exc:
                return self._fail_turn(turn, exc, "".join(parts))
            except Exception as exc:  # noqa: BLE001
                log.exception("unexpected generation failure")
                return self._fail_turn(turn, GenerationError(f"The model failed while answering: {exc}"), "".join(parts))
        reply_text = result.text
        self.history = history + [user, ChatMessage("assistant", reply_text)]
        reply = ReplyFinished(
            turn.id,
            reply_text,
            stopped=result.stopped,
            tokens=result.tokens,
            seconds=time.monotonic() - started,
            first_token_seconds=first[0] if first else None,
        )
        self._emit(reply)
        self._status(State.READY, "Stopped" if result.stopped else "Ready")
        return reply

    def _fail_turn(self, turn: UserTurn, exc: AssistantError, partial: str) -> None:
        kind = ErrorKind.BAD_INPUT if isinstance(exc, BadInputError) else ErrorKind.GENERATION
        if isinstance(exc, ModelLoadError):
            kind = ErrorKind.MODEL_LOAD
        self._emit(ErrorEvent(str(exc), kind, turn.id, partial_text=partial))
        self._status(State.READY, str(exc))
        return None
