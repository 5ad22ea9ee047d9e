"""Real speech for the tests, made with espeak-ng while they run.

``make_conversation`` speaks each sentence with espeak-ng, trims the synthesizer's
own leading/trailing silence, and lays the sentences out with known gaps, so
the tests know where every utterance starts and ends (to one sample).  The WAV
is written at any sample rate and channel count, to exercise resampling.

    espeak-ng -v en-us+f3 -s 140 -w x.wav "sentence"   # what each piece is made with
"""

from __future__ import annotations

import subprocess
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from assistant.devices.audio import read_audio, resample

VOICE = ("-v", "en-us+f3", "-s", "140")
SLOW_VOICE = ("-v", "en-gb", "-s", "110", "-g", "5")


@dataclass(frozen=True)
class Conversation:
    path: Path
    sentences: tuple[str, ...]
    spans: tuple[tuple[float, float], ...]  # (start, end) seconds of each sentence's speech
    rate: int
    channels: int


def speak(text: str, voice: tuple[str, ...] = VOICE) -> tuple[np.ndarray, int]:
    """``text`` spoken by espeak-ng: (int16 mono samples, rate), silence trimmed."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "s.wav"
        subprocess.run(["espeak-ng", *voice, "-w", str(out), text], check=True, capture_output=True)
        audio = read_audio(out)
    loud = np.flatnonzero(np.abs(audio.samples.astype(np.int32)) > 300)
    return audio.samples[loud[0]:loud[-1] + 1], audio.rate


def write_wav(path: Path, samples: np.ndarray, rate: int, channels: int = 1, width: int = 2) -> Path:
    data = samples.astype(np.int16)
    if channels > 1:
        data = np.repeat(data[:, None], channels, axis=1).reshape(-1)
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(width)
        wav.setframerate(rate)
        if width == 1:
            wav.writeframes(((data.astype(np.int32) >> 8) + 128).astype(np.uint8).tobytes())
        else:
            wav.writeframes(data.astype("<i2").tobytes())
    return path


def make_conversation(
    path: Path,
    sentences: list[str],
    rate: int = 16000,
    channels: int = 1,
    gap: float = 1.2,
    lead: float = 0.8,
    voice: tuple[str, ...] = VOICE,
    noise: float = 0.0,
) -> Conversation:
    """Sentences separated by ``gap`` seconds of silence (or of ``noise`` RMS hiss), as a WAV."""
    rng = np.random.default_rng(0)
    pieces, spans = [], []
    t = lead
    pieces.append(np.zeros(int(lead * rate), np.int16))
    for sentence in sentences:
        samples, native = speak(sentence, voice)
        samples = resample(samples, native, rate)
        spans.append((t, t + len(samples) / rate))
        pieces += [samples, np.zeros(int(gap * rate), np.int16)]
        t += len(samples) / rate + int(gap * rate) / rate
    audio = np.concatenate(pieces)
    if noise:
        audio = np.clip(audio + rng.normal(0, noise, len(audio)), -32768, 32767).astype(np.int16)
    write_wav(path, audio, rate, channels)
    return Conversation(path, tuple(sentences), tuple(spans), rate, channels)


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Word-level edit distance over the reference length (case and punctuation ignored)."""

    def words(text: str) -> list[str]:
        return "".join(c.lower() if c.isalnum() or c.isspace() or c == "'" else " " for c in text).split()

    ref, hyp = words(reference), words(hypothesis)
    d = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, d[0] = d[0], i
        for j, h in enumerate(hyp, 1):
            prev, d[j] = d[j], min(d[j] + 1, d[j - 1] + 1, prev + (r != h))
    return d[len(hyp)] / max(1, len(ref))
