"""Listening: one thread reads the microphone, meters it, and cuts speech into utterances.

Two ways to talk:

- **hands-free**: Silero VAD decides where each utterance starts and ends;
- **push-to-talk**: everything between ``push_to_talk(True)`` and
  ``push_to_talk(False)`` is one utterance (with a short pre-roll), sent only
  if VAD hears speech in it.

Utterances go to ``on_utterance`` (called in the listening thread: hand them
off, do not transcribe there).  Half-duplex: while ``muted()`` is true (the
assistant is speaking, plus a tail) a live microphone's input is dropped and
the VAD is reset, so the assistant never answers its own voice.  Push-to-talk
is a deliberate barge-in and is never muted.

With a wake word (``wake``, a ``WakeGate``), hands-free answers only what is said
after it, and in the follow-up window after a reply; push-to-talk needs none.

No Qt here: the window polls ``level`` and ``state`` and drains events.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from assistant.errors import AssistantError
from assistant.devices.audio import AudioDeviceError
from assistant.devices.microphone import SAMPLE_RATE, Microphone, MicrophoneEnded, level_dbfs
from assistant.encoders.echo import EchoCanceller
from assistant.encoders.vad import CHUNK_SECONDS, Segmenter, SileroVad, Utterance, VadConfig, contains_speech
from assistant.encoders.wake_word import WakeGate

log = logging.getLogger(__name__)

BARGE_IN_SECONDS = 0.3  # speech that lasts this long, heard through echo cancellation, interrupts the assistant


class ListenState(enum.Enum):
    OFF = "off"  # no microphone open
    STARTING = "starting"
    IDLE = "idle"  # open, but neither hands-free nor push-to-talk
    LISTENING = "listening"  # hands-free, waiting for speech
    WAITING_FOR_WAKE_WORD = "waiting for the wake word"  # hands-free with a wake word, not yet said
    HEARING = "hearing speech"
    RECORDING = "recording"  # push-to-talk held
    MUTED = "muted while the assistant speaks"
    RECONNECTING = "reconnecting"  # a live microphone was lost; opening it again with backoff
    ENDED = "ended"  # a file microphone reached its end
    ERROR = "error"


@dataclass(frozen=True)
class ListenEvent:
    """``kind``: state (``state`` changed), utterance (one was handed off), dropped (push-to-talk
    without speech), lost (a live microphone failed: reopening it), reconnected, error (``text``
    says what; listening stopped), ended (a recording reached its end), speech (hands-free speech
    has gone on long enough to be someone talking: a barge-in, when the assistant is speaking),
    wake (the wake word was heard: ``text`` is its phrase; a barge-in too), ignored (hands-free
    speech without the wake word was not answered)."""

    kind: str
    state: ListenState = ListenState.OFF
    text: str = ""
    time: float = 0.0


class VoiceIn:
    def __init__(
        self,
        mic: Microphone,
        on_utterance: Callable[[Utterance], None],
        on_event: Callable[[ListenEvent], None] = lambda e: None,
        config: VadConfig = VadConfig(),
        hands_free: bool = False,
        muted: Callable[[], bool] = lambda: False,
        vad_factory: Callable[[], SileroVad] = SileroVad,
        max_push_seconds: float = 120.0,
        retry_delays: tuple[float, float] = (0.5, 8.0),
        on_pause: Callable[[np.ndarray], None] | None = None,
        echo: EchoCanceller | None = None,
        barge_in_after: float = BARGE_IN_SECONDS,
        wake_factory: Callable[[], WakeGate] | None = None,
    ) -> None:
        """``on_pause`` gets, once a pause in hands-free speech has lasted the end pad, the
        samples its utterance will have if the pause ends it (for speculative recognition).
        ``echo`` takes the assistant's voice out of each chunk before anything hears it.
        A ``speech`` event says when hands-free speech has gone on for ``barge_in_after``
        seconds (long enough not to be a click or what is left of the echo).  ``wake_factory``
        makes the wake-word gate in the listening thread (loading it can fail: that is said
        as an error event, as for the microphone)."""
        self.mic = mic
        self._on_pause = on_pause
        self._echo = echo
        self.barge_in_after = barge_in_after
        self._on_utterance = on_utterance
        self._on_event = on_event
        self.config = config
        self._hands_free = hands_free
        self._muted = muted
        self._vad_factory = vad_factory
        self._wake_factory = wake_factory
        self.wake: WakeGate | None = None
        self.max_push_seconds = max_push_seconds
        self.retry_delays = retry_delays  # first and longest wait between tries to reopen a lost microphone
        self.level = -100.0  # dBFS of the newest chunk (the meter reads it)
        self.probability = 0.0  # speech probability of the newest chunk
        self.state = ListenState.OFF
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._ptt = False
        self._ptt_changed = threading.Event()
        self._lock = threading.Lock()
        self.utterances = 0
        self.dropped = 0  # push-to-talk presses without speech
        self.ignored = 0  # hands-free utterances without the wake word

    # -- control (any thread) ---------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        self._set_state(ListenState.STARTING)
        self._thread = threading.Thread(target=self._run, name="voice-in", daemon=True)
        self._thread.start()

    @property
    def hands_free(self) -> bool:
        return self._hands_free

    def set_hands_free(self, on: bool) -> None:
        with self._lock:
            self._hands_free = on
        self._ptt_changed.set()

    def push_to_talk(self, pressed: bool) -> None:
        with self._lock:
            self._ptt = pressed
        self._ptt_changed.set()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def close(self, timeout: float = 2.0) -> bool:
        """Stop listening and join the thread; True when it ended in time.  ``timeout=0``
        returns at once (a GUI thread): call again later to join it."""
        self._stop.set()
        self.mic.stop()
        thread = self._thread
        if thread is None:
            return True
        thread.join(timeout)
        if thread.is_alive():
            return False
        self._thread = None
        return True

    def wait_ended(self, timeout: float | None = None) -> bool:
        """For a file microphone: block until the recording has been heard to its end."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
            return not thread.is_alive()
        return True

    # -- the listening thread ------------------------------------------------------------

    def _set_state(self, state: ListenState, text: str = "") -> None:
        if state is not self.state:
            self.state = state
            self._on_event(ListenEvent("state", state, text, time.monotonic()))

    def _idle_state(self) -> ListenState:
        if not self._hands_free:
            return ListenState.IDLE
        wake = self.wake
        return ListenState.WAITING_FOR_WAKE_WORD if wake is not None and not wake.listening else ListenState.LISTENING

    def _run(self) -> None:
        try:
            vad = self._vad_factory()
            segmenter = Segmenter(vad, self.config)
            self.wake = self._wake_factory() if self._wake_factory is not None else None
            self.mic.start()
        except AssistantError as exc:
            self._fail(str(exc))
            return
        except Exception as exc:  # noqa: BLE001 - a broken VAD model or device library
            log.exception("listening could not start")
            self._fail(f"Listening could not start: {exc}")
            return
        self._set_state(self._idle_state())
        pre_roll: deque[np.ndarray] = deque(maxlen=max(1, round(self.config.pre_roll / CHUNK_SECONDS)))
        recording: list[np.ndarray] | None = None
        was_muted = False
        said_speech = False  # the "speech" event of the speech in progress was sent
        try:
            while not self._stop.is_set():
                chunk = self._read(segmenter)
                with self._lock:
                    ptt, hands_free = self._ptt, self._hands_free
                if ptt and recording is None:  # push-to-talk pressed
                    recording = list(pre_roll)
                    segmenter.reset()
                    self._set_state(ListenState.RECORDING)
                elif not ptt and recording is not None:  # released: one utterance
                    self._finish_push(recording, vad)
                    recording = None
                    segmenter.reset()
                    self._set_state(self._idle_state())
                if chunk is None:
                    continue
                if self._echo is not None:
                    chunk = self._echo.process(chunk)
                self.level = level_dbfs(chunk)
                if recording is not None:
                    recording.append(chunk)
                    if len(recording) * CHUNK_SECONDS >= self.max_push_seconds:
                        self._finish_push(recording, vad)
                        recording = []
                    continue
                pre_roll.append(chunk)
                if self.mic.live and self._muted():
                    if not was_muted:
                        segmenter.reset()  # what it heard so far was (or overlaps) our own voice
                        was_muted = True
                    self.probability = 0.0
                    if self.wake is not None:
                        self.wake.deaf(segmenter.time)
                    self._set_state(ListenState.MUTED)
                    continue
                if was_muted:
                    was_muted = False
                    self._set_state(self._idle_state())
                if not hands_free:
                    if self.state is not ListenState.IDLE:
                        segmenter.reset()
                        self._set_state(ListenState.IDLE)
                    continue
                utterances = segmenter.feed(chunk)
                wake = self.wake
                if wake is not None and wake.hear(chunk, segmenter.time):
                    self._on_event(ListenEvent("wake", self.state, wake.phrase, time.monotonic()))
                for utterance in utterances:
                    self._offer(utterance)
                addressed = wake is None or wake.listening
                if not segmenter.in_speech:
                    said_speech = False
                elif not said_speech and addressed and segmenter.speech_seconds >= self.barge_in_after:
                    said_speech = True
                    self._on_event(ListenEvent("speech", ListenState.HEARING, "", time.monotonic()))
                pause = segmenter.take_pause()
                if pause is not None and wake is not None:
                    pause = wake.trim_pause(pause, segmenter.origin)
                if pause is not None and self._on_pause is not None:
                    self._on_pause(pause)
                self.probability = segmenter.probability
                self._set_state(ListenState.HEARING if segmenter.in_speech and addressed else self._idle_state())
        except MicrophoneEnded:
            if recording:
                self._finish_push(recording, vad)
            elif self._hands_free:
                last = segmenter.flush()
                if last is not None:
                    self._offer(last)
            self._set_state(ListenState.ENDED)
            self._on_event(ListenEvent("ended", ListenState.ENDED, self.mic.name, time.monotonic()))
        except AssistantError as exc:
            self._fail(str(exc))
        except Exception as exc:  # noqa: BLE001
            log.exception("listening failed")
            self._fail(f"Listening stopped: {exc}")
        else:
            self._set_state(ListenState.OFF)
        finally:
            self.level = -100.0
            self.mic.stop()
            if self.wake is not None:
                self.wake.detector.close()

    def _read(self, segmenter: Segmenter) -> np.ndarray | None:
        """The next chunk; a live microphone that fails is reopened (None meanwhile)."""
        try:
            return self.mic.read(timeout=0.2)
        except AudioDeviceError as exc:
            if not self.mic.live:
                raise
            self._reconnect(str(exc))
            segmenter.reset()  # what was heard before the gap does not join what comes after
            return None

    def _reconnect(self, message: str) -> None:
        """Reopen the microphone with backoff until it works or listening is closed."""
        self.level = -100.0
        self.probability = 0.0
        self._set_state(ListenState.RECONNECTING, message)
        self._on_event(ListenEvent("lost", ListenState.RECONNECTING, message, time.monotonic()))
        delay, longest = self.retry_delays
        while True:
            self.mic.stop()
            if self._stop.wait(delay):
                return
            try:
                self.mic.start()
            except AssistantError as exc:
                log.info("microphone still unavailable: %s", exc)
                delay = min(delay * 2, longest)
                continue
            self._on_event(ListenEvent("reconnected", ListenState.RECONNECTING, self.mic.name, time.monotonic()))
            self._set_state(self._idle_state())
            return

    def _fail(self, message: str) -> None:
        self.level = -100.0
        self._set_state(ListenState.ERROR, message)
        self._on_event(ListenEvent("error", ListenState.ERROR, message, time.monotonic()))

    def _offer(self, utterance: Utterance) -> None:
        """A hands-free utterance: handed off, unless a wake word is needed and was not said."""
        wake = self.wake
        if wake is not None:
            question = wake.admit(utterance)
            if question is None:
                if not wake.listening:  # (the wake word alone: the question comes next)
                    self.ignored += 1
                    self._on_event(ListenEvent("ignored", self.state, f"{utterance.seconds:.1f} s without "
                                               f"'{wake.phrase}'", time.monotonic()))
                return
            utterance = question
        self._hand_off(utterance)

    def _hand_off(self, utterance: Utterance) -> None:
        self.utterances += 1
        self._on_event(ListenEvent("utterance", self.state, f"{utterance.seconds:.1f} s", time.monotonic()))
        self._on_utterance(utterance)

    def _finish_push(self, chunks: list[np.ndarray], vad: SileroVad) -> None:
        samples = np.concatenate(chunks) if chunks else np.zeros(0, np.int16)
        if len(samples) < 0.2 * SAMPLE_RATE or not contains_speech(vad, samples, self.config.start_threshold):
            self.dropped += 1
            self._on_event(ListenEvent("dropped", self.state, "No speech was heard.", time.monotonic()))
            return
        seconds = len(samples) / SAMPLE_RATE
        self._hand_off(Utterance(samples, 0.0, seconds, seconds))
