"""Voice-out latency: first token → first audio sample, and Stop → silence.

A reply is streamed into ``VoiceOut`` token by token at a model-like pace
(``--tps`` tokens per second, a token being a word piece of ~4 characters)
while it speaks into a real-time WAV recorder (paced like a sound card).

1. First audio: from the first token, and from the moment the first sentence
   was complete (what synthesis and the queue add).
2. Stop: ``stop()`` at random moments mid-speech; time until the speech thread
   reports silence (target ≤ 100 ms), and audio written after the stop.

    python benchmarks/voice_out.py [--runs 10] [--tps 25]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from assistant.devices.speaker import WavRecorderSpeaker  # noqa: E402
from assistant.speech.voice_out import VoiceOut  # noqa: E402

REPLY = (
    "The picture shows a small red house with a brown roof. "
    "A tall green tree stands to the right of it, and the sun is shining in a clear blue sky. "
    "It looks like a quiet morning in the countryside."
)


def tokens(text: str) -> list[str]:
    out, word = [], ""
    for ch in text:
        word += ch
        if ch == " " or len(word) >= 4:
            out.append(word)
            word = ""
    return out + ([word] if word else [])


def wait_for(events, kind, since, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for e in events:
            if e.kind == kind and e.time >= since:
                return e
        time.sleep(0.001)
    raise TimeoutError(kind)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--tps", type=float, default=25.0, help="tokens per second of the simulated model")
    args = parser.parse_args()
    first_from_token, first_from_sentence, stop_latency, after_stop = [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(args.runs + 1):
            events = []
            speaker = WavRecorderSpeaker(Path(tmp) / f"run{run}.wav", realtime=True)
            voice = VoiceOut(speaker, events.append)
            voice.start()
            wait_for(events, "ready", 0)
            first_token = time.monotonic()
            sentence_done = None
            for piece in tokens(REPLY):
                voice.feed(1, piece)
                if sentence_done is None and voice._queue.qsize():
                    sentence_done = time.monotonic()  # the splitter released the first sentence
                time.sleep(1 / args.tps)
            voice.end_reply(1)
            speaking = wait_for(events, "speaking", first_token)
            # Stop at a random moment while it talks.
            time.sleep(random.uniform(0.2, 1.5))
            written = speaker.samples_written
            stopped = time.monotonic()
            voice.stop()
            idle = wait_for(events, "idle", stopped, timeout=2)
            time.sleep(0.2)
            late = (speaker.samples_written - written) / (speaker.rate or 22050)
            voice.close()
            if run:  # the first run warms up
                first_from_token.append(speaking.time - first_token)
                first_from_sentence.append(speaking.time - (sentence_done or first_token))
                stop_latency.append(idle.time - stopped)
                after_stop.append(late)
    ms = lambda xs: f"median {1000 * statistics.median(xs):6.1f} ms, max {1000 * max(xs):6.1f} ms"  # noqa: E731
    print(f"voice out: espeak-ng, real-time WAV recorder, {args.tps:g} tokens/s, {args.runs} runs")
    print(f"first token -> first audio sample:      {ms(first_from_token)}")
    print(f"first sentence complete -> first audio: {ms(first_from_sentence)}")
    print(f"stop -> silence (speech thread idle):   {ms(stop_latency)}  (target <= 100 ms)")
    print(f"audio written after stop:               {ms(after_stop)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
