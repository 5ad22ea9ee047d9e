"""Spoken questions: the speech recognizer (Whisper), loaded with the first utterance."""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from assistant.errors import AssistantError, Cancelled
from assistant.events import ErrorEvent, ErrorKind, ReplyFinished, State, Transcribed, UserTurn, next_turn_id
from assistant.progress import Progress
from assistant.settings import AppPaths, Settings

if TYPE_CHECKING:
    import numpy as np

    from assistant.encoders.asr import SpeechRecognizer, Transcript

log = logging.getLogger(__name__)


class SpeechInput:
    """The speech recognizer and spoken turns (a part of ``Engine``).  Recognition runs one at a
    time, from whichever thread asks; loading runs in the pipeline thread."""

    settings: Settings
    paths: AppPaths
    recognizer: SpeechRecognizer | None
    _recognizer_key: tuple | None
    _recognizer_lock: threading.Lock

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

