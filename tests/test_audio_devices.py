"""Sound devices under threads: stopping the speaker while it writes, stderr redirection, closing the microphone.

A fake PyAudio stands in for PortAudio where the test needs to see (or force)
what happens to a stream; the real PortAudio path is measured on an ALSA
device that plays into a FIFO read in real time (``benchmarks/stop_to_silence.py``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from assistant.devices import audio, microphone
from assistant.devices.audio import Audio, native_stderr_silenced
from assistant.devices.microphone import PyAudioMicrophone
from assistant.devices.speaker import PyAudioSpeaker
from assistant.speech.voice_out import VoiceOut

ROOT = Path(__file__).resolve().parent.parent
CHUNK = np.full(441, 1000, np.int16)  # 20 ms at 22050 Hz


class FakeOutputStream:
    """A blocking PortAudio output stream that records any call made while a write runs."""

    def __init__(self, card: FakeCard) -> None:
        self.card = card
        self.writing = False
        self.closed = False

    def _touched(self, call: str) -> None:
        self.card.calls.append(call)
        if self.writing:
            self.card.touched_during_write.append(call)
        if call in self.card.failing:
            raise OSError(-9999, f"Unanticipated host error ({call})")

    def write(self, data: bytes) -> None:
        if self.closed:
            raise OSError(-9988, "Invalid stream pointer")
        self.writing = True
        self.card.in_write.set()
        if self.card.write_gate is not None:
            self.card.write_gate.wait(10)
        else:
            time.sleep(len(data) / 2 / 22050)  # a card takes a chunk in about its own length
        self.writing = False

    def is_stopped(self) -> bool:
        self._touched("is_stopped")
        return False

    def stop_stream(self) -> None:
        self._touched("stop_stream")

    def start_stream(self) -> None:
        self._touched("start_stream")

    def close(self) -> None:
        self._touched("close")
        self.closed = True


class FakeCard:
    """What ``pyaudio.PyAudio`` is replaced with: one output device, its streams, and what was done to them."""

    def __init__(self) -> None:
        self.streams: list[FakeOutputStream] = []
        self.calls: list[str] = []
        self.touched_during_write: list[str] = []
        self.failing: set[str] = set()  # stream calls that raise
        self.in_write = threading.Event()
        self.write_gate: threading.Event | None = None

    def __call__(self) -> FakeCard:  # pyaudio.PyAudio()
        return self

    def get_device_count(self) -> int:
        return 1

    def get_device_info_by_index(self, index: int) -> dict:
        return {"index": 0, "name": "fake card", "maxOutputChannels": 2, "maxInputChannels": 0}

    def get_default_output_device_info(self) -> dict:
        return self.get_device_info_by_index(0)

    def open(self, **kwargs) -> FakeOutputStream:
        self.streams.append(FakeOutputStream(self))
        return self.streams[-1]

    def terminate(self) -> None:
        self.calls.append("terminate")


@pytest.fixture
def card(monkeypatch) -> FakeCard:
    import pyaudio

    fake = FakeCard()
    monkeypatch.setattr(pyaudio, "PyAudio", fake)
    return fake


# -- the speaker: stop while it writes ------------------------------------------------------------


def test_abort_during_a_write_waits_for_nothing_and_drops_the_buffer(card):
    speaker = PyAudioSpeaker()
    card.write_gate = threading.Event()
    playing = threading.Thread(target=speaker.play, args=(CHUNK, 22050))
    playing.start()
    assert card.in_write.wait(10)
    started = time.monotonic()
    speaker.abort()  # the GUI thread, while the speech thread is inside write()
    assert time.monotonic() - started < 2.0  # the write never ends by itself: waiting would hang
    assert card.touched_during_write == [] and not card.streams[0].closed
    card.write_gate.set()
    playing.join(10)
    assert card.streams[0].closed  # aborted as soon as the write returned: what it buffered is dropped
    assert "stop_stream" not in card.calls  # stop_stream would play the buffer out
    speaker.play(CHUNK, 22050)  # the next chunk opens a new stream
    assert len(card.streams) == 2 and not card.streams[1].closed
    speaker.close()


def test_aborts_hammering_a_playing_speaker_never_touch_a_stream_mid_write(card):
    speaker = PyAudioSpeaker()
    errors = []

    def play():
        try:
            for _ in range(100):
                speaker.play(CHUNK, 22050)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    playing = threading.Thread(target=play)
    playing.start()
    slowest = 0.0
    while playing.is_alive():
        started = time.monotonic()
        speaker.abort()
        slowest = max(slowest, time.monotonic() - started)
        time.sleep(0.003)
    speaker.close()
    assert errors == [] and card.touched_during_write == []
    assert slowest < 0.5  # never waits for a write (each takes 20 ms)
    assert len(card.streams) > 10  # aborts did close streams; playing reopened them


class LongTone:
    """A synthesizer whose every sentence is two seconds of tone."""

    voices = []

    def synthesize(self, text):
        return Audio(np.full(44100, 2000, np.int16), 22050)

    def set_rate(self, rate):
        pass

    def set_voice(self, voice):
        pass

    def close(self):
        pass


def test_an_abort_that_fails_never_turns_speech_off(card):
    card.failing = {"is_stopped", "stop_stream", "close"}  # PortAudio errors on every way of stopping
    events = []
    voice = VoiceOut(PyAudioSpeaker(), events.append, synth_factory=lambda voice, rate: LongTone())
    voice.start()
    try:
        voice.say("First.")
        deadline = time.monotonic() + 20
        while "speaking" not in [e.kind for e in events] and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)
        voice.stop()  # must not raise, nor end speech
        voice.say("Second.")
        assert voice.wait_idle(30)
        assert [e.text for e in events if e.kind == "sentence"] == ["First.", "Second."]
        assert voice.enabled and not [e for e in events if e.kind in ("error", "disabled")]
    finally:
        voice.close()


# -- file descriptor 2 ----------------------------------------------------------------------------


def test_concurrent_stderr_silencing_always_gives_stderr_back(monkeypatch):
    """Device listing and device opening silence fd 2 from different threads, nested too."""

    class ChattyPyAudio:  # what list_input_devices creates: slow to start, no inputs
        def __init__(self):
            time.sleep(0.001)

        def get_device_count(self):
            return 0

        def terminate(self):
            pass

    import pyaudio

    monkeypatch.setattr(pyaudio, "PyAudio", ChattyPyAudio)
    devnull = os.stat(os.devnull)
    before = os.fstat(2)
    not_silenced = []

    def silence_nested():
        for _ in range(300):
            with native_stderr_silenced():
                with native_stderr_silenced():
                    if os.fstat(2).st_rdev != devnull.st_rdev:
                        not_silenced.append(1)
                time.sleep(0)

    def list_devices():
        for _ in range(100):
            microphone.list_input_devices()

    threads = [threading.Thread(target=silence_nested) for _ in range(4)] + [threading.Thread(target=list_devices)]
    old_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # switch threads often: races show up at once
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        sys.setswitchinterval(old_interval)
    after = os.fstat(2)
    assert (after.st_dev, after.st_ino) == (before.st_dev, before.st_ino)  # stderr is where it was
    assert not_silenced == []  # and inside a block it really was silenced
    assert audio._STDERR_LOCK.acquire(blocking=False)  # and nobody holds the lock
    audio._STDERR_LOCK.release()


# -- the microphone: stop from several threads ------------------------------------------------------


class CountingInput:
    def __init__(self, counts: dict) -> None:
        self.counts = counts

    def stop_stream(self):
        self.counts["stop_stream"] += 1

    def close(self):
        self.counts["close"] += 1

    def terminate(self):
        self.counts["terminate"] += 1


def preempted_after_read(name: str) -> property:
    """An attribute whose reader lets other threads run right after reading it, as if preempted there."""

    def read(self):
        value = self.__dict__.get(name)
        time.sleep(0.001)
        return value

    def write(self, value):
        self.__dict__[name] = value

    return property(read, write)


class PreemptedMicrophone(PyAudioMicrophone):
    _stream = preempted_after_read("stream")
    _pa = preempted_after_read("pa")


def test_stopping_a_microphone_from_many_threads_closes_it_once():
    for _ in range(20):
        counts = {"stop_stream": 0, "close": 0, "terminate": 0}
        mic = PreemptedMicrophone()
        mic._stream = mic._pa = CountingInput(counts)
        go = threading.Barrier(6)

        def stop():
            go.wait(10)
            mic.stop()

        threads = [threading.Thread(target=stop) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert counts == {"stop_stream": 1, "close": 1, "terminate": 1}
        mic.stop()  # and once more, afterwards: nothing
        assert counts["terminate"] == 1


# -- the real PortAudio path --------------------------------------------------------------------------


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the FIFO sound card needs Linux and ALSA")
def test_stop_silences_a_real_portaudio_device_at_once():
    """PyAudio → PortAudio → ALSA, on a device that plays into a FIFO read in real time."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "stop_to_silence.py"), "--runs", "3", "--json"],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )
    lines = done.stdout.strip().splitlines()
    result = json.loads(lines[-1]) if lines else {}
    if done.returncode == 2 and "skip" in result:
        pytest.skip(result["skip"])
    assert done.returncode == 0, done.stderr
    assert result["speech_goes_on"] and result["problems"] == []
    assert result["handed_ms"]["max"] <= 40.5  # at most the chunk being written and one that had begun
    # What reached the device after stop: that chunk plus ALSA's 46 ms buffer, which the file
    # PCM writes out on abort where a card drops it.
    assert result["after_stop_ms"]["median"] < 150
    assert result["stop_call_ms"]["max"] < 250  # the GUI thread never waits for a write
