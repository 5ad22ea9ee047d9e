"""A session: what every front end does with the engine, written once.

The window, ``--ask``, ``--chat`` and ``--headless`` all hold
one ``Session``.  It owns the ``Engine`` (the models, one turn at a time), the
assistant's voice (``VoiceOut``) and the listening thread (``VoiceIn``), and wires
them the same way for everyone:

* **tokens → view and speech**: every engine event goes to the front end's
  ``on_event``; reply text is also fed to the voice, and a reply that ends (or
  fails) has its last sentence spoken;
* **stop → silence**: ``stop()`` cancels the running turn and any queued ones (the
  engine's epoch) and silences the voice, including the replies still queued;
  a new question (``begin_turn``) silences the answer being read out;
* **utterance → turn**: ``answer_utterance`` transcribes and answers what was said;
  ``listen`` opens the microphone with half-duplex muting tied to this voice.

Threads: ``load``, ``answer``, ``answer_utterance``, ``apply_settings`` and
``unload`` run in the one thread that owns the engine (the window's pipeline
thread, or the command line's main thread).  ``stop``, ``silence``,
``interrupt_speech``, ``begin_turn``/``end_turn`` and ``microphone_muted`` are safe
from any thread.  ``listen``, ``stop_listening``, ``follow_settings`` and the
``close`` calls belong to the front end's own thread (the GUI thread, or the
command line's main thread).  Nothing here imports Qt.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from assistant.devices.playback_tap import PlaybackTap, TappedSpeaker
from assistant.devices.timeline import Timeline
from assistant.encoders.echo import make_echo_canceller
from assistant.engine import BackendFactory, Engine, default_backend_factory
from assistant.events import ErrorEvent, Event, ReplyFinished, TokenChunk, UserTurn
from assistant.settings import AppPaths, Settings

if TYPE_CHECKING:
    import numpy as np

    from assistant.devices.microphone import Microphone
    from assistant.devices.speaker import Speaker
    from assistant.encoders.listener import ListenEvent, VoiceIn
    from assistant.encoders.speculation import SpeculativeTranscriber
    from assistant.encoders.vad import Utterance
    from assistant.speech.voice_out import SpeechEvent, VoiceOut
    from assistant.store.history import HistoryStore

log = logging.getLogger(__name__)

HALF_DUPLEX_TAIL = 0.4  # seconds after the voice falls silent that a live microphone stays muted


class Session:
    def __init__(
        self,
        settings: Settings,
        paths: AppPaths,
        on_event: Callable[[Event], None],
        *,
        speaker: Speaker | None = None,
        speak: bool | None = None,
        on_speech: Callable[[SpeechEvent], None] = lambda e: None,
        store: HistoryStore | None = None,
        backend_factory: BackendFactory = default_backend_factory,
        tap: PlaybackTap | None = None,
    ) -> None:
        """``on_event`` gets every engine event (in the engine's thread); ``speaker``:
        where replies are spoken (None: not spoken); ``speak``: speak at first (None:
        as the settings say; a speaker named on the command line always speaks);
        ``on_speech`` gets the voice's events (in the speech thread); ``tap``: where what
        the speaker plays is noted (a simulated room's, so the room and echo cancellation
        hear the same thing on one timeline; default: a new one)."""
        self.settings = settings
        self._on_event = on_event
        self._pending: set[int] = set()  # turns asked and not yet finished
        self._waiting_utterance: int | None = None  # the one utterance queued behind the reply in progress
        self._superseded: set[int] = set()  # utterances replaced by a newer one before they started
        self._lock = threading.Lock()
        self.voice: VoiceOut | None = None
        # What the speaker plays, on the timeline the microphone shares: the echo's reference.
        self.tap: PlaybackTap | None = tap if tap is not None or speaker is None else PlaybackTap(Timeline())
        self.timeline = self.tap.timeline if self.tap is not None else Timeline()
        if speaker is not None:
            assert self.tap is not None
            speaker = TappedSpeaker(speaker, self.tap)
            from assistant.speech import voice_out  # only a session that speaks loads the speech stage

            self.voice = voice_out.VoiceOut(
                speaker,
                on_speech,
                voice=settings.voice,
                rate=settings.speech_rate,
                volume=settings.speech_volume,
                enabled=settings.speak_replies if speak is None else speak,
            )
            self.voice.start()
        self.listener: VoiceIn | None = None
        self.listening_mode = "off"  # "echo cancellation", "half-duplex" or "open" (headphones), once listening
        self._ending_listeners: list[VoiceIn] = []  # stopped, their threads not yet joined
        self._speculation: SpeculativeTranscriber | None = None  # recognition started during pauses
        self.engine = Engine(settings, paths, self._route, backend_factory, store)

    # -- engine events → the front end and the voice (engine thread) -------------------------

    def _route(self, event: Event) -> None:
        voice = self.voice
        if voice is not None:
            if isinstance(event, TokenChunk):
                voice.feed(event.turn_id, event.text)
            elif isinstance(event, (ReplyFinished, ErrorEvent)) and event.turn_id is not None:
                voice.end_reply(event.turn_id)
        self._on_event(event)

    # -- turns (the engine's thread) ----------------------------------------------------------

    def load(self, epoch: int | None = None) -> bool:
        """Load the generator the settings name; False (and an error event) when it cannot."""
        return self.engine.load(epoch)

    def load_recognizer(self, epoch: int | None = None) -> bool:
        """Load the speech recognizer (once), before the first utterance needs it."""
        return self.engine.load_recognizer(epoch)

    def unload(self) -> None:
        """Drop the generator from memory, on the user's request; the next question loads it again."""
        self.engine.unload(announce=True)

    def answer(self, turn: UserTurn, epoch: int | None = None) -> ReplyFinished | None:
        """Answer a typed (or pasted, or camera) question; see ``Engine.handle_turn``."""
        return self.engine.handle_turn(turn, epoch)

    def regenerate(self, reply_turn_id: int, turn_id: int, epoch: int | None = None) -> ReplyFinished | None:
        """Answer the last question again, in place of the reply shown under ``reply_turn_id``;
        see ``Engine.regenerate``."""
        return self.engine.regenerate(reply_turn_id, turn_id, epoch)

    def edit(self, question_turn_id: int, turn: UserTurn, epoch: int | None = None) -> ReplyFinished | None:
        """Ask an earlier question again with new text, in place of it and what followed; see ``Engine.edit``."""
        return self.engine.edit(question_turn_id, turn, epoch)

    def show_version(self, role: str, turn_id: int, step: int) -> bool:
        """Show another version of an edited question or a regenerated reply; see ``Engine.show_version``."""
        return self.engine.show_version(role, turn_id, step)

    def answer_utterance(
        self, samples: np.ndarray, frames: tuple = (), turn_id: int | None = None, epoch: int | None = None
    ) -> ReplyFinished | None:
        """Transcribe what was said and answer it; see ``Engine.handle_utterance``.  An utterance
        that ``offer_utterance`` replaced by a newer one is skipped (None, nothing emitted)."""
        with self._lock:
            if turn_id in self._superseded:
                self._superseded.discard(turn_id)
                return None
            if self._waiting_utterance == turn_id:
                self._waiting_utterance = None
        speculation = self._speculation
        transcript = speculation.take(samples) if speculation is not None else None
        return self.engine.handle_utterance(samples, frames, turn_id, epoch, transcript)

    def new_chat(self) -> None:
        """Start a new conversation (the one before stays saved)."""
        self.engine.new_chat()

    def apply_settings(self, settings: Settings, epoch: int | None = None, reload: bool = False) -> bool:
        """New settings for the models (reloaded when they changed); see ``Engine.apply_settings``."""
        return self.engine.apply_settings(settings, epoch, reload)

    # -- turn bookkeeping and stopping (any thread) --------------------------------------------

    def offer_utterance(self, turn_id: int) -> bool:
        """An utterance is about to be queued for ``answer_utterance``.  Hands-free speech never
        piles up: at most one utterance waits behind the reply in progress, and a newer one
        replaces it.  True when an older waiting utterance was dropped for this one."""
        with self._lock:
            older, self._waiting_utterance = self._waiting_utterance, turn_id
            if older is not None:
                self._superseded.add(older)
            return older is not None

    def begin_turn(self, turn_id: int) -> None:
        """A question was asked: it interrupts the spoken answer to the last one."""
        self.silence()
        with self._lock:
            self._pending.add(turn_id)

    def end_turn(self, turn_id: int) -> None:
        with self._lock:
            self._pending.discard(turn_id)

    @property
    def busy(self) -> bool:
        """A turn was asked and has not ended."""
        with self._lock:
            return bool(self._pending)

    def stop(self) -> int:
        """Stop the reply being generated (between two tokens), the turns queued behind
        it, and speech; returns the new epoch (work submitted under it is not stale)."""
        epoch = self.engine.cancel()
        self.silence()
        return epoch

    def silence(self) -> None:
        """Silence the voice now: the reply being read, and every turn still pending, stay silent."""
        if self.voice is not None:
            with self._lock:
                pending = set(self._pending)
            self.voice.stop(silence=pending)

    def interrupt_speech(self) -> None:
        """Silence the spoken reply now; the text goes on."""
        if self.voice is not None:
            self.voice.stop()

    def follow_settings(self, settings: Settings) -> None:
        """Take new settings for the voice (on/off, voice, rate, volume: at once) and for
        the next ``listen``.  The models take theirs in the engine's thread (``apply_settings``)."""
        old, self.settings = self.settings, settings
        voice = self.voice
        if voice is None:
            return
        voice.set_enabled(settings.speak_replies)
        voice.set_volume(settings.speech_volume)
        if settings.voice != old.voice:
            voice.set_voice(settings.voice)
        if settings.speech_rate != old.speech_rate:
            voice.set_rate(settings.speech_rate)

    def wait_spoken(self, timeout: float = 600.0) -> bool:
        """Wait until everything queued for speech has been played (True at once without a voice)."""
        return self.voice.wait_idle(timeout=timeout) if self.voice is not None else True

    # -- listening (the front end's thread) ------------------------------------------------------

    def listen(
        self,
        mic: Microphone,
        on_utterance: Callable[[Utterance], None],
        on_event: Callable[[ListenEvent], None],
        hands_free: bool | None = None,
        turn_by_turn: bool = False,
    ) -> VoiceIn:
        """Listen to ``mic`` in a thread of its own (any listening before stops), muted
        while the voice sounds (``microphone_muted``).  With a wake word in the settings,
        hands-free answers only what follows it; ``turn_by_turn`` (a recording that waits
        for each answer) counts its follow-up window in the recording's time."""
        from assistant.encoders.listener import VoiceIn
        from assistant.encoders.vad import VadConfig

        self.stop_listening(timeout=0)  # the old one is joined later: never wait on a device here
        settings = self.settings
        if self._speculation is None:
            from assistant.encoders.speculation import SpeculativeTranscriber

            self._speculation = SpeculativeTranscriber(self.engine.transcribe_if_ready)
        echo = None  # with it the microphone stays open (half-duplex only while it first learns the room)
        if settings.echo_cancellation and mic.live:
            echo = make_echo_canceller(self.tap, lambda: getattr(mic, "timeline_position", None))
        self.listening_mode = ("echo cancellation" if echo is not None
                               else "half-duplex" if settings.half_duplex and self.voice is not None else "open")

        wake_factory = None
        if settings.wake_word:
            from assistant.encoders.wake_word import WakeGate, WakeWordDetector

            def wake_factory() -> WakeGate:  # in the listening thread
                replying = None if turn_by_turn else (lambda: self.busy or self._voice_sounds())
                return WakeGate(WakeWordDetector(settings.wake_word), settings.wake_follow_up, replying)

        def on_listen_event(event: ListenEvent) -> None:
            if event.kind in ("speech", "wake") and (self.busy or self.voice_sounding()):
                self.barge_in()  # (half-duplex: the microphone is deaf while the voice sounds)
            on_event(event)

        self.listener = VoiceIn(
            mic, on_utterance, on_listen_event, VadConfig.from_settings(settings),
            hands_free=settings.hands_free if hands_free is None else hands_free,
            muted=self.microphone_muted if echo is None else (lambda: not echo.converged and self._voice_sounds()),
            on_pause=self._speculation.offer, echo=echo, wake_factory=wake_factory,
        )
        self.listener.start()
        return self.listener

    def voice_sounding(self) -> bool:
        return self.voice is not None and self.voice.sounding(0.0)

    def barge_in(self) -> None:
        """The user spoke over the assistant while it spoke or was still writing (heard through
        echo cancellation, or with headphones): the voice stops at once, and so does the reply
        being written (kept, marked stopped); what they say is answered next."""
        log.info("barge-in: stopping the voice and the reply")
        self.stop()

    def microphone_muted(self) -> bool:
        """Half-duplex: while the settings ask for it, a live microphone is not heard while
        this session's voice sounds, and for a short tail after (it must not answer itself)."""
        return self.settings.half_duplex and self._voice_sounds()

    def _voice_sounds(self) -> bool:
        """The voice sounds, or did a moment ago (the echo's tail)."""
        voice = self.voice
        return voice is not None and voice.sounding(HALF_DUPLEX_TAIL)

    def stop_listening(self, timeout: float = 2.0) -> None:
        """Stop listening; its thread is joined within ``timeout`` (0: not waited for here,
        as on a GUI thread: ``close_devices`` joins it)."""
        listener, self.listener = self.listener, None
        if listener is not None:
            self._ending_listeners.append(listener)
        self._ending_listeners = [ending for ending in self._ending_listeners if not ending.close(timeout)]

    # -- the end ---------------------------------------------------------------------------------

    def close_devices(self) -> None:
        """Stop the microphone and the voice (devices first, then the models)."""
        self.engine.cancel()
        self.stop_listening()
        speculation, self._speculation = self._speculation, None
        if speculation is not None:
            speculation.close()
        if self.voice is not None:
            self.voice.close()

    def release_models(self) -> None:
        """Drop the models; call it once nothing runs in the engine's thread any more."""
        self.engine.unload()
        self.engine.unload_recognizer()
        self.engine.encoder.close()

    def close(self) -> None:
        """Devices, then models (for front ends that run the engine in their own thread)."""
        self.close_devices()
        self.release_models()
