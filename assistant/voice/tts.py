"""Text-to-speech with pyttsx3 (espeak-ng on Linux, SAPI5 on Windows, NSSpeechSynthesizer on macOS).

pyttsx3 engines must stay in the thread that made them and cannot reliably
interrupt themselves, so each sentence is synthesized *to a file* in the speech
thread and played through a ``Speaker`` in short chunks: stopping is then a
matter of not writing the next chunk.
"""

from __future__ import annotations

import logging
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import AssistantError
from .audio import Audio, read_wav

log = logging.getLogger(__name__)


class TtsError(AssistantError):
    """Speech could not be synthesized."""


@dataclass(frozen=True)
class Voice:
    id: str
    name: str
    languages: tuple[str, ...] = ()


class Pyttsx3Synthesizer:
    """Owned by one thread: create it, use it and close it there."""

    def __init__(self, voice: str = "", rate: int = 0) -> None:
        try:
            import pyttsx3
        except ImportError as exc:
            raise TtsError(f"Speech output needs pyttsx3 ({exc}).") from None
        try:
            self._engine = pyttsx3.init()
        except Exception as exc:  # noqa: BLE001 - no speech engine on this system
            raise TtsError(f"No text-to-speech engine is available ({exc}); on Linux install espeak-ng.") from None
        if sys.platform.startswith("linux"):
            try:  # its espeak driver prints "Audio saved to …" on stdout
                import pyttsx3.drivers.espeak as espeak_driver

                espeak_driver.print = lambda *args, **kwargs: None
            except ImportError:
                pass
        self._dir = tempfile.TemporaryDirectory(prefix="assistant-tts-")
        self._count = 0
        self.voices = self._list_voices()
        self.set_voice(voice)
        self.set_rate(rate)

    def _list_voices(self) -> list[Voice]:
        voices = []
        for v in self._engine.getProperty("voices") or []:
            langs = tuple(
                lang.decode(errors="ignore").lstrip("\x05") if isinstance(lang, bytes) else str(lang)
                for lang in (getattr(v, "languages", None) or [])
            )
            voices.append(Voice(str(v.id), str(v.name or v.id), langs))
        return voices

    def find_voice(self, wanted: str) -> Voice | None:
        if not wanted:
            return None
        for test in (
            lambda v: v.id == wanted,
            lambda v: v.name.lower() == wanted.lower(),
            lambda v: wanted.lower() in v.name.lower() or wanted.lower() in v.id.lower(),
        ):
            for voice in self.voices:
                if test(voice):
                    return voice
        return None

    def set_voice(self, wanted: str) -> None:
        if not wanted:
            return
        voice = self.find_voice(wanted)
        if voice is None:
            raise TtsError(f"There is no voice called '{wanted}'.")
        self._engine.setProperty("voice", voice.id)

    def set_rate(self, words_per_minute: int) -> None:
        if words_per_minute:
            self._engine.setProperty("rate", int(words_per_minute))

    def synthesize(self, text: str) -> Audio:
        self._count += 1
        path = Path(self._dir.name) / f"s{self._count % 8}.wav"
        try:
            self._engine.save_to_file(text, str(path))
            self._engine.runAndWait()
            audio = read_wav(path)
        except Exception as exc:  # noqa: BLE001
            raise TtsError(f"Speech could not be synthesized: {exc}") from None
        return Audio(np.ascontiguousarray(audio.samples), audio.rate)

    def close(self) -> None:
        try:
            self._engine.stop()
        except Exception:  # noqa: BLE001
            pass
        self._dir.cleanup()
