"""What the wake word costs, and whether it hears what it should.

1. **CPU per second of audio** of the detector alone (pymicro-wakeword's microWakeWord
   "hey_jarvis", fed 32 ms chunks as the listener feeds it), over 100 s of speech.
2. **The listening thread with and without it**, side by side in one run (alternating,
   median of ``--repeats``): the same recording through ``VoiceIn`` (Silero VAD,
   hands-free), as fast as it can go; the figure is the thread's CPU per second of audio.
3. **Detection** on the committed recordings (a neural voice, ``tests/recordings/wake_word``)
   at several noise levels: fires on wake phrases, and false fires on other speech.

    python benchmarks/wake_word.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from assistant.devices.microphone import CHUNK, SAMPLE_RATE, AudioFileMicrophone  # noqa: E402
from assistant.encoders.listener import VoiceIn  # noqa: E402
from assistant.encoders.wake_word import WakeGate, WakeWordDetector  # noqa: E402
from tests.wake_speech import lay_out, phrase  # noqa: E402

WAKE = ["hey_jarvis", "hey_jarvis_slow", "hey_jarvis_tell_me_a_joke", "hey_jarvis_what_is_the_capital_of_france"]
OTHER = ["what_time_is_it", "tell_me_a_joke", "the_weather_is_nice_today", "i_will_call_you_back_later",
         "the_meeting_starts_at_noon"]


def talk(folder: Path) -> Path:
    script = []
    names = OTHER * 6 + WAKE * 2
    for i, name in enumerate(names):
        script.append((1.0 + (i % 3) * 0.5, name))
    return lay_out(folder / "talk.wav", script).path


def detector_cost(samples: np.ndarray) -> tuple[float, int]:
    detector = WakeWordDetector("hey_jarvis")
    fired = 0
    began = time.process_time()
    for i in range(0, len(samples) - CHUNK + 1, CHUNK):
        fired += detector.feed(samples[i:i + CHUNK])
    cpu = time.process_time() - began
    detector.close()
    return cpu / (len(samples) / SAMPLE_RATE) * 1000, fired


def listener_cpu(path: Path, wake: bool) -> float:
    """The listening thread's own CPU time per second of audio, in ms."""
    cpu: list[float] = []
    original = VoiceIn._run

    def timed_run(self) -> None:
        began = time.thread_time()
        try:
            original(self)
        finally:
            cpu.append(time.thread_time() - began)

    mic = AudioFileMicrophone(path, realtime=False)
    factory = (lambda: WakeGate(WakeWordDetector("hey_jarvis"), follow_up=5.0)) if wake else None
    listener = VoiceIn(mic, lambda u: None, hands_free=True, wake_factory=factory)
    listener._run = lambda: timed_run(listener)
    listener.start()
    listener.wait_ended(600)
    listener.close()
    seconds = len(AudioFileMicrophone.load(path)) / SAMPLE_RATE
    return cpu[0] / seconds * 1000


def detection(noise_levels: list[float]) -> list[tuple[float, int, int, int, int]]:
    rows = []
    rng = np.random.default_rng(0)
    for noise in noise_levels:
        hits = false = 0
        for name in WAKE + OTHER:
            samples = np.concatenate([np.zeros(8000), phrase(name).astype(np.float64), np.zeros(16000)])
            samples += rng.standard_normal(len(samples)) * noise
            samples = np.clip(samples, -32768, 32767).astype(np.int16)
            detector = WakeWordDetector("hey_jarvis")
            fired = sum(detector.feed(samples[i:i + CHUNK]) for i in range(0, len(samples) - CHUNK + 1, CHUNK))
            detector.close()
            if name in WAKE:
                hits += fired >= 1
            else:
                false += fired
        rows.append((noise, hits, len(WAKE), false, len(OTHER)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    threading.current_thread().name = "bench"
    with tempfile.TemporaryDirectory() as tmp:
        path = talk(Path(tmp))
        samples = AudioFileMicrophone.load(path)
        seconds = len(samples) / SAMPLE_RATE
        print(f"recording: {seconds:.1f} s of speech and pauses (faint noise), {len(WAKE) * 2} wake phrases")
        costs = [detector_cost(samples) for _ in range(args.repeats)]
        print(f"detector alone: {statistics.median(c for c, _ in costs):.2f} ms CPU per second of audio "
              f"(median of {args.repeats}); fired {costs[0][1]} times")
        without, with_wake = [], []
        for _ in range(args.repeats):
            without.append(listener_cpu(path, wake=False))
            with_wake.append(listener_cpu(path, wake=True))
        a, b = statistics.median(without), statistics.median(with_wake)
        print(f"listening thread (VAD, hands-free): {a:.2f} ms CPU per s of audio without the wake word, "
              f"{b:.2f} ms with it: +{b - a:.2f} ms ({(b - a) / 10:.2f} % of one core)")
    print("detection on the committed recordings (noise: standard deviation in 16-bit steps):")
    for noise, hits, wakes, false, others in detection([0.0, 100.0, 300.0, 1000.0]):
        print(f"  noise {noise:6.0f}: fired on {hits}/{wakes} wake phrases, {false} false fires on {others} others")


if __name__ == "__main__":
    main()
