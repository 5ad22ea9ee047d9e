"""The simulated echo room (``--mic room:USER.wav``): the user's recording plus the app's own
voice as a room sends it back (50 ms late, a 200 ms tail, -6 dB, faint noise)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from assistant.devices.audio import read_audio
from assistant.devices.echo_room import (
    EchoRoomMicrophone,
    Room,
    RoomSpeaker,
    parse_room_spec,
)
from assistant.devices.microphone import CHUNK, SAMPLE_RATE, MicrophoneEnded, open_microphone
from assistant.devices.playback_tap import PlaybackTap, TappedSpeaker
from assistant.devices.timeline import Timeline
from assistant.errors import BadInputError
from tests.speech import make_conversation, write_wav
from tests.test_cli import run

RATE = SAMPLE_RATE


def user_recording(tmp_path, seconds: float = 2.0, hz: float = 300.0, level: float = 3000.0):
    """A quiet hum as the user's voice (known, so that what the room adds can be isolated)."""
    t = np.arange(int(seconds * RATE)) / RATE
    samples = (level * np.sin(2 * np.pi * hz * t)).astype(np.int16)
    return write_wav(tmp_path / "user.wav", samples, RATE), samples


def burst(seconds: float = 0.4, level: float = 6000.0, seed: int = 7) -> np.ndarray:
    """Broadband sound (white noise): a room colours a pure tone, not its overall level."""
    return np.clip(np.random.default_rng(seed).standard_normal(int(seconds * RATE)) * level,
                   -32768, 32767).astype(np.int16)


def read_all(mic) -> np.ndarray:
    chunks = []
    with pytest.raises(MicrophoneEnded):
        while True:
            chunk = mic.read(timeout=0.5)
            if chunk is not None:
                assert len(chunk) == CHUNK and chunk.dtype == np.int16
                chunks.append(chunk)
    return np.concatenate(chunks)


def energy_db(samples: np.ndarray) -> float:
    return 10 * np.log10(np.mean(samples.astype(np.float64) ** 2) + 1e-12)


def onset(heard: np.ndarray, played: np.ndarray) -> int:
    """The sample where ``played`` best lines up in ``heard`` (cross-correlation)."""
    scores = np.correlate(heard.astype(np.float64), played.astype(np.float64), "valid")
    return int(np.argmax(np.abs(scores)))


def room_with_burst(tmp_path, spec_options: str = "", at: float = 0.5):
    """A room microphone (delivered at once) whose tap holds ``burst()`` at timeline second ``at``."""
    path, user = user_recording(tmp_path)
    mic = open_microphone(f"room:{path}{spec_options}", realtime=False)
    assert isinstance(mic, EchoRoomMicrophone)
    mic.start()
    first = mic.read()  # listening starts: the timeline's origin is the recording's first sample
    assert mic.timeline.origin == mic.user.started_at
    played = burst()
    mic.tap.played(played, RATE, at=mic.timeline.origin + at)
    heard = np.concatenate([first, read_all(mic)])
    return heard, user[:len(heard)], played, mic


# -- what the room hears ---------------------------------------------------------------------


def test_the_room_hears_the_user_and_the_speaker_50_ms_late_at_minus_6_db(tmp_path):
    heard, user, played, mic = room_with_burst(tmp_path)
    assert mic.room == Room(delay=0.050, gain=-6.0, tail=0.200, noise=-65.0)  # the documented defaults
    echo = heard.astype(np.float64) - user  # what the room added to the user's voice
    # The user's voice is all there is before the echo comes (plus the room's faint hiss).
    before = echo[:int(0.5 * RATE)]
    assert -75 < energy_db(before) - energy_db(np.full(1, 32768.0)) < -58
    # The echo starts 50 ms after the sound was played…
    delay = onset(echo, played) / RATE - 0.5
    assert delay == pytest.approx(0.050, abs=0.010)
    # …6 dB below it (broadband energy, over the burst and its reverberation).
    start = int(0.55 * RATE)
    level = energy_db(echo[start:start + len(played)]) - energy_db(played)
    assert level == pytest.approx(-6.0, abs=2.0)


def test_the_room_settings_come_from_the_spec(tmp_path):
    heard, user, played, mic = room_with_burst(tmp_path, "?delay=120&gain=-12&noise=off")
    assert mic.room.noise is None
    echo = heard.astype(np.float64) - user
    assert np.all(np.abs(echo[:int(0.62 * RATE)]) <= 1)  # no noise at all, and nothing before the echo
    assert onset(echo, played) / RATE - 0.5 == pytest.approx(0.120, abs=0.010)
    start = int(0.62 * RATE)
    assert energy_db(echo[start:start + len(played)]) - energy_db(played) == pytest.approx(-12.0, abs=2.0)


def test_the_echo_has_a_tail_that_decays_within_200_ms(tmp_path):
    heard, user, played, _ = room_with_burst(tmp_path)
    echo = heard.astype(np.float64) - user
    window = int(0.02 * RATE)

    def level(at: float) -> float:  # 20 ms of echo from ``at`` (timeline seconds)
        return energy_db(echo[int(at * RATE):int(at * RATE) + window])

    ends = 0.5 + len(played) / RATE + 0.050  # when the direct echo of the burst ends
    peak = max(level(ends - len(played) / RATE + i * 0.02) for i in range(int(len(played) / RATE / 0.02)))
    noise_floor = level(0.2)
    assert level(ends + 0.01) > noise_floor + 10  # reverberation goes on after the sound stopped…
    assert level(ends + 0.01) > level(ends + 0.06) > level(ends + 0.12)  # …and dies away
    assert level(ends + 0.2) < peak - 40  # 200 ms later only the room's hiss is left
    assert level(ends + 0.2) == pytest.approx(noise_floor, abs=3)


def test_the_streaming_convolution_is_seamless_across_chunks(tmp_path):
    """Chunk by chunk, the room equals one convolution of the whole signal (also for sound
    played before listening started, and after the microphone is started again)."""
    path, user = user_recording(tmp_path, seconds=1.5)
    timeline = Timeline()
    tap = PlaybackTap(timeline)
    mic = EchoRoomMicrophone(path, tap, Room(noise=None, seed=3), realtime=False)
    origin = timeline.start()
    reference = burst(seconds=2.0, level=4000, seed=11)  # sound all the time, chunk boundaries anywhere
    tap.played(reference, RATE, at=origin)
    time.sleep(0.3)  # listening starts later: the first chunk's echo reaches back before it
    for _ in range(2):  # and a second play of the recording starts its own place on the timeline
        mic.start()
        heard = read_all(mic)
        first = round((mic.user.started_at - origin) * RATE)
        whole = np.convolve(reference.astype(np.float64), mic.ir)  # sample n: what sounds at n + delay
        at = np.arange(first, first + len(heard)) - mic.room.delay_samples
        expected = np.where((at >= 0) & (at < len(whole)), whole[np.clip(at, 0, len(whole) - 1)], 0.0)
        expected = np.clip(np.rint(expected + user[:len(heard)]), -32768, 32767)
        assert np.max(np.abs(heard.astype(np.int64) - expected.astype(np.int64))) <= 1
        mic.stop()
        time.sleep(0.1)


def test_the_impulse_response_is_reproducible_and_has_the_documented_shape():
    room = Room()
    ir = room.impulse_response()
    assert len(ir) == round(0.2 * RATE) and np.array_equal(ir, Room().impulse_response())
    assert not np.array_equal(ir, Room(seed=1).impulse_response())
    assert 10 * np.log10(np.sum(ir ** 2)) == pytest.approx(-6.0, abs=1e-9)  # its energy is the gain
    assert np.argmax(np.abs(ir)) == 0  # the direct path comes first
    first, last = np.sum(ir[1:400] ** 2), np.sum(ir[-400:] ** 2)
    assert 10 * np.log10(last / first) < -40  # the tail decays


def test_a_realtime_room_hears_a_tapped_speaker_on_the_shared_timeline(tmp_path):
    """The path the app takes: the voice plays 20 ms chunks through ``TappedSpeaker`` while the
    room is read in real time; the echo comes 50 ms after the sound started."""
    path, user = user_recording(tmp_path, seconds=1.6, level=0)
    mic = open_microphone(f"room:{path}?noise=off")
    speaker = TappedSpeaker(RoomSpeaker(), mic.tap)
    played = burst(seconds=0.5)
    started: list[float] = []

    def voice() -> None:
        origin = mic.timeline.origin
        time.sleep(max(0.0, origin + 0.5 - time.monotonic()))
        started.append(time.monotonic() - origin)
        for i in range(0, len(played), 320):  # the voice's 20 ms chunks, each returned when it sounds
            speaker.play(played[i:i + 320], RATE)

    mic.start()
    heard = [mic.read(timeout=1.0)]  # listening starts: the timeline's origin
    thread = threading.Thread(target=voice)
    thread.start()
    heard.append(read_all(mic))
    thread.join()
    speaker.close()
    heard = np.concatenate([h for h in heard if h is not None])
    # The tap holds the sound whole, where it sounded (each chunk after the one before).
    tapped = mic.tap.read(0.0, len(heard))
    at = onset(tapped, played)
    assert at / RATE == pytest.approx(started[0], abs=0.010)  # (noted at the call: 20 ms early)
    assert np.array_equal(tapped[at:at + len(played)], played)
    # The room hears it 50 ms later, about 6 dB down.
    assert onset(heard, played) - at == pytest.approx(0.050 * RATE, abs=0.010 * RATE)
    echo = heard[at + 800:at + 800 + len(played)]
    assert energy_db(echo) - energy_db(played) == pytest.approx(-6.0, abs=2.0)


# -- the spec ---------------------------------------------------------------------------------


def test_room_specs_parse_and_bad_ones_are_reported_when_the_microphone_starts(tmp_path):
    assert parse_room_spec("room:talk.wav") == ("talk.wav", Room())
    assert parse_room_spec("ROOM:a b.wav?delay=80&gain=-10&tail=300&noise=off&seed=4") == (
        "a b.wav", Room(delay=0.08, gain=-10.0, tail=0.3, noise=None, seed=4))
    odd = write_wav(tmp_path / "what?.wav", np.zeros(1600, np.int16), RATE)
    assert parse_room_spec(f"room:{odd}") == (str(odd), Room())  # an existing file's "?" is its name
    for spec, words in [
        ("room:", "needs a recording"),
        ("room:a.wav?volume=3", "no setting 'volume=3'"),
        ("room:a.wav?delay=soon", "delay=soon is not a number from 0 to 2000 ms"),
        ("room:a.wav?noise=0", "noise=0 is not a number from -120 to -20 dBFS (or off)"),
        ("room:no-such.wav", "does not exist"),
    ]:
        mic = open_microphone(spec)  # opening never raises: starting reports it, as for any recording
        with pytest.raises(BadInputError, match=None) as error:
            mic.start()
        assert words in str(error.value), (spec, error.value)


# -- the front ends ------------------------------------------------------------------------------


def test_headless_reports_a_room_without_a_recording(tmp_path, data_dir):
    done = run("--headless", "--mic", f"room:{tmp_path / 'nobody.wav'}", "--data-dir", data_dir)
    assert done.returncode == 1 and "nobody.wav' does not exist" in done.stderr
    assert "Traceback" not in done.stderr


def test_headless_talks_in_the_echo_room(tmp_path, data_dir, tiny_models, tiny_whisper):
    conversation = make_conversation(tmp_path / "talk.wav", ["What is the weather like today?"], lead=1.0, gap=2.5)
    said_to = conversation.spans[0][1]
    recording = read_audio(conversation.path).seconds
    out = tmp_path / "out.wav"
    began = time.monotonic()
    done = run("--headless", "--mic", f"room:{conversation.path}?delay=60", "--speaker", out,
               "--model", tiny_models["idefics3"], "--asr-model", tiny_whisper, "--device", "cpu",
               "--max-new-tokens", "6", "--data-dir", data_dir, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "Ctrl+C" not in done.stderr
    lines = done.stdout.splitlines()
    assert lines and lines[0].startswith("you: ") and any(line.startswith("assistant: ") for line in lines), lines
    assert time.monotonic() - began >= recording  # room: implies --realtime
    spoken = read_audio(out)  # the reply, time-aligned with the room's recording
    assert spoken.seconds >= recording - 0.001
    assert np.any(spoken.samples) and not np.any(spoken.samples[:int(said_to * spoken.rate)])


def test_the_window_offers_the_echo_room(qtbot, tmp_path, monkeypatch):
    from PySide6.QtWidgets import QFileDialog

    from ui.panels.microphone import ROOM_ITEM, MicPanel

    panel = MicPanel("room:/recordings/me.wav")
    qtbot.addWidget(panel)
    assert panel.source.currentText() == "Echo room: /recordings/me.wav"
    items = [panel.source.itemText(i) for i in range(panel.source.count())]
    assert items[-2:] == ["WAV file…", ROOM_ITEM]
    monkeypatch.setattr(QFileDialog, "getOpenFileName", staticmethod(lambda *a, **k: ("/recordings/you.wav", "")))
    with qtbot.waitSignal(panel.source_chosen, timeout=1000) as chosen:
        panel.source.activated.emit(panel.source.count() - 1)  # the user picks "Simulated echo room…"
    assert chosen.args == ["room:/recordings/you.wav"]
    assert panel.source.currentText() == "Echo room: /recordings/you.wav"
    assert [panel.source.itemText(i) for i in range(panel.source.count())][-2:] == ["WAV file…", ROOM_ITEM]
    panel.shutdown()


def test_the_window_listens_in_the_room_to_its_own_speaker(qtbot, tmp_path, paths, tiny_models):
    from assistant.devices.speaker import WavRecorderSpeaker
    from assistant.encoders.listener import ListenState
    from assistant.settings import Settings
    from ui.main_window import MainWindow

    long = write_wav(tmp_path / "long.wav", np.zeros(RATE * 60, np.int16), RATE)
    window = MainWindow(Settings(model=str(tiny_models["idefics3"]), mic=f"room:{long}", hands_free=True), paths,
                        persist_settings=False, speaker=WavRecorderSpeaker(tmp_path / "out.wav"))
    window.show()
    listener = window.bridge.listener  # hands-free was saved on: listening starts with the window
    assert listener is not None and isinstance(listener.mic, EchoRoomMicrophone)
    assert listener.mic.tap is window.bridge.session.tap  # the room hears the session's speaker
    qtbot.waitUntil(lambda: listener.state is not ListenState.STARTING, timeout=10_000)
    assert window.mic_panel.source.currentText() == f"Echo room: {long}"
    window.close()
    assert not listener.running
    window.deleteLater()
