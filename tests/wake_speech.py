"""Speech for the wake-word tests: phrases said by a neural voice, laid out with known gaps.

The wake-word models never fire on espeak-ng, so these phrases were said once by
Piper's "joe" voice and committed (``tests/recordings/wake_word``; made by
``scripts/make_wake_word_recordings.py``, which says why Piper stays test tooling).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from assistant.devices.audio import read_audio
from assistant.devices.microphone import SAMPLE_RATE
from tests.speech import write_wav

RECORDINGS = Path(__file__).parent / "recordings" / "wake_word"


def phrase(name: str) -> np.ndarray:
    """One recorded phrase (16 kHz int16), by file name without ``.wav``."""
    audio = read_audio(RECORDINGS / f"{name}.wav")
    assert audio.rate == SAMPLE_RATE
    return audio.samples


@dataclass(frozen=True)
class Talk:
    path: Path
    phrases: tuple[str, ...]
    spans: tuple[tuple[float, float], ...]  # (start, end) seconds of each phrase


def lay_out(path: Path, script: list[tuple[float, str]], tail: float = 1.5, noise: float = 30.0,
            seed: int = 3) -> Talk:
    """``script``: (seconds of silence before it, phrase name) in order; faint noise under it all."""
    pieces, spans, at = [], [], 0.0
    for gap, name in script:
        pieces.append(np.zeros(round(gap * SAMPLE_RATE), np.int16))
        samples = phrase(name)
        at += gap
        spans.append((at, at + len(samples) / SAMPLE_RATE))
        at += len(samples) / SAMPLE_RATE
        pieces.append(samples)
    pieces.append(np.zeros(round(tail * SAMPLE_RATE), np.int16))
    audio = np.concatenate(pieces).astype(np.float64)
    audio += np.random.default_rng(seed).standard_normal(len(audio)) * noise
    write_wav(path, np.clip(audio, -32768, 32767).astype(np.int16), SAMPLE_RATE)
    return Talk(path, tuple(name for _, name in script), tuple(spans))
