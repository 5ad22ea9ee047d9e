"""Real time: a file microphone at wall-clock speed, a time-aligned WAV recorder, and
``--headless --realtime`` end to end (second t of the reply recording is second t of the
microphone's recording)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from assistant.devices.audio import read_audio
from assistant.devices.microphone import CHUNK, SAMPLE_RATE, MicrophoneEnded, open_microphone
from assistant.devices.speaker import WavRecorderSpeaker, open_speaker
from assistant.devices.timeline import Timeline
from tests.speech import make_conversation, write_wav
from tests.test_cli import run

TTS_RATE = 22050  # espeak-ng's rate: what the recorder is usually fed


def tone(seconds: float, rate: int = TTS_RATE, hz: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.5 * 32767 * np.sin(2 * np.pi * hz * t)).astype(np.int16)


def play_at(speaker, origin: float, at: float, samples: np.ndarray, rate: int = TTS_RATE) -> float:
    """Wait until ``at`` seconds after ``origin``, then play ``samples`` in 20 ms chunks (as the voice does);
    returns when playing really began (a loaded machine oversleeps), in seconds after ``origin``."""
    time.sleep(max(0.0, origin + at - time.monotonic()))
    began = time.monotonic() - origin
    step = int(rate * 0.02)
    for i in range(0, len(samples), step):
        speaker.play(samples[i:i + step], rate)
    return began


def loud_runs(samples: np.ndarray, rate: int, threshold: int = 1000, gap: float = 0.1) -> list[tuple[float, float]]:
    """(start, end) seconds of each stretch of sound; stretches closer than ``gap`` are one."""
    loud = np.flatnonzero(np.abs(samples.astype(np.int32)) > threshold)
    runs: list[list[int]] = []
    for i in loud:
        if runs and i - runs[-1][1] <= gap * rate:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    return [(a / rate, (b + 1) / rate) for a, b in runs]


# -- the microphone ---------------------------------------------------------------------------


def test_a_realtime_file_microphone_plays_at_wall_clock_speed_from_when_listening_starts(tmp_path):
    path = write_wav(tmp_path / "three-seconds.wav", tone(3.0, SAMPLE_RATE, 300), SAMPLE_RATE)
    timeline = Timeline()
    mic = open_microphone(str(path), realtime=True, timeline=timeline)
    mic.start()
    time.sleep(0.6)  # models load between opening the recording and listening to it
    assert not timeline.started  # the clock starts when listening starts, not when the file opens
    first_read = time.monotonic()
    arrivals, samples = [], 0
    with pytest.raises(MicrophoneEnded):
        while True:
            chunk = mic.read(timeout=0.2)
            if chunk is not None:
                arrivals.append(time.monotonic())
                samples += len(chunk)
    ended = time.monotonic()
    origin = timeline.origin
    assert origin is not None and first_read <= origin <= first_read + 0.1 and mic.started_at == origin
    assert ended - first_read >= 2.5  # not instantly: a 3 s recording takes 3 s
    assert ended - origin >= 3.0 - 0.005  # the end is reported when the last sample is due, not a chunk early
    assert ended - origin < 3.0 + 1.5
    assert samples == (3 * SAMPLE_RATE // CHUNK) * CHUNK
    # Never ahead of the recording: chunk i comes once its last sample has been "spoken".
    assert all(t >= origin + (i + 1) * CHUNK / SAMPLE_RATE - 0.002 for i, t in enumerate(arrivals))
    mic.stop()


def test_a_microphone_opened_again_on_the_same_timeline_restarts_its_clock(tmp_path):
    path = write_wav(tmp_path / "short.wav", tone(0.4, SAMPLE_RATE), SAMPLE_RATE)
    timeline = Timeline()
    mic = open_microphone(str(path), realtime=True, timeline=timeline)
    for _ in range(2):
        mic.start()
        time.sleep(0.3)
        began = time.monotonic()
        with pytest.raises(MicrophoneEnded):
            while True:
                mic.read(timeout=0.2)
        assert time.monotonic() - began >= 0.35  # paced both times: no burst to catch up
        mic.stop()


# -- the time-aligned recorder ----------------------------------------------------------------


def test_a_time_aligned_recorder_puts_each_sound_at_its_time_and_silence_elsewhere(tmp_path):
    out = tmp_path / "out.wav"
    timeline = Timeline()
    speaker = open_speaker(str(out), timeline=timeline)
    assert isinstance(speaker, WavRecorderSpeaker) and speaker.realtime
    origin = timeline.start()
    first = play_at(speaker, origin, 0.7, tone(0.4))
    assert time.monotonic() - origin >= 1.0  # paced like a sound card, not written at once
    second = play_at(speaker, origin, 2.0, tone(0.3, hz=660))
    time.sleep(max(0.0, origin + 3.0 - time.monotonic()))
    speaker.close()

    audio = read_audio(out)
    assert audio.rate == TTS_RATE
    assert 3.0 - 0.01 <= audio.seconds < 3.0 + 0.5  # silence up to the moment it was closed
    runs = loud_runs(audio.samples, audio.rate)
    assert len(runs) == 2, runs
    (a0, a1), (b0, b1) = runs
    # Each sound lands where it was played (measured: a busy machine may start it a little late).
    assert a0 == pytest.approx(first, abs=0.05) and a1 == pytest.approx(first + 0.4, abs=0.15)
    assert b0 == pytest.approx(second, abs=0.05) and b1 == pytest.approx(second + 0.3, abs=0.15)
    quiet = np.ones(len(audio.samples), bool)
    margin = int(0.01 * audio.rate)  # a sound's first and last samples are quieter than the threshold
    for start, end in runs:
        quiet[max(0, int(start * audio.rate) - margin):int(end * audio.rate) + margin] = False
    assert not np.any(audio.samples[quiet])  # digital silence everywhere else


def test_a_time_aligned_recorder_that_never_played_holds_the_silence_since_the_origin(tmp_path):
    timeline = Timeline()
    speaker = WavRecorderSpeaker(tmp_path / "quiet.wav", timeline=timeline)
    timeline.start()
    time.sleep(0.5)
    speaker.close()
    audio = read_audio(tmp_path / "quiet.wav")
    assert audio.seconds >= 0.5 and not np.any(audio.samples)

    never = WavRecorderSpeaker(tmp_path / "never.wav", timeline=Timeline())
    never.close()  # the conversation never started: a valid, empty WAV
    with open(tmp_path / "never.wav", "rb") as f:
        assert f.read(4) == b"RIFF"


def test_a_recorder_without_a_timeline_still_writes_only_speech(tmp_path):
    speaker = WavRecorderSpeaker(tmp_path / "plain.wav", realtime=False)
    time.sleep(0.3)
    play_at(speaker, time.monotonic(), 0.0, tone(0.2))
    speaker.close()
    audio = read_audio(tmp_path / "plain.wav")
    assert audio.seconds == pytest.approx(0.2, abs=0.01)


# -- the command line --------------------------------------------------------------------------


def test_realtime_is_a_headless_flag(data_dir):
    done = run("--realtime", "--ask", "hi", "--data-dir", data_dir)
    assert done.returncode == 2 and "--realtime goes with --headless" in done.stderr


def test_headless_realtime_records_a_time_aligned_conversation(tmp_path, data_dir, tiny_models, tiny_whisper):
    conversation = make_conversation(tmp_path / "talk.wav", ["What is the weather like today?"], lead=1.0, gap=2.0)
    said_from, said_to = conversation.spans[0]
    recording = read_audio(conversation.path).seconds
    out = tmp_path / "out.wav"
    began = time.monotonic()
    done = run("--headless", "--realtime", "--mic", conversation.path, "--speaker", out,
               "--model", tiny_models["idefics3"], "--asr-model", tiny_whisper, "--device", "cpu",
               "--max-new-tokens", "6", "--data-dir", data_dir, timeout=600)
    took = time.monotonic() - began
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == ["you", "assistant"], lines
    assert took >= recording  # the recording played at its own pace (models load first, then it plays)

    spoken = read_audio(out)
    assert spoken.seconds >= recording - 0.001  # silence to the end: as long as the recording, at least
    runs = loud_runs(spoken.samples, spoken.rate, threshold=300, gap=1.0)
    assert runs, "the reply was not spoken into the recording"
    reply_starts = runs[0][0]
    # The reply comes after the user stopped talking (and the end of turn was decided), in the
    # one timeline both files share: before that, out.wav holds digital silence.
    assert reply_starts > said_to, (reply_starts, said_to)
    assert not np.any(spoken.samples[:int(said_to * spoken.rate)])
