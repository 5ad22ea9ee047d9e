"""The speaker: where speech goes.  A WAV recorder (file-backed, for replay and tests) and a sound device."""

from __future__ import annotations

import abc
import logging
import threading
import time
import wave
from pathlib import Path

import numpy as np

from assistant.devices.audio import PORTAUDIO_LOCK, AudioDeviceError, native_stderr_silenced, resample
from assistant.devices.timeline import Timeline

log = logging.getLogger(__name__)


class Speaker(abc.ABC):
    """Where speech goes.  ``play`` may block for about the length of the chunk."""

    name = "speaker"

    @abc.abstractmethod
    def play(self, chunk: np.ndarray, rate: int) -> None:
        """Play (or write) one short chunk of mono int16 audio."""

    def abort(self) -> None:
        """Drop anything queued in the device so that sound stops at once.

        Called from any thread, also while another is inside ``play``: it must
        neither wait for that write nor raise."""

    def close(self) -> None:
        """Release the device."""


class WavRecorderSpeaker(Speaker):
    """Writes everything that is spoken, in order, to one WAV file.

    ``realtime=True`` paces writing like a sound card (the window, and tests of
    stopping mid-sentence); ``False`` writes as fast as speech is made (``--ask``).

    With a ``timeline`` the file is **time-aligned**: second *t* of it is what the
    speaker played at ``timeline.origin + t``.  Silence is written while nothing
    plays (before each chunk, zeros up to "now"; at ``close``, zeros up to the
    moment of closing), and writing is paced like a sound card (``realtime`` is
    implied).  With a real-time file microphone on the same timeline, second *t*
    of this file is second *t* of the microphone's recording (``--headless
    --realtime``): a reviewable record of the conversation, and a way to measure
    reply latency and barge-in from outside.  A chunk lands at most ``SLACK``
    seconds early (a writer that lags a little mid-sentence is not padded, as a
    sound card's buffer would not underrun), and ``abort`` cannot take back the one
    chunk already written ahead (20 ms of speech).
    """

    SLACK = 0.03  # seconds a time-aligned writer may lag before silence is written to catch up
    _SILENCE_BLOCK = 1 << 16  # samples of zeros written at a time

    def __init__(self, path: str | Path, realtime: bool = True, rate: int | None = None,
                 timeline: Timeline | None = None) -> None:
        self.path = Path(path)
        self.name = f"recording to {self.path.name}"
        self.timeline = timeline
        self.realtime = realtime or timeline is not None
        self.rate = rate
        self._wav: wave.Wave_write | None = None
        self._lock = threading.Lock()
        self._clock: float | None = None  # when the audio written so far will have finished playing
        self.samples_written = 0  # speech and, time-aligned, silence
        self._closed = False

    def _open(self, rate: int) -> wave.Wave_write:
        if self._wav is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.rate = self.rate or rate
            self._wav = wave.open(str(self.path), "wb")
            self._wav.setnchannels(1)
            self._wav.setsampwidth(2)
            self._wav.setframerate(self.rate)
        return self._wav

    def _write(self, data: np.ndarray) -> None:
        self._wav.writeframes(data.astype("<i2").tobytes())
        self.samples_written += len(data)

    def _pad_to(self, seconds: float) -> None:
        """Time-aligned: silence up to ``seconds`` after the origin (nothing if already there)."""
        missing = int(round(seconds * self.rate)) - self.samples_written
        while missing > 0:
            n = min(missing, self._SILENCE_BLOCK)
            self._write(np.zeros(n, np.int16))
            missing -= n

    def play(self, chunk: np.ndarray, rate: int) -> None:
        if self.timeline is not None:
            self._play_aligned(chunk, rate)
            return
        with self._lock:
            self._open(rate)
            data = resample(chunk, rate, self.rate)
            self._write(data)
        if self.realtime:
            now = time.monotonic()
            start = max(now, self._clock or now)
            self._clock = start + len(data) / self.rate
            # Stay at most one chunk ahead of the "speaker", as a device buffer would.
            wait = self._clock - now - len(data) / self.rate
            if wait > 0:
                time.sleep(wait)

    def _play_aligned(self, chunk: np.ndarray, rate: int) -> None:
        with self._lock:
            self._open(rate)
            data = resample(chunk, rate, self.rate)
            origin = self.timeline.start()
            now = time.monotonic() - origin
            if now - self.samples_written / self.rate > self.SLACK:
                self._pad_to(now)  # nothing played since the last chunk: silence until now
            starts = origin + self.samples_written / self.rate
            self._write(data)
        # Return when this chunk starts to sound: at most one chunk ahead, as a device buffer.
        wait = starts - time.monotonic()
        if wait > 0:
            time.sleep(wait)

    def abort(self) -> None:
        self._clock = None

    def close(self) -> None:
        """Finish the file; with nothing spoken it is a valid, empty WAV (time-aligned: silence
        up to now, once the timeline has started)."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._open(self.rate or 22050)
                if self.timeline is not None and self.timeline.started:
                    self._pad_to(self.timeline.elapsed())
                self._wav.close()
                self._wav = None


class PyAudioSpeaker(Speaker):
    """The computer's sound output through PortAudio (PyAudio), in blocking chunks.

    One thread plays (``play``); any thread may ``abort``.  PortAudio must not
    stop or close a stream while another thread writes to it, and the caller of
    ``abort`` (the GUI thread) must not wait for a write, so ``abort`` only asks:
    the stream is aborted at once when no write is running, else by the playing
    thread as soon as its write returns (one chunk, ~20 ms).  Aborting closes the
    stream, which drops what the device had buffered (``Pa_AbortStream``
    semantics; ``stop_stream`` would play it out); the next chunk opens a new one.
    """

    CLOSE_WAIT_SECONDS = 2.0  # close() waits this long for a write that hangs in the driver

    def __init__(self, device: int | str | None = None) -> None:
        try:
            import pyaudio
        except ImportError as exc:
            raise AudioDeviceError(f"Sound output needs PyAudio ({exc}).") from None
        self._pyaudio = pyaudio
        with PORTAUDIO_LOCK, native_stderr_silenced():  # PortAudio's ALSA/JACK probing chatters on stderr
            self._pa = pyaudio.PyAudio()
        self.device_index = self._find(device)
        info = self._pa.get_device_info_by_index(self.device_index)
        self.name = str(info.get("name", "speaker"))
        self._stream = None
        self._rate: int | None = None
        self._stream_lock = threading.Lock()  # held while the stream is opened, written to or closed
        self._abort_wanted = threading.Event()

    def _find(self, device: int | str | None) -> int:
        outputs = [
            self._pa.get_device_info_by_index(i)
            for i in range(self._pa.get_device_count())
            if self._pa.get_device_info_by_index(i).get("maxOutputChannels", 0) > 0
        ]
        if not outputs:
            with PORTAUDIO_LOCK:
                self._pa.terminate()
            raise AudioDeviceError("No sound output device was found.")
        if device is None:
            try:
                return int(self._pa.get_default_output_device_info()["index"])
            except (OSError, KeyError):
                return int(outputs[0]["index"])
        for info in outputs:
            if str(device) == str(info["index"]) or str(device).lower() in str(info["name"]).lower():
                return int(info["index"])
        with PORTAUDIO_LOCK:
            self._pa.terminate()
        raise AudioDeviceError(f"Sound output device '{device}' was not found.")

    def play(self, chunk: np.ndarray, rate: int) -> None:
        try:
            with self._stream_lock:
                if self._pa is None:
                    raise AudioDeviceError("The sound device is closed.")
                if self._stream is None or self._rate != rate:
                    self._close_stream()
                    try:
                        with PORTAUDIO_LOCK:
                            self._stream = self._pa.open(
                                format=self._pyaudio.paInt16, channels=1, rate=rate, output=True,
                                output_device_index=self.device_index, frames_per_buffer=512,
                            )
                    except OSError as exc:
                        raise AudioDeviceError(f"The sound device could not be opened: {exc}") from None
                    self._rate = rate
                try:
                    self._stream.write(chunk.astype("<i2").tobytes())
                except OSError as exc:
                    self._close_stream()
                    raise AudioDeviceError(f"The sound device failed: {exc}") from None
        finally:
            self._abort_if_wanted()  # an abort that came during the write

    def abort(self) -> None:
        """Silence at once, from any thread, without waiting for a write in progress."""
        self._abort_wanted.set()
        self._abort_if_wanted()

    def _abort_if_wanted(self) -> None:
        # Whoever holds the lock runs this after releasing it, so a wish is never left unserved.
        while self._abort_wanted.is_set() and self._stream_lock.acquire(blocking=False):
            try:
                self._abort_wanted.clear()
                self._close_stream()
            finally:
                self._stream_lock.release()

    def _close_stream(self) -> None:
        """Close the stream (dropping what it has buffered); never raises.  With the lock held."""
        stream, self._stream = self._stream, None
        if stream is not None:
            try:
                stream.close()
            except Exception:  # noqa: BLE001 - the next chunk opens a new stream anyway
                log.warning("closing the sound stream failed", exc_info=True)

    def close(self) -> None:
        if not self._stream_lock.acquire(timeout=self.CLOSE_WAIT_SECONDS):
            log.warning("the sound device hangs in a write; leaving it open")
            return
        try:
            self._close_stream()
            pa, self._pa = self._pa, None
            if pa is not None:  # closing twice is harmless
                with PORTAUDIO_LOCK:
                    pa.terminate()
        finally:
            self._stream_lock.release()


def open_speaker(spec: str | None, realtime: bool = True, timeline: Timeline | None = None) -> Speaker:
    """``spec``: a ``.wav`` path (recorder), a device index or name, or None (the default device).

    ``timeline``: a recorder writes a time-aligned file (see ``WavRecorderSpeaker``); a
    sound device plays in real time anyway and ignores it."""
    if spec and spec.lower().endswith(".wav"):
        return WavRecorderSpeaker(spec, realtime=realtime, timeline=timeline)
    return PyAudioSpeaker(spec)
