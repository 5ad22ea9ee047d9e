"""A simulated echo room: a microphone that hears the user *and* the app's own voice.

``--mic room:USER.wav`` plays USER.wav in real time, like a person talking into a
live microphone, and adds what the app's speaker played (``PlaybackTap``) as it
would come back through a room: delayed, through a decaying impulse response,
quieter, plus faint noise.  So echo cancellation and barge-in can be tried and
tested without a sound card, speakers or a person.

The spec: ``room:PATH`` with optional settings after ``?``, ``&``-separated:
``room:user.wav?delay=80&gain=-10``.

======  =======  ============================================================
name    default  meaning
======  =======  ============================================================
delay   50       ms from the speaker to the microphone (sound card and air)
gain    -6       dB: the echo's level relative to what was played (broadband
                 energy: speech or noise; the room colours a pure tone)
tail    200      ms of reverberation: the impulse response decays by 60 dB
noise   -65      dBFS: the room's hiss (RMS, white); ``off`` for none
seed    0        the room: the impulse response and the noise are random
                 but reproducible
======  =======  ============================================================

The impulse response is a direct path followed by a diffuse tail of exponentially
decaying noise (-60 dB at ``tail``; the tail carries a third of the energy),
scaled so that its energy is ``gain``.  Each chunk of ``CHUNK`` samples at
timeline time *t* is ``user chunk + (reference * ir)`` where the reference is what
the tap holds from ``t - delay``: a streaming convolution (FFT, overlap-save) that
keeps the last ``len(ir) - 1`` reference samples, so chunk boundaries are seamless.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from assistant.devices.microphone import CHUNK, SAMPLE_RATE, AudioFileMicrophone, Microphone
from assistant.devices.playback_tap import PlaybackTap
from assistant.devices.speaker import Speaker
from assistant.devices.timeline import Timeline
from assistant.errors import BadInputError

ROOM_PREFIX = "room:"
DIFFUSE_SHARE = 1 / 3  # of the impulse response's energy in the tail (direct-to-reverberant ratio +3 dB)


def is_room_spec(spec: str | None) -> bool:
    return bool(spec) and spec[:len(ROOM_PREFIX)].lower() == ROOM_PREFIX


@dataclass(frozen=True)
class Room:
    """The simulated room between the app's speaker and its microphone."""

    delay: float = 0.050  # seconds
    gain: float = -6.0  # dB (energy of the impulse response)
    tail: float = 0.200  # seconds until the reverberation has decayed by 60 dB
    noise: float | None = -65.0  # dBFS RMS of white noise; None: none
    seed: int = 0

    @property
    def delay_samples(self) -> int:
        return round(self.delay * SAMPLE_RATE)

    def impulse_response(self) -> np.ndarray:
        """float64, ``tail`` long: a direct path, then decaying noise; its energy is ``gain``."""
        n = max(1, round(self.tail * SAMPLE_RATE))
        ir = np.random.default_rng(self.seed).standard_normal(n) * 10.0 ** (-3.0 * np.arange(n) / n)
        ir[0] = 0.0
        if n > 1:
            ir *= math.sqrt(DIFFUSE_SHARE / (1 - DIFFUSE_SHARE) / float(np.sum(ir ** 2)))
        ir[0] = 1.0
        return ir * (10.0 ** (self.gain / 20) / float(np.linalg.norm(ir)))


_SETTINGS = {  # name in the spec: (smallest, largest, unit); ms are stored as seconds
    "delay": (0, 2000, "ms"),
    "gain": (-80, 12, "dB"),
    "tail": (1, 2000, "ms"),
    "noise": (-120, -20, "dBFS"),
    "seed": (0, 2**32 - 1, ""),
}


def parse_room_spec(spec: str) -> tuple[str, Room]:
    """``room:PATH[?name=value&…]`` → (PATH, Room); raises ``BadInputError`` with what is wrong.

    A PATH that holds a ``?`` itself is taken whole when that file exists."""
    body = spec[len(ROOM_PREFIX):]
    path, _, query = body.rpartition("?") if "?" in body and not Path(body).is_file() else (body, "", "")
    if not path:
        raise BadInputError("The echo room needs a recording of the user: room:USER.wav (e.g. room:question.wav).")
    room = Room()
    for item in filter(None, query.split("&")):
        name, equals, text = (part.strip() for part in item.partition("="))
        name = name.lower()
        if name not in _SETTINGS or not equals:
            raise BadInputError(f"The echo room has no setting '{item}' (it has "
                                f"{', '.join(_SETTINGS)}; e.g. room:user.wav?delay=80&gain=-10).")
        low, high, unit = _SETTINGS[name]
        if name == "noise" and text.lower() == "off":
            room = replace(room, noise=None)
            continue
        try:
            value = int(text) if name == "seed" else float(text)
        except ValueError:
            value = math.nan
        if not low <= value <= high:
            raise BadInputError(f"The echo room's {name}={text} is not a number from {low} to {high}"
                                f"{' ' + unit if unit else ''}{' (or off)' if name == 'noise' else ''}.")
        room = replace(room, **{name: value / 1000 if unit == "ms" else value})
    return path, room


class EchoRoomMicrophone(Microphone):
    """The user's recording, played in real time, plus the app's speaker heard through a ``Room``.

    ``tap`` is what the app's speaker plays (wrap the session's speaker in
    ``TappedSpeaker(speaker, mic.tap)``); the microphone and the tap share
    ``tap.timeline``.  The recording's first sample is heard at the first ``read``
    (which starts the timeline if nobody has).  ``realtime=False`` delivers the
    recording as fast as it is read (tests that write the tap themselves).
    """

    live = True  # it hears the assistant's own voice: half-duplex or echo cancellation apply

    def __init__(self, path: str | Path, tap: PlaybackTap | None = None, room: Room = Room(),
                 realtime: bool = True, problem: str | None = None) -> None:
        self.user = AudioFileMicrophone(path, realtime=realtime)  # placed on the timeline at its first read
        self.tap = tap if tap is not None else PlaybackTap(Timeline())
        self.timeline = self.tap.timeline
        self.room = room
        self.name = f"echo room: {self.user.name}"
        self._problem = problem
        self.ir = room.impulse_response()
        self._fft_size = 1 << (len(self.ir) - 1 + CHUNK - 1).bit_length()
        self._spectrum = np.fft.rfft(self.ir, self._fft_size)
        self._noise = None if room.noise is None else 32768.0 * 10.0 ** (room.noise / 20)
        self._running = False
        self._reset()

    def _reset(self) -> None:
        self._first: int | None = None  # timeline sample of the recording's first sample (this play)
        self._count = 0  # samples delivered in this play
        self._history = np.zeros(len(self.ir) - 1)  # the reference before the next chunk's
        self._reference_next: int | None = None  # timeline sample the next chunk's reference starts at
        self._rng = np.random.default_rng([self.room.seed, 1])

    def start(self) -> None:
        if self._problem:
            raise BadInputError(self._problem)
        if self._running:
            return
        self.user.start()
        self._reset()
        self._running = True

    @property
    def timeline_position(self) -> float | None:
        """The timeline second of the next sample (None before the first read)."""
        return None if self._first is None else (self._first + self._count) / SAMPLE_RATE

    def read(self, timeout: float = 0.5) -> np.ndarray | None:
        chunk = self.user.read(timeout)  # raises MicrophoneEnded at the end of the recording
        if chunk is None:
            return None
        if self._first is None:
            anchor = self.user.started_at
            self._first = round((anchor - self.timeline.start(anchor)) * SAMPLE_RATE)
        at = self._first + self._count
        self._count += len(chunk)
        heard = chunk.astype(np.float64)
        echo = self._echo(at, len(chunk))
        if echo is not None:
            heard += echo
        if self._noise:
            heard += self._rng.normal(0.0, self._noise, len(chunk))
        return np.clip(np.rint(heard), -32768, 32767).astype(np.int16)

    def _echo(self, at: int, count: int) -> np.ndarray | None:
        """The echo heard in timeline samples ``at … at+count`` (None: silence)."""
        keep = len(self.ir) - 1
        start = at - self.room.delay_samples  # the reference sample heard through the direct path at ``at``
        if self._reference_next != start:  # the first chunk, or the recording started again
            self._history = self.tap.read((start - keep) / SAMPLE_RATE, keep).astype(np.float64)
        new = self.tap.read(start / SAMPLE_RATE, count).astype(np.float64)
        reference = np.concatenate([self._history, new])
        self._history = reference[len(reference) - keep:]
        self._reference_next = start + count
        if not reference.any():
            return None
        # Overlap-save: the last ``count`` samples of a circular convolution of this length are the linear one's.
        full = np.fft.irfft(np.fft.rfft(reference, self._fft_size) * self._spectrum, self._fft_size)
        return full[keep:keep + count]

    def stop(self) -> None:
        self._running = False
        self.user.stop()


class RoomSpeaker(Speaker):
    """The app's loudspeaker in the echo room when no ``--speaker`` is named: the sound goes
    only into the room (through a ``TappedSpeaker``), paced like a sound card (``play``
    returns when the chunk starts to sound, at most one chunk ahead)."""

    def __init__(self) -> None:
        self.name = "the echo room's loudspeaker"
        self._ends: float | None = None
        self._lock = threading.Lock()
        self._aborted = threading.Event()

    def play(self, chunk: np.ndarray, rate: int) -> None:
        now = time.monotonic()
        with self._lock:
            starts = now if self._ends is None or self._ends < now else self._ends
            self._ends = starts + len(chunk) / rate
        self._aborted.clear()
        if starts > now:
            self._aborted.wait(starts - now)

    def abort(self) -> None:
        with self._lock:
            self._ends = None
        self._aborted.set()


def open_room(spec: str, realtime: bool = True, timeline: Timeline | None = None,
              tap: PlaybackTap | None = None) -> EchoRoomMicrophone:
    """The echo room for ``room:PATH[?…]``.  ``tap``: what the app's speaker plays (a new one
    on ``timeline`` when None); a spec that makes no room is reported by ``start``."""
    if tap is None:
        tap = PlaybackTap(timeline if timeline is not None else Timeline())
    try:
        path, room = parse_room_spec(spec)
    except BadInputError as exc:
        return EchoRoomMicrophone(spec[len(ROOM_PREFIX):] or "?", tap, realtime=realtime, problem=str(exc))
    return EchoRoomMicrophone(path, tap, room, realtime=realtime)
