"""Text-to-speech: espeak-ng on Linux, pyttsx3 (SAPI5, NSSpeechSynthesizer) elsewhere.

Each sentence is synthesized to audio in the speech thread and played through a
``Speaker`` in short chunks: stopping is then a matter of not writing the next
chunk, which no TTS engine's own "stop" does reliably.

On Linux the espeak-ng program is called directly (one short process per
sentence, ~15 ms).  pyttsx3 drives the same espeak-ng library, but with it a
change of rate or voice applied to later ``save_to_file`` calls only some of the
time (measured: 16 alternating rate changes, 7 gave the wrong length), so it is
used only where it drives the platform's own engine.
"""

from __future__ import annotations

import io
import logging
import shutil
import subprocess
import sys
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from assistant.errors import AssistantError
from assistant.devices.audio import Audio, read_audio

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
        self._set("voice", voice.id)

    def set_rate(self, words_per_minute: int) -> None:
        if words_per_minute:
            self._set("rate", int(words_per_minute))

    def _set(self, name: str, value: object) -> None:
        """Set a property and run the loop once: pyttsx3 queues property changes, and
        (seen with espeak-ng) one queued in the same loop as a save_to_file applies late."""
        self._engine.setProperty(name, value)
        self._engine.runAndWait()

    def synthesize(self, text: str) -> Audio:
        # One file, rewritten each time: with espeak-ng, pyttsx3 can flush a late
        # write to the previous save_to_file path when the loop runs again.
        path = Path(self._dir.name) / "sentence.wav"
        try:
            self._engine.save_to_file(text, str(path))
            self._engine.runAndWait()
            audio = read_audio(path)
        except Exception as exc:  # noqa: BLE001
            raise TtsError(f"Speech could not be synthesized: {exc}") from None
        return Audio(np.ascontiguousarray(audio.samples), audio.rate)

    def close(self) -> None:
        try:
            self._engine.stop()
        except Exception:  # noqa: BLE001
            pass
        self._dir.cleanup()


class EspeakNgSynthesizer:
    """espeak-ng through its command line: stateless, thread-safe, exact rate and voice."""

    def __init__(self, voice: str = "", rate: int = 0) -> None:
        self._exe = shutil.which("espeak-ng") or shutil.which("espeak")
        if not self._exe:
            raise TtsError("Speech output needs espeak-ng (on Debian/Ubuntu: apt install espeak-ng).")
        self.voices = self._list_voices()
        self._voice = ""
        self._rate = 175
        self.set_voice(voice)
        self.set_rate(rate)

    def _list_voices(self) -> list[Voice]:
        try:
            out = subprocess.run([self._exe, "--voices"], capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.SubprocessError) as exc:
            raise TtsError(f"espeak-ng does not run: {exc}") from None
        voices = []
        for line in out.splitlines()[1:]:
            parts = line.split()
            if len(parts) >= 4:  # Pty Language Age/Gender VoiceName File ...
                voices.append(Voice(id=parts[1], name=parts[3].replace("_", " "), languages=(parts[1],)))
        return voices

    find_voice = Pyttsx3Synthesizer.find_voice

    def set_voice(self, wanted: str) -> None:
        if not wanted:
            self._voice = ""
            return
        voice = self.find_voice(wanted)
        if voice is None:
            raise TtsError(f"There is no voice called '{wanted}'.")
        self._voice = voice.id

    def set_rate(self, words_per_minute: int) -> None:
        if words_per_minute:
            self._rate = int(words_per_minute)

    def synthesize(self, text: str) -> Audio:
        cmd = [self._exe, "--stdout", "-s", str(self._rate)]
        if self._voice:
            cmd += ["-v", self._voice]
        try:
            done = subprocess.run(cmd + ["--stdin"], input=text.encode("utf-8"), capture_output=True, timeout=60)
        except (OSError, subprocess.SubprocessError) as exc:
            raise TtsError(f"Speech could not be synthesized: {exc}") from None
        if done.returncode != 0 or not done.stdout:
            raise TtsError(f"Speech could not be synthesized: {done.stderr.decode(errors='replace').strip()}")
        try:
            with wave.open(io.BytesIO(done.stdout)) as wav:  # streamed WAV: its length field is a placeholder
                rate = wav.getframerate()
                samples = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
        except (wave.Error, EOFError, ValueError) as exc:  # not a 16-bit WAV, or cut short
            raise TtsError(f"Speech could not be synthesized: espeak-ng gave no usable audio ({exc}).") from None
        return Audio(np.array(samples, dtype=np.int16), rate)

    def close(self) -> None:
        pass


def default_synthesizer(voice: str = "", rate: int = 0) -> EspeakNgSynthesizer | Pyttsx3Synthesizer:
    if sys.platform.startswith("linux") or not sys.platform.startswith(("win", "darwin")):
        return EspeakNgSynthesizer(voice, rate)
    return Pyttsx3Synthesizer(voice, rate)
