"""Microphones: the sound card through PyAudio, or a WAV file replayed as if it were one.

Both deliver the same thing: 16 kHz mono int16 audio in chunks of ``CHUNK``
samples (32 ms, the window Silero VAD works on), through ``read(timeout)``.
A third kind, the simulated echo room (``room:USER.wav``, ``echo_room.py``), plays a
recording and hears the app's own speaker through a simulated room.

The PyAudio callback runs in PortAudio's thread and only copies the bytes into
a bounded queue (new audio is dropped while it is full); resampling and
everything else happens in the reader's thread.
"""

from __future__ import annotations

import abc
import queue
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from assistant.errors import BadInputError
from assistant.devices.audio import (
    PORTAUDIO_LOCK,
    Audio,
    AudioDeviceError,
    AudioFileError,
    StreamResampler,
    is_audio_file_name,
    native_stderr_silenced,
    read_audio,
    resample,
)
from assistant.devices.timeline import Timeline

if TYPE_CHECKING:
    from assistant.devices.playback_tap import PlaybackTap

SAMPLE_RATE = 16000
CHUNK = 512  # samples: 32 ms at 16 kHz


class MicrophoneEnded(Exception):
    """A file microphone reached the end of its recording."""


def to_mono16k(audio: Audio) -> np.ndarray:
    """``audio`` (already mono int16) at 16 kHz."""
    return resample(audio.samples, audio.rate, SAMPLE_RATE)


def level_dbfs(chunk: np.ndarray) -> float:
    """Loudness of a chunk in dB below full scale (-100 for digital silence)."""
    if len(chunk) == 0:
        return -100.0
    rms = float(np.sqrt(np.mean(chunk.astype(np.float64) ** 2))) / 32768.0
    return max(-100.0, 20 * np.log10(rms)) if rms > 0 else -100.0


class _Rechunker:
    """Turns blocks of any size (and rate) into 16 kHz chunks of exactly ``CHUNK`` samples."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self._pending = np.zeros(0, dtype=np.int16)
        self._resampler = StreamResampler(rate, SAMPLE_RATE) if rate != SAMPLE_RATE else None

    def push(self, samples: np.ndarray) -> list[np.ndarray]:
        if self._resampler is not None:
            samples = self._resampler.push(samples)
        data = np.concatenate([self._pending, samples]) if len(self._pending) else samples
        n = len(data) // CHUNK
        chunks = [data[i * CHUNK:(i + 1) * CHUNK] for i in range(n)]
        self._pending = data[n * CHUNK:].copy()
        return chunks


class Microphone(abc.ABC):
    """Where speech comes from.  ``read`` is called from one thread (the listener's)."""

    name = "microphone"
    live = True  # a real device: it hears the assistant's own voice (half-duplex applies)

    @abc.abstractmethod
    def start(self) -> None:
        """Open the device (raises ``AudioDeviceError`` / ``BadInputError`` with a clear message).

        Starting a started microphone does nothing (a caller may open it early to report problems)."""

    @abc.abstractmethod
    def read(self, timeout: float = 0.5) -> np.ndarray | None:
        """The next chunk of ``CHUNK`` samples, or None if none came within ``timeout``.

        Raises ``MicrophoneEnded`` at the end of a recording and ``AudioDeviceError``
        when the device is lost.
        """

    @abc.abstractmethod
    def stop(self) -> None:
        """Close the device; safe to call twice."""


class AudioFileMicrophone(Microphone):
    """An audio file as the microphone (WAV of any subtype, FLAC, OGG, Opus, MP3): any rate
    and channel count, resampled to 16 kHz mono.

    ``realtime=True`` delivers the audio at the pace it was recorded, like a person
    talking into a live microphone (the window, ``--headless --realtime``): each chunk
    comes when its last sample is due, and the end of the recording is reported
    only once its last sample is due (so the file takes exactly its length).
    ``False`` delivers it as fast as it is read (headless replay, tests).

    The clock starts at the first ``read`` after ``start``, i.e. when listening
    starts, not when the file is opened (a front end may open it early to report
    problems, then load models).  With a shared ``timeline`` the first play is
    anchored to the timeline's origin (starting it if nobody has): second *t* of
    the recording is heard at ``timeline.origin + t``, which is what a
    time-aligned recorder (``WavRecorderSpeaker(timeline=…)``) measures from.
    """

    live = False

    def __init__(self, path: str | Path, realtime: bool = True, loop: bool = False,
                 timeline: Timeline | None = None) -> None:
        self.path = Path(path)
        self.name = self.path.name
        self.realtime = realtime
        self.loop = loop
        self.timeline = timeline
        self._samples: np.ndarray | None = None
        self._pos = 0
        self._anchor: float | None = None  # monotonic instant of this play's first sample (set by the first read)
        self._delivered = 0  # samples delivered since the anchor (across loops)
        self._plays = 0
        self._stopped = threading.Event()

    @staticmethod
    def load(path: str | Path) -> np.ndarray:
        """The file's audio at 16 kHz mono, or a clear ``BadInputError``."""
        path = Path(path)
        if not path.is_file():
            raise BadInputError(f"The recording '{path}' does not exist.")
        try:
            audio = read_audio(path)
        except AudioFileError as exc:
            raise BadInputError(f"The recording '{path.name}' cannot be played: {exc}.") from None
        except OSError as exc:
            raise BadInputError(f"The recording '{path.name}' cannot be read: {exc.strerror or exc}.") from None
        if audio.rate <= 0 or len(audio.samples) == 0:
            raise BadInputError(f"'{path.name}' holds no audio.")
        return to_mono16k(audio)

    def start(self) -> None:
        if self._samples is not None and not self._stopped.is_set():
            return  # already started
        self._samples = self.load(self.path)
        self._pos = 0
        self._anchor = None
        self._delivered = 0
        self._stopped.clear()

    @property
    def duration(self) -> float:
        return len(self._samples) / SAMPLE_RATE if self._samples is not None else 0.0

    @property
    def started_at(self) -> float | None:
        """The monotonic instant the recording's first sample was heard (None before the first read)."""
        return self._anchor

    def _begin(self) -> float:
        """The anchor of a new play: the shared timeline's origin the first time, else now."""
        now = time.monotonic()
        self._plays += 1
        if self.timeline is None:
            return now
        origin = self.timeline.start(now)
        return origin if self._plays == 1 else now

    def _wait_until(self, due: float, timeout: float) -> bool:
        """Wait until ``due``; False when that is more than ``timeout`` away (waited ``timeout``)."""
        wait = due - time.monotonic()
        if wait > timeout:
            self._stopped.wait(timeout)
            return False
        if wait > 0 and self._stopped.wait(wait):
            raise MicrophoneEnded(self.name)
        return True

    def read(self, timeout: float = 0.5) -> np.ndarray | None:
        if self._samples is None or self._stopped.is_set():
            raise MicrophoneEnded(self.name)
        if self._anchor is None:
            self._anchor = self._begin()
        if self._pos + CHUNK > len(self._samples):
            if not self.loop:
                # A person's recording ends when its last sample has been heard, not a chunk early.
                tail = len(self._samples) - self._pos
                if self.realtime and not self._wait_until(
                        self._anchor + (self._delivered + tail) / SAMPLE_RATE, timeout):
                    return None
                raise MicrophoneEnded(self.name)
            self._pos = 0
        if self.realtime and not self._wait_until(self._anchor + (self._delivered + CHUNK) / SAMPLE_RATE, timeout):
            return None
        chunk = self._samples[self._pos:self._pos + CHUNK]
        self._pos += CHUNK
        self._delivered += CHUNK
        return chunk

    def stop(self) -> None:
        self._stopped.set()


def list_input_devices() -> list[tuple[int, str]]:
    """(index, name) of the sound inputs PortAudio sees; empty when there are none."""
    try:
        import pyaudio
    except ImportError:
        return []
    with PORTAUDIO_LOCK, native_stderr_silenced():
        pa = pyaudio.PyAudio()
    try:
        found = []
        for i in range(pa.get_device_count()):
            info = pa.get_device_info_by_index(i)
            if info.get("maxInputChannels", 0) > 0:
                found.append((i, str(info.get("name", f"input {i}"))))
        return found
    finally:
        with PORTAUDIO_LOCK:
            pa.terminate()


class PyAudioMicrophone(Microphone):
    """The sound card's input, in PyAudio's callback mode.

    Asks for 16 kHz mono; a device that cannot do that is opened at its own rate
    and resampled.  If no audio arrives for ``stall_seconds`` the device is
    considered lost (unplugged, taken by another program).
    """

    def __init__(self, device: int | str | None = None, max_queue_seconds: float = 4.0,
                 stall_seconds: float = 2.0, timeline: Timeline | None = None) -> None:
        self.device = device
        self.timeline = timeline  # started at the first chunk read (when listening starts)
        self.stall_seconds = stall_seconds
        self._queue: queue.Queue[bytes] = queue.Queue(maxsize=max(4, int(max_queue_seconds * SAMPLE_RATE / CHUNK)))
        self._pa = None
        self._stream = None
        self._device_lock = threading.Lock()  # guards handing over _pa and _stream (stop may race itself)
        self._rechunk: _Rechunker | None = None
        self._ready: list[np.ndarray] = []
        self._last_data = 0.0
        self.dropped = 0  # blocks dropped because nobody read them in time
        self.name = "microphone"

    def _callback(self, in_data, frame_count, time_info, status):  # PortAudio's thread: copy, hand off, return
        try:
            self._queue.put_nowait(bytes(in_data))
        except queue.Full:
            # Nobody has read for seconds: drop this block.  What is queued stays contiguous
            # (an utterance in it is kept whole), and the lag can never grow past the queue.
            self.dropped += 1
        return (None, self._continue)

    def _find(self, pa) -> int:
        inputs = [
            pa.get_device_info_by_index(i)
            for i in range(pa.get_device_count())
            if pa.get_device_info_by_index(i).get("maxInputChannels", 0) > 0
        ]
        if not inputs:
            raise AudioDeviceError("No microphone was found (the system lists no sound input device).")
        if self.device is None or str(self.device) == "":
            try:
                return int(pa.get_default_input_device_info()["index"])
            except (OSError, KeyError):
                return int(inputs[0]["index"])
        for info in inputs:
            if str(self.device) == str(info["index"]) or str(self.device).lower() in str(info["name"]).lower():
                return int(info["index"])
        names = ", ".join(f"{i['index']}: {i['name']}" for i in inputs)
        raise AudioDeviceError(f"Microphone '{self.device}' was not found (inputs: {names}).")

    def start(self) -> None:
        if self._stream is not None:
            return  # already open
        try:
            import pyaudio
        except ImportError as exc:
            raise AudioDeviceError(f"The microphone needs PyAudio ({exc}).") from None
        self._continue = pyaudio.paContinue
        with PORTAUDIO_LOCK, native_stderr_silenced():
            pa = pyaudio.PyAudio()
        try:
            index = self._find(pa)
            info = pa.get_device_info_by_index(index)
            self.name = str(info.get("name", "microphone"))
            rates = [SAMPLE_RATE] + [int(info.get("defaultSampleRate") or 0)] + [48000, 44100]
            last: Exception | None = None
            for rate in dict.fromkeys(r for r in rates if r > 0):
                try:
                    with native_stderr_silenced():
                        stream = pa.open(
                            format=pyaudio.paInt16, channels=1, rate=rate, input=True,
                            input_device_index=index, frames_per_buffer=CHUNK * rate // SAMPLE_RATE,
                            stream_callback=self._callback,
                        )
                except (OSError, ValueError) as exc:
                    last = exc
                    continue
                self._rechunk = _Rechunker(rate)
                break
            else:
                raise AudioDeviceError(f"The microphone '{self.name}' could not be opened: {last}")
        except BaseException:
            with PORTAUDIO_LOCK:
                pa.terminate()
            raise
        with self._device_lock:
            self._pa, self._stream = pa, stream
        self._last_data = time.monotonic()
        stream.start_stream()

    def read(self, timeout: float = 0.5) -> np.ndarray | None:
        if self._stream is None:
            raise AudioDeviceError("The microphone is not open.")
        deadline = time.monotonic() + timeout
        while not self._ready:
            try:
                data = self._queue.get(timeout=max(0.0, min(deadline - time.monotonic(), 0.1)))
            except queue.Empty:
                now = time.monotonic()
                if now - self._last_data > self.stall_seconds:
                    raise AudioDeviceError(
                        f"The microphone '{self.name}' stopped sending sound (unplugged or in use by another program)."
                    ) from None
                if now >= deadline:
                    return None
                continue
            self._last_data = time.monotonic()
            self._ready.extend(self._rechunk.push(np.frombuffer(data, dtype="<i2")))
        if self.timeline is not None:
            self.timeline.start()
        return self._ready.pop(0)

    def stop(self) -> None:
        """Close the device; from any thread, any number of times (only the first call closes it)."""
        with self._device_lock:
            stream, pa = self._stream, self._pa
            self._stream = self._pa = None
        if stream is None and pa is None:
            return  # not open, or another call is closing it
        if stream is not None:
            try:
                stream.stop_stream()
                stream.close()
            except OSError:
                pass
        if pa is not None:
            with PORTAUDIO_LOCK:
                pa.terminate()
        self._ready.clear()  # a reopened device starts afresh (the stream is open from pa.open on)
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break


def open_microphone(spec: str | None, realtime: bool = True, timeline: Timeline | None = None,
                    tap: PlaybackTap | None = None) -> Microphone:
    """``spec``: an audio file (``.wav``, ``.flac``, ``.ogg``, ``.opus``, ``.mp3``…), a device
    index or name, ""/None for the default input, or ``room:USER.wav[?…]``: the simulated
    echo room (``assistant/devices/echo_room.py``), which hears the user's recording and
    what ``tap`` says the app's speaker played (a new tap on ``timeline`` when None: wrap
    the speaker in ``TappedSpeaker(speaker, mic.tap)``).  ``realtime`` and ``timeline``:
    see ``AudioFileMicrophone`` (a live device is real-time by nature and starts the
    timeline at its first read); ``tap`` matters only to the room.

    Nothing is opened yet: ``start()`` does that (and reports problems).
    """
    from assistant.devices.echo_room import is_room_spec, open_room  # it builds on this module

    if is_room_spec(spec):
        return open_room(spec, realtime=realtime, timeline=timeline, tap=tap)
    if spec and is_audio_file_name(spec):
        return AudioFileMicrophone(spec, realtime=realtime, timeline=timeline)
    return PyAudioMicrophone(spec or None, timeline=timeline)
