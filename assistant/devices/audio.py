"""Audio shared by the microphone and the speaker: buffers, audio files, resampling, PortAudio's lock.

Files are read with libsndfile (``soundfile``): every WAV subtype (8/16/24/32-bit,
32-bit float as Audacity exports it), FLAC, OGG/Vorbis, Opus and MP3.  Sample rates
are converted with the SoX resampler (``soxr``), which filters properly: linear
interpolation folded everything above 8 kHz back into the speech band when going
from 48 to 16 kHz.
"""

from __future__ import annotations

import contextlib
import os
import threading
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


# What a file microphone can play (what libsndfile reads).
AUDIO_FILE_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif")


class AudioFileError(ValueError):
    """An audio file that cannot be read; the message says why, for a user."""


def is_audio_file_name(spec: str) -> bool:
    return spec.lower().endswith(AUDIO_FILE_SUFFIXES)


def resample(samples: np.ndarray, rate: int, target: int) -> np.ndarray:
    """Mono int16 audio from ``rate`` to ``target`` Hz (SoX's resampler, band-limited)."""
    if rate == target or len(samples) == 0:
        return samples
    import soxr

    return soxr.resample(np.ascontiguousarray(samples, dtype=np.int16), rate, target, quality="HQ")


class StreamResampler:
    """Resampling of a stream that arrives in blocks, without clicks at the block edges."""

    def __init__(self, rate: int, target: int) -> None:
        import soxr

        self._stream = soxr.ResampleStream(rate, target, 1, dtype="int16", quality="HQ")

    def push(self, samples: np.ndarray) -> np.ndarray:
        return self._stream.resample_chunk(np.ascontiguousarray(samples, dtype=np.int16))


def read_audio(path: str | Path) -> Audio:
    """An audio file (WAV of any subtype, FLAC, OGG, Opus, MP3, AIFF) as mono int16."""
    import soundfile

    try:
        # As float: libsndfile's float-to-integer conversion truncates a float WAV to silence.
        data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except soundfile.LibsndfileError as exc:
        raise AudioFileError(_sndfile_reason(exc)) from None
    except (RuntimeError, TypeError, ValueError) as exc:
        raise AudioFileError(str(exc) or type(exc).__name__) from None
    mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    samples = np.clip(np.rint(mono * 32768.0), -32768, 32767).astype(np.int16)
    return Audio(np.ascontiguousarray(samples), int(rate))


def _sndfile_reason(exc: Exception) -> str:
    text = str(getattr(exc, "error_string", "") or exc).strip()
    if "format" in text.lower() or "recogni" in text.lower():
        return "its format is not one this app can read (WAV, FLAC, OGG, Opus, MP3, AIFF)"
    return text.rstrip(".") or "libsndfile could not read it"


# File descriptor 2 belongs to the whole process: one redirection at a time.  Were two
# threads to overlap, the second would save /dev/null as "the real stderr" and restore
# it last, silencing the process for good.  Re-entrant: a nested block in the same
# thread saves and restores /dev/null, and the outer block restores the real stderr.
_STDERR_LOCK = threading.RLock()


@contextlib.contextmanager
def native_stderr_silenced():
    """Hide what C libraries write to file descriptor 2 for the duration of the block."""
    with _STDERR_LOCK:
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
