"""Stop → silence on the real PortAudio path (PyAudio → PortAudio → ALSA), without a sound card.

The "sound card" is ALSA's ``file`` PCM writing into a FIFO that this script
drains at real-time pace (22050 Hz mono int16, espeak-ng's rate).  ALSA's own
``null`` device swallows audio as fast as it comes, so it cannot pace writes;
a pipe that is read in real time blocks a blocking ``write`` as a card's buffer
does.  A pipe frees room a whole page (4 KiB, 93 ms here) at a time, so a write
into this card may wait up to 93 ms, where a card frees a period (~23 ms).

Each run speaks a long sentence through ``VoiceOut`` and ``PyAudioSpeaker``,
calls ``stop()`` mid-sentence and measures:

- handed after stop: sound the app handed to PortAudio in writes that ended
  after ``stop()`` (the write in progress is counted whole);
- writes end: from ``stop()`` until the last ``write()`` into PortAudio returned
  (no frame is handed to the device after that; bounded by the page above);
- pushed after stop: sound that reached the device file after ``stop()`` (read
  from the pipe since, plus what is still in it, minus what was in it then).
  This includes ALSA's buffer (PortAudio asks for 2 × 512 frames, 46 ms):
  alsa-lib's ``file`` PCM writes its buffer out on drop and close, where a card
  discards it on abort, so about 46 ms of this figure is never heard on a card;
- stop call: how long ``stop()`` itself took (the GUI thread calls it);
- stop → idle: until the speech thread reported silence;
- speech goes on: a sentence said after the stop is played.

    python benchmarks/stop_to_silence.py [--runs 10] [--json]

Exit status 0 when measured, 2 when PortAudio cannot open any output device
(``--json`` prints ``{"skip": reason}`` then).
"""

from __future__ import annotations

import argparse
import array
import fcntl
import json
import os
import random
import statistics
import sys
import tempfile
import termios
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

RATE = 22050  # espeak-ng's output rate
BYTES_PER_SECOND = RATE * 2
F_SETPIPE_SZ = 1031  # Linux fcntl: set a pipe's capacity
PIPE_BYTES = 4096  # the smallest pipe: 93 ms of sound, the "card's buffer"
TICK = 0.005  # the reader takes what 5 ms of sound is worth, every 5 ms

LONG_SENTENCE = (
    "This sentence is long on purpose, it goes on and on with many words, so that there is "
    "plenty of time to interrupt it, and it keeps going for several seconds, much longer than "
    "any buffer in the sound system could hold, and then it still goes on for a while"
)


class PacedFifoCard:
    """An ALSA default device that plays into a FIFO drained at real-time pace.

    Writes ``~/.asoundrc`` in ``folder`` and points ``HOME`` there: call it
    before PortAudio starts in this process.
    """

    def __init__(self, folder: Path) -> None:
        fifo = folder / "card.fifo"
        os.mkfifo(fifo)
        # Read and write: opening never waits for a writer, and reads never see end-of-file
        # when PortAudio closes and reopens the device.
        self._fd = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)
        fcntl.fcntl(self._fd, F_SETPIPE_SZ, PIPE_BYTES)
        (folder / ".asoundrc").write_text(
            'pcm.!default {\n type file\n slave.pcm "null"\n file "%s"\n format "raw"\n}\n' % fifo
        )
        os.environ["HOME"] = str(folder)  # ALSA reads ~/.asoundrc
        self._lock = threading.Lock()
        self._consumed = 0
        self._running = True
        self._thread = threading.Thread(target=self._drain, name="fifo-card", daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        per_tick = int(BYTES_PER_SECOND * TICK) & ~1
        next_tick = time.monotonic()
        while self._running:
            next_tick += TICK
            time.sleep(max(0.0, next_tick - time.monotonic()))
            with self._lock:
                try:  # an underrun plays silence: no debt is carried over
                    self._consumed += len(os.read(self._fd, per_tick))
                except BlockingIOError:
                    pass

    def _queued(self) -> int:
        buf = array.array("i", [0])
        fcntl.ioctl(self._fd, termios.FIONREAD, buf)
        return buf[0]

    def written(self) -> int:
        """Bytes the app has pushed into the card so far."""
        with self._lock:
            return self._consumed + self._queued()

    def close(self) -> None:
        self._running = False
        self._thread.join(1)
        os.close(self._fd)


def wait_for(events, kind, since, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for e in list(events):
            if e.kind == kind and e.time >= since:
                return e
        time.sleep(0.002)
    raise TimeoutError(f"no '{kind}' event within {timeout} s")


def wait_until_writes_stop(card: PacedFifoCard, quiet: float = 0.4, timeout: float = 10.0) -> int:
    """``card.written()`` once it has not grown for ``quiet`` seconds."""
    last, changed = card.written(), time.monotonic()
    deadline = changed + timeout
    while time.monotonic() < deadline:
        time.sleep(0.01)
        now = card.written()
        if now != last:
            last, changed = now, time.monotonic()
        elif time.monotonic() - changed >= quiet:
            break
    return last


def measure(runs: int, seed: int = 0) -> dict:
    from assistant.devices.audio import AudioDeviceError
    from assistant.devices.speaker import PyAudioSpeaker
    from assistant.speech.voice_out import VoiceOut

    class TimedSpeaker(PyAudioSpeaker):
        """Remembers when each write returned, and how much sound it held (seconds)."""

        writes: list[tuple[float, float]] = []

        def play(self, chunk, rate):
            super().play(chunk, rate)
            self.writes.append((time.monotonic(), len(chunk) / rate))

    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="stop-to-silence-") as tmp:
        card = PacedFifoCard(Path(tmp))
        try:
            try:
                speaker = TimedSpeaker()
            except AudioDeviceError as exc:
                return {"skip": f"PortAudio cannot open any output device: {exc}"}
            events: list = []
            voice = VoiceOut(speaker, events.append)
            voice.start()
            handed_ms, writes_end_ms, after_stop_ms, stop_call_ms, stop_to_idle_ms, goes_on = [], [], [], [], [], []
            try:
                for _ in range(runs):
                    began = time.monotonic()
                    voice.say(LONG_SENTENCE)
                    wait_for(events, "speaking", began)
                    time.sleep(rng.uniform(0.5, 1.5))
                    speaker.writes.clear()
                    stopped_at = time.monotonic()
                    before = card.written()
                    voice.stop()
                    stop_call_ms.append((time.monotonic() - stopped_at) * 1000)
                    idle = wait_for(events, "idle", stopped_at)
                    stop_to_idle_ms.append((idle.time - stopped_at) * 1000)
                    after = wait_until_writes_stop(card)
                    late = [(end, seconds) for end, seconds in speaker.writes if end > stopped_at]
                    handed_ms.append(sum(seconds for _, seconds in late) * 1000)
                    writes_end_ms.append(max((end - stopped_at for end, _ in late), default=0.0) * 1000)
                    after_stop_ms.append((after - before) / BYTES_PER_SECOND * 1000)
                    voice.say("Still here.")
                    goes_on.append(voice.wait_idle(20) and wait_until_writes_stop(card) - after > 0.3 * BYTES_PER_SECOND)
            finally:
                voice.close()
            problems = [e.text for e in events if e.kind in ("error", "disabled")]
        finally:
            card.close()

    def summary(values: list[float]) -> dict:
        return {"median": statistics.median(values), "max": max(values), "all": [round(v, 1) for v in values]}

    return {
        "device": speaker.name,
        "handed_ms": summary(handed_ms),
        "writes_end_ms": summary(writes_end_ms),
        "after_stop_ms": summary(after_stop_ms),
        "stop_call_ms": summary(stop_call_ms),
        "stop_to_idle_ms": summary(stop_to_idle_ms),
        "speech_goes_on": all(goes_on),
        "problems": problems,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    if not sys.platform.startswith("linux"):
        result = {"skip": "the FIFO sound card needs Linux and ALSA"}
    else:
        result = measure(args.runs)
    if args.json:
        print(json.dumps(result))
    elif "skip" in result:
        print(result["skip"])
    else:
        print(f"device: {result['device']} (ALSA file PCM → FIFO drained in real time, {PIPE_BYTES} B buffer)")
        for key, label in (("handed_ms", "sound handed after stop()"), ("writes_end_ms", "stop() → last write returned"),
                           ("after_stop_ms", "sound pushed after stop()"), ("stop_call_ms", "stop() call"),
                           ("stop_to_idle_ms", "stop() → idle event")):
            s = result[key]
            print(f"{label:28s} median {s['median']:6.1f} ms   max {s['max']:6.1f} ms   {s['all']}")
        print(f"speech goes on after each stop: {result['speech_goes_on']}; problems reported: {result['problems']}")
    return 2 if "skip" in result else 0


if __name__ == "__main__":
    sys.exit(main())
