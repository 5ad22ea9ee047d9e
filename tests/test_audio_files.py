"""Audio files as microphones (every WAV subtype, FLAC, OGG, Opus, MP3) and band-limited resampling."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile

from assistant.devices.audio import StreamResampler, read_audio, resample
from assistant.devices.microphone import SAMPLE_RATE, AudioFileMicrophone, open_microphone


def tone(freq: float, rate: int, seconds: float = 1.0, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.asarray(x, np.float64) ** 2)))


@pytest.mark.parametrize("name, fmt, subtype", [
    ("float32.wav", "WAV", "FLOAT"),  # Audacity's default export
    ("pcm24.wav", "WAV", "PCM_24"),
    ("speech.flac", "FLAC", "PCM_16"),
    ("speech.ogg", "OGG", "VORBIS"),
    ("speech.opus", "OGG", "OPUS"),
    ("speech.mp3", "MP3", "MPEG_LAYER_III"),
])
def test_audio_files_play_as_the_microphone(tmp_path, name, fmt, subtype):
    rate = 48000
    stereo = np.stack([tone(440, rate, 2.0), tone(440, rate, 2.0)], axis=1)
    path = tmp_path / name
    soundfile.write(str(path), stereo, rate, format=fmt, subtype=subtype)
    mic = open_microphone(str(path), realtime=False)
    assert isinstance(mic, AudioFileMicrophone)
    samples = AudioFileMicrophone.load(path)
    assert abs(len(samples) / SAMPLE_RATE - 2.0) < 0.1  # at 16 kHz, the whole recording
    assert 0.3 < rms(samples / 32768.0) < 0.4  # a sine of amplitude 0.5 (lossy codecs stay close)


def test_resampling_filters_what_16_khz_cannot_hold():
    # A 10 kHz whistle recorded at 48 kHz is above 16 kHz audio's 8 kHz limit: it must be
    # filtered out, not folded back into the speech band as a 6 kHz tone.
    whistle = (tone(10_000, 48_000) * 32767).astype(np.int16)
    voice = (tone(300, 48_000) * 32767).astype(np.int16)
    assert rms(resample(whistle, 48_000, 16_000)) < 0.01 * rms(whistle)
    assert rms(resample(voice, 48_000, 16_000)) > 0.95 * rms(voice)


def test_a_stream_resampled_in_blocks_matches_the_whole():
    signal = (tone(300, 44_100, 2.0) * 32767).astype(np.int16)
    stream = StreamResampler(44_100, 16_000)
    pieces = [stream.push(signal[i:i + 1024]) for i in range(0, len(signal), 1024)]
    blocks = np.concatenate(pieces)
    whole = resample(signal, 44_100, 16_000)
    n = min(len(blocks), len(whole)) - 400  # the stream holds back its filter's delay at the end
    assert n > 30_000
    assert np.max(np.abs(blocks[:n].astype(int) - whole[:n].astype(int))) <= 2  # no clicks at block edges


def test_mono_and_rate_of_a_stereo_file_are_reported(tmp_path):
    path = tmp_path / "stereo.wav"
    soundfile.write(str(path), np.stack([tone(200, 22_050), -tone(200, 22_050)], axis=1), 22_050, subtype="PCM_16")
    audio = read_audio(path)
    assert audio.rate == 22_050 and audio.samples.ndim == 1 and rms(audio.samples) < 50  # the channels cancel
