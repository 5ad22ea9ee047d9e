"""Speaking replies as they stream: sentence by sentence, stoppable at once.

``VoiceOut`` owns one speech thread.  That thread creates the synthesizer (a
pyttsx3 engine must live in one thread), turns each queued sentence into audio
and plays it through the ``Speaker`` in 20 ms chunks.  ``stop()`` bumps an
epoch and clears the queue from any thread: the playing loop sees the new epoch
before its next chunk, so sound ends within one chunk plus the device buffer.

No call from another thread ever waits for the speech thread, even a stalled or
dead one: sentences go into a bounded queue without blocking (when it is full
the newest sentence is dropped: the backlog is minutes of speech already);
voice and rate changes are merged (only the newest of each counts) and applied
before the next sentence; closing is a flag.  A sentence that cannot be
synthesized or spoken is reported once and the thread goes on with the next.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from assistant.devices.speaker import Speaker
from assistant.speech.sentences import SentenceSplitter
from assistant.speech.tts import EspeakNgSynthesizer, Pyttsx3Synthesizer, TtsError, Voice, default_synthesizer

log = logging.getLogger(__name__)

CHUNK_SECONDS = 0.02
MAX_SILENCED = 256  # stopped turns remembered (turn ids only grow: the oldest are long finished)
FIRST_PHRASE_WORDS = 4  # a reply's first phrase is spoken at a clause boundary once it has this many words
MAX_OPEN_REPLIES = 16  # replies being split into sentences at once (a reply that never ends is forgotten)


@dataclass(frozen=True)
class SpeechEvent:
    """``kind``: ready, speaking (first sample of a reply's speech), sentence, idle, error,
    disabled (the output failed and speech turned itself off)."""

    kind: str
    text: str = ""
    turn_id: int | None = None
    time: float = 0.0  # time.monotonic() when it happened


@dataclass(frozen=True)
class _Say:
    epoch: int
    turn_id: int | None
    text: str


_WAKE = object()  # queued to make the speech thread look at its settings and at closing

SynthFactory = Callable[[str, int], EspeakNgSynthesizer | Pyttsx3Synthesizer]


class VoiceOut:
    def __init__(
        self,
        speaker: Speaker,
        on_event: Callable[[SpeechEvent], None] = lambda e: None,
        voice: str = "",
        rate: int = 0,
        volume: float = 1.0,
        enabled: bool = True,
        synth_factory: SynthFactory = default_synthesizer,
        max_queue: int = 64,
    ) -> None:
        self.speaker = speaker
        self._on_event = on_event
        self._voice, self._rate = voice, rate
        self.volume = volume
        self.enabled = enabled
        self._synth_factory = synth_factory
        self._queue: queue.Queue = queue.Queue(maxsize=max_queue)
        self._epoch = 0
        self._lock = threading.Lock()
        self._new_settings: dict[str, object] = {}  # "voice" / "rate": the newest value, for the speech thread
        self._closing = threading.Event()
        self._last_error = ""  # reported already: the same failure is not reported again until speech works
        self._splitters: dict[int | None, SentenceSplitter] = {}
        self._silenced: set[int | None] = set()  # turns stopped by the user: never spoken again
        self.voices: list[Voice] = []
        self.speaking = False
        self.last_sound_end = 0.0  # monotonic time the last sound finished (half-duplex tail)
        self._thread = threading.Thread(target=self._run, name="speech", daemon=True)
        self._started = False

    # -- any thread ------------------------------------------------------------------

    def start(self) -> None:
        if not self._started:
            self._started = True
            self._thread.start()

    def feed(self, turn_id: int | None, text: str) -> None:
        """A piece of a streaming reply; complete sentences are queued for speech."""
        with self._lock:
            if not self.enabled or turn_id in self._silenced:
                return
            if turn_id not in self._splitters and len(self._splitters) >= MAX_OPEN_REPLIES:
                del self._splitters[next(iter(self._splitters))]  # the oldest reply never ended
            splitter = self._splitters.setdefault(turn_id, SentenceSplitter(first_phrase_words=FIRST_PHRASE_WORDS))
            sentences = splitter.feed(text)
        self._say(turn_id, sentences)

    def end_reply(self, turn_id: int | None) -> None:
        """The reply is complete: speak what is left of it."""
        with self._lock:
            splitter = self._splitters.pop(turn_id, None)
        if splitter is not None and self.enabled:
            self._say(turn_id, splitter.flush())

    def say(self, text: str) -> None:
        """Speak a whole text (status messages, tests)."""
        self.feed(None, text)
        self.end_reply(None)

    def _say(self, turn_id: int | None, sentences: list[str]) -> None:
        epoch = self._epoch
        for sentence in sentences:
            try:
                self._queue.put_nowait(_Say(epoch, turn_id, sentence))
            except queue.Full:  # never block the caller: an absurdly long backlog loses its tail
                log.warning("speech queue full; dropping a sentence")

    def stop(self, silence: Iterable[int] = ()) -> None:
        """Silence now: the sentence playing ends within one chunk; queued ones are dropped.

        The replies being spoken, and the turns in ``silence`` (still being
        generated or queued), stay silent even if more of their text arrives.
        """
        with self._lock:
            self._epoch += 1
            self._silenced.update(k for k in self._splitters if k is not None)
            self._silenced.update(silence)
            if len(self._silenced) > MAX_SILENCED:  # bounded: only recent turns can still send text
                ids = sorted(k for k in self._silenced if k is not None)
                self._silenced.difference_update(ids[: len(ids) - MAX_SILENCED])
            self._splitters.clear()
        woken = False
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            self._queue.task_done()
            woken = woken or item is _WAKE
        if woken:  # a settings change or close() is waiting to be seen
            self._wake()
        self._abort_speaker()

    def set_enabled(self, enabled: bool) -> None:
        self.enabled = enabled
        if not enabled:
            self.stop()

    def set_voice(self, voice: str) -> None:
        """Speak with ``voice`` from the next sentence on (an unknown one is reported as an error)."""
        self._change(voice=voice)

    def set_rate(self, rate: int) -> None:
        """Speak at ``rate`` words per minute from the next sentence on."""
        self._change(rate=rate)

    def set_volume(self, volume: float) -> None:
        self.volume = min(max(volume, 0.0), 1.0)

    def _change(self, **settings: object) -> None:
        with self._lock:
            self._new_settings.update(settings)
        self._wake()

    def _wake(self) -> None:
        try:
            self._queue.put_nowait(_WAKE)
        except queue.Full:  # the thread has sentences to speak: it looks at settings and closing before each
            pass

    def wait_idle(self, timeout: float = 60.0) -> bool:
        """Block until everything queued has been spoken (command-line use)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._queue.unfinished_tasks == 0 and not self.speaking:
                return True
            time.sleep(0.01)
        return False

    def close(self, timeout: float = 2.0) -> bool:
        """Stop speaking, end the speech thread and join it."""
        self.stop()
        self._closing.set()
        if self._started:
            self._wake()
            self._thread.join(timeout)
        self.speaker.close()
        return not self._thread.is_alive()

    def sounding(self, tail: float = 0.3) -> bool:
        """True while speech plays, and ``tail`` seconds after (the microphone's half-duplex rule)."""
        return self.speaking or time.monotonic() - self.last_sound_end < tail

    # -- the speech thread ---------------------------------------------------------

    def _emit(self, kind: str, text: str = "", turn_id: int | None = None) -> None:
        try:
            self._on_event(SpeechEvent(kind, text, turn_id, time.monotonic()))
        except Exception:  # noqa: BLE001 - a listener's bug must not end speech
            log.exception("speech event listener failed")

    def _report(self, message: str, turn_id: int | None = None) -> None:
        """One error event per failure: the same one again, before speech has worked, is only logged."""
        if message == self._last_error:
            log.info("speech failed again: %s", message)
            return
        self._last_error = message
        self._emit("error", message, turn_id)

    def _abort_speaker(self) -> None:
        try:
            self.speaker.abort()
        except Exception:  # noqa: BLE001 - a failed abort must not end speech; the next sentence reopens
            log.exception("the speaker could not be silenced")

    def _apply_new_settings(self) -> None:
        with self._lock:
            settings, self._new_settings = self._new_settings, {}
        for name, value in settings.items():
            try:
                if name == "voice":
                    self._voice = str(value)
                    self._synth.set_voice(self._voice)
                else:
                    self._rate = int(value)
                    self._synth.set_rate(self._rate)
            except TtsError as exc:
                self._report(str(exc))
            except Exception as exc:  # noqa: BLE001 - a synthesizer's bug must not end speech
                log.exception("speech %s could not be changed", name)
                self._report(f"The speech {name} could not be changed: {exc or type(exc).__name__}")

    def _run(self) -> None:
        try:
            self._synth = self._synth_factory(self._voice, self._rate)
        except Exception as exc:  # noqa: BLE001 - TtsError, or a platform engine failing its own way
            self.enabled = False
            self._emit("error", str(exc) if isinstance(exc, TtsError) else f"Speech output is not available: {exc}")
            self._drain_until_closed()
            return
        self.voices = list(self._synth.voices)
        self._emit("ready")
        try:
            while not self._closing.is_set():
                item = self._queue.get()
                try:
                    self._apply_new_settings()
                    if isinstance(item, _Say) and not self._closing.is_set():
                        self._speak(item)
                finally:
                    self._queue.task_done()
                if self._queue.empty() and self.speaking:
                    self.speaking = False
                    self.last_sound_end = time.monotonic()
                    self._emit("idle")
        finally:
            self.speaking = False
            self._synth.close()

    def _speak(self, item: _Say) -> None:
        """Synthesize and play one sentence; whatever goes wrong is reported, and speech goes on."""
        if item.epoch != self._epoch:
            return
        try:
            audio = self._synth.synthesize(item.text)
        except TtsError as exc:
            self._report(str(exc), item.turn_id)
            return
        except Exception as exc:  # noqa: BLE001 - OSError, wave.Error, a synthesizer's own bug
            log.exception("speech synthesis failed")
            self._report(f"Speech could not be synthesized: {exc or type(exc).__name__}", item.turn_id)
            return
        try:
            self._play(item, audio.samples, audio.rate)
        except Exception as exc:  # noqa: BLE001 - volume, chunking: anything but the device itself
            log.exception("speech playback failed")
            self._report(f"A sentence could not be played: {exc or type(exc).__name__}", item.turn_id)

    def _play(self, item: _Say, samples: np.ndarray, rate: int) -> None:
        step = max(1, int(rate * CHUNK_SECONDS))
        for start in range(0, len(samples), step):
            if item.epoch != self._epoch:  # stopped: drop the rest of this sentence
                self._abort_speaker()
                if self.speaking:
                    self.speaking = False
                    self.last_sound_end = time.monotonic()
                    self._emit("idle")
                return
            chunk = samples[start : start + step]
            if self.volume < 1.0:
                chunk = (chunk.astype(np.float32) * self.volume).astype(np.int16)
            if start == 0:
                self._last_error = ""  # speech works: a new failure is worth a message
                if not self.speaking:
                    self.speaking = True
                    self._emit("speaking", item.text, item.turn_id)
                self._emit("sentence", item.text, item.turn_id)
            try:
                self.speaker.play(chunk, rate)
            except Exception as exc:  # noqa: BLE001 - a device that fails or vanishes
                self.enabled = False  # one clear message, not one per sentence
                self.stop()
                self._emit("disabled", f"Speech output failed, so replies are no longer read aloud: {exc}")
                return

    def _drain_until_closed(self) -> None:
        """Without a synthesizer: take what is queued (so waiting for idle ends) until closed."""
        while not self._closing.is_set():
            self._queue.get()
            self._queue.task_done()
