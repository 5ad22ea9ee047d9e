"""The wake word: in hands-free mode, answer only what is said after "Hey Jarvis".

``WakeWordDetector`` runs one of the models pymicro-wakeword ships (microWakeWord,
TFLite, ~4 ms of CPU a second of audio) on every chunk the listener hears.

``WakeGate`` decides, in stream time, which utterances are questions:

- **asleep**: an utterance is ignored unless the wake word fired inside it;
- the wake word fired inside an utterance: what follows it *in the same breath*
  is the question (the audio is cut where the detector fired, so the wake phrase
  is not part of the question's text); if nothing follows, the gate stays
  **awake** and the next utterance that starts within ``AWAKE_SECONDS`` is the question;
- after a question, **answering** until the reply has been written and spoken
  (``replying()``), then a **follow-up** window of ``follow_up`` seconds in which the
  next utterance needs no wake word, as people know from smart speakers.

With ``replying`` None (a recording replayed turn by turn, where the recording
does not wait for the answers) the follow-up window counts from the end of the
question, in the recording's own time.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from dataclasses import replace

import numpy as np

from assistant.devices.microphone import SAMPLE_RATE
from assistant.encoders.vad import Utterance
from assistant.errors import AssistantError

log = logging.getLogger(__name__)

# The models pymicro-wakeword ships, by model id, as people say them.
WAKE_PHRASES = {"hey_jarvis": "Hey Jarvis", "okay_nabu": "Okay Nabu", "hey_mycroft": "Hey Mycroft", "alexa": "Alexa"}
SUGGESTED_WAKE_WORD = "hey_jarvis"
AWAKE_SECONDS = 5.0  # after the wake word alone, the question may start this long after it
MIN_QUESTION_SECONDS = 0.3  # less speech than this after the wake word is not a question yet
REPLY_GRACE_SECONDS = 3.0  # a reply that has not started by then is not coming (nothing was recognized)


class WakeWordUnavailable(AssistantError):
    """The wake-word package is missing or cannot run on this system."""


def wake_words_available() -> bool:
    """Whether the wake-word package is installed (a lookup, nothing is loaded)."""
    import importlib.util

    return importlib.util.find_spec("pymicro_wakeword") is not None


def wake_phrase(name: str) -> str:
    """How people say the wake word ``name`` ("hey_jarvis" → "Hey Jarvis")."""
    return WAKE_PHRASES.get(name, name.replace("_", " ").title())


class WakeWordDetector:
    """One wake-word model on a stream of 16 kHz int16 chunks of any length."""

    def __init__(self, name: str) -> None:
        if name not in WAKE_PHRASES:
            raise WakeWordUnavailable(
                f"There is no wake word {name!r}; choose one of {', '.join(WAKE_PHRASES)}."
            )
        try:
            from pymicro_wakeword import MicroWakeWord, MicroWakeWordFeatures, Model
        except ImportError as exc:
            raise WakeWordUnavailable(
                "Wake words need the pymicro-wakeword package, which is not installed "
                "(pip install pymicro-wakeword; it has builds for Linux with glibc 2.35 or newer and Windows)."
            ) from exc
        try:
            self._model = MicroWakeWord.from_builtin(Model(name))
            self._features = MicroWakeWordFeatures()
        except Exception as exc:  # noqa: BLE001 - its TFLite runtime could not load on this system
            raise WakeWordUnavailable(f"The wake word {wake_phrase(name)!r} could not be loaded: {exc}") from exc
        self.name = name
        self.phrase = wake_phrase(name)

    def feed(self, chunk: np.ndarray) -> bool:
        """Hear ``chunk``; True when the wake word has just been said (once per saying)."""
        fired = False
        for features in self._features.process_streaming(chunk.astype("<i2", copy=False).tobytes()):
            if self._model.process_streaming(features):
                fired = True
        if fired:
            self.reset()  # it goes on firing while its averaged probability stays high
        return fired

    def reset(self) -> None:
        """Forget what was heard (after firing, or when the microphone was muted)."""
        self._model.reset()
        self._features.reset()

    def close(self) -> None:
        self._model.close()


class WakeState(enum.Enum):
    ASLEEP = "asleep"  # waiting for the wake word
    AWAKE = "awake"  # the wake word was said: the next utterance is the question
    ANSWERING = "answering"  # a question was let through; its reply is being written or spoken
    FOLLOW_UP = "follow-up"  # the reply is over: the next utterance needs no wake word


class WakeGate:
    """Which hands-free utterances are questions.  Used by the listening thread only,
    except ``state``/``seconds_left``, which any thread may read."""

    def __init__(
        self,
        detector: WakeWordDetector,
        follow_up: float = 5.0,
        replying: Callable[[], bool] | None = None,
        awake_seconds: float = AWAKE_SECONDS,
    ) -> None:
        self.detector = detector
        self.follow_up = follow_up
        self._replying = replying
        self.awake_seconds = awake_seconds
        self.phrase = detector.phrase
        self.fired = 0  # times the wake word was heard
        self._now = 0.0
        self._fired_at: float | None = None  # stream time it fired, until an utterance takes it
        self._awake_until = -1.0
        self._follow_up_until = -1.0
        self._answer_started: float | None = None
        self._reply_seen = False

    # -- what the listener tells it --------------------------------------------------------

    def hear(self, chunk: np.ndarray, now: float) -> bool:
        """Feed one chunk that ends at stream time ``now``; True when the wake word fired."""
        self._now = now
        fired = self.detector.feed(chunk)
        if fired:
            self.fired += 1
            self._fired_at = now
            self._awake_until = now + self.awake_seconds
            self._follow_up_until = -1.0
            self._answer_started = None  # a new question, even while the last reply goes on
            log.info("wake word %r heard at %.2f s", self.phrase, now)
        self._tick(now)
        return fired

    def deaf(self, now: float) -> None:
        """The microphone was muted (the assistant speaks, half-duplex): nothing was heard."""
        self._now = now
        self.detector.reset()
        self._tick(now)

    def admit(self, utterance: Utterance) -> Utterance | None:
        """The question in ``utterance``, or None when it is not addressed to the assistant
        (or was only the wake word: then the next utterance is awaited)."""
        now = max(self._now, utterance.decided)
        fired = self._fired_at
        if fired is not None and fired <= utterance.decided:
            self._fired_at = None
            if fired >= utterance.origin:  # woken inside this utterance: the question follows the wake word
                if utterance.end - fired < MIN_QUESTION_SECONDS:
                    self._awake_until = now + self.awake_seconds  # the wake word alone: say the question next
                    return None
                self._answering(now)
                cut = min(len(utterance.samples), max(0, round((fired - utterance.origin) * SAMPLE_RATE)))
                return replace(utterance, samples=utterance.samples[cut:], start=fired, origin=fired)
        if utterance.start <= self._awake_until or utterance.start <= self._follow_up_until:
            self._answering(now)
            return utterance
        return None

    def trim_pause(self, samples: np.ndarray, origin: float) -> np.ndarray | None:
        """The question a pause would end (for speculative recognition): what ``admit``
        would let through if the utterance starting at ``origin`` ended now, or None."""
        fired = self._fired_at
        if fired is not None and fired >= origin:
            return samples[min(len(samples), round((fired - origin) * SAMPLE_RATE)):]
        if self.listening:
            return samples
        return None

    # -- what it tells the listener and the window ---------------------------------------

    @property
    def listening(self) -> bool:
        """Speech now needs no wake word (it was just said, or a follow-up window is open)."""
        return self._fired_at is not None or self._now <= self._awake_until or self._now <= self._follow_up_until

    @property
    def state(self) -> WakeState:
        if self._fired_at is not None or self._now <= self._awake_until:
            return WakeState.AWAKE
        if self._answer_started is not None:
            return WakeState.ANSWERING
        if self._now <= self._follow_up_until:
            return WakeState.FOLLOW_UP
        return WakeState.ASLEEP

    @property
    def seconds_left(self) -> float:
        """Of the awake or follow-up window (0 when neither is open)."""
        until = max(self._awake_until, self._follow_up_until)
        return max(0.0, until - self._now)

    # -- inside -------------------------------------------------------------------------------

    def _answering(self, now: float) -> None:
        self._awake_until = -1.0
        self._follow_up_until = -1.0
        self._reply_seen = False
        if self._replying is None:  # a recording: the follow-up counts from the end of the question
            self._answer_started = None
            self._follow_up_until = now + self.follow_up if self.follow_up > 0 else -1.0
        else:
            self._answer_started = now

    def _tick(self, now: float) -> None:
        if self._answer_started is None or self._replying is None:
            return
        if self._replying():
            self._reply_seen = True
            return
        if self._reply_seen or now - self._answer_started >= REPLY_GRACE_SECONDS:
            self._answer_started = None
            self._follow_up_until = now + self.follow_up if self.follow_up > 0 else -1.0
