"""Audio shared by the microphone and the speaker: buffers, WAV reading, resampling, PortAudio's lock."""

from __future__ import annotations

import contextlib
import os
import threading
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from assistant.errors import AssistantError


# PortAudio's set-up and tear-down are not thread-safe: one at a time (speaker, microphone, device list).
PORTAUDIO_LOCK = threading.Lock()


class AudioDeviceError(AssistantError):
    """A sound device cannot be opened or used."""


@dataclass(frozen=True)
class Audio:
    samples: np.ndarray  # int16, mono
    rate: int

    @property
    def seconds(self) -> float:
        return len(self.samples) / self.rate if self.rate else 0.0


def resample(samples: np.ndarray, rate: int, target: int) -> np.ndarray:
    """Linear-interpolation resampling of mono int16 audio (speech-grade)."""
    if rate == target or len(samples) == 0:
        return samples
    n = max(1, round(len(samples) * target / rate))
    x = np.linspace(0, len(samples) - 1, n)
    return np.interp(x, np.arange(len(samples)), samples.astype(np.float32)).astype(np.int16)


def read_wav(path: str | Path) -> Audio:
    """Read a PCM WAV file as mono int16."""
    with wave.open(str(path), "rb") as wav:
        rate, channels, width = wav.getframerate(), wav.getnchannels(), wav.getsampwidth()
        frames = wav.readframes(wav.getnframes())
    if width == 2:
        data = np.frombuffer(frames, dtype="<i2")
    elif width == 1:
        data = ((np.frombuffer(frames, dtype=np.uint8).astype(np.int16) - 128) << 8).astype(np.int16)
    elif width == 3:  # 24-bit: keep the top two bytes of each little-endian sample
        raw = np.frombuffer(frames, dtype=np.uint8).reshape(-1, 3)
        data = (raw[:, 1].astype(np.uint16) | (raw[:, 2].astype(np.uint16) << 8)).view(np.int16)
    elif width == 4:
        data = (np.frombuffer(frames, dtype="<i4") >> 16).astype(np.int16)
    else:
        raise ValueError(f"unsupported sample width {width}")
    if channels > 1:
        data = data.reshape(-1, channels).mean(axis=1).astype(np.int16)
    return Audio(np.array(data, dtype=np.int16), rate)


@contextlib.contextmanager
def native_stderr_silenced():
    """Hide what C libraries write to file descriptor 2 for the duration of the block."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
