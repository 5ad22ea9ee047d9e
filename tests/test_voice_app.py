"""Voice in, end to end: the pipeline, the real window (hands-free, push-to-talk), and --headless."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from PySide6.QtCore import Qt

from assistant.events import ErrorEvent, FramesChosen, ReplyFinished, Transcribed
from assistant.settings import Settings
from assistant.devices.microphone import AudioFileMicrophone
from assistant.encoders.listener import ListenState
from tests.conftest import ROOT
from tests.speech import make_conversation, word_error_rate, write_wav
from tests.test_cli import run
from ui.main_window import MainWindow

SENTENCES = ["Please describe what you see on my desk.", "What is the weather like today?"]


# -- the pipeline ---------------------------------------------------------------------------


def test_an_utterance_is_transcribed_and_answered_like_a_typed_turn(tmp_path, paths, tiny_models, tiny_whisper):
    """Tiny random Whisper (transformers) → transcript → turn (with camera frames) → reply, saved."""
    from assistant.devices.camera import Frame
    from assistant.engine import Engine
    from assistant.store.history import open_history

    conversation = make_conversation(tmp_path / "q.wav", SENTENCES[:1])
    samples = AudioFileMicrophone.load(conversation.path)
    store, _ = open_history(paths.data)
    events = []
    settings = Settings(model=str(tiny_models["idefics3"]), device="cpu", asr_model=str(tiny_whisper),
                        max_new_tokens=8)
    engine = Engine(settings, paths, events.append, store=store)
    rng = np.random.default_rng(0)
    frames = tuple(Frame(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8), i * 0.25, i) for i in range(6))
    reply = engine.handle_utterance(samples, frames)
    assert reply is not None and reply.text
    transcribed = [e for e in events if isinstance(e, Transcribed)]
    assert len(transcribed) == 1 and transcribed[0].text.strip() and transcribed[0].turn_id == reply.turn_id
    assert transcribed[0].audio_seconds == pytest.approx(len(samples) / 16000)
    kinds = [type(e) for e in events if isinstance(e, (Transcribed, FramesChosen, ReplyFinished))]
    assert kinds == [Transcribed, FramesChosen, ReplyFinished]  # the transcript is shown before the answer
    saved = store.messages(engine.conversation_id)
    assert [(m.role, m.text) for m in saved] == [("user", transcribed[0].text), ("assistant", reply.text)]
    assert engine.chat[0].text == transcribed[0].text and engine.chat[0].images  # frames went with it
    engine.unload()
    engine.unload_recognizer()
    store.close()


def test_nothing_recognized_sends_no_turn(paths, tiny_models, real_whisper):
    from assistant.engine import Engine

    events = []
    engine = Engine(Settings(model=str(tiny_models["idefics3"]), asr_model=str(real_whisper)), paths, events.append)
    assert engine.handle_utterance(np.zeros(16000, np.int16)) is None
    transcribed = [e for e in events if isinstance(e, Transcribed)]
    assert len(transcribed) == 1 and transcribed[0].text == ""
    assert engine.backend is None and engine.chat == []  # the chat model was not even needed
    engine.unload_recognizer()


def test_a_speech_model_that_fails_to_load_is_reported_and_the_engine_goes_on(paths, tiny_models):
    from assistant.engine import Engine

    events = []
    engine = Engine(Settings(model=str(tiny_models["idefics3"]), asr_model="/no/such/whisper"), paths, events.append)
    assert engine.handle_utterance(np.zeros(16000, np.int16)) is None
    errors = [e for e in events if isinstance(e, ErrorEvent)]
    assert len(errors) == 1 and "Speech recognition is not available" in errors[0].message
    assert "/no/such/whisper" in errors[0].message
    from assistant.events import UserTurn

    assert engine.handle_turn(UserTurn("Still here?")) is not None  # typing still works
    engine.unload()


# -- the window ---------------------------------------------------------------------------------


@pytest.fixture
def voice_window(main_window):
    def open_(model, **settings):
        return main_window(Settings(model=str(model), device="cpu", max_new_tokens=8, **settings), persist_settings=False)

    return open_


def user_texts(window) -> list[str]:
    return [m.text for m in window.chat.messages if m.role == "user"]


def test_hands_free_in_the_window_turns_each_utterance_into_a_turn(qtbot, tmp_path, voice_window, tiny_models,
                                                                    real_whisper):
    # 3 s between the questions: time for the first reply (8 tokens) before the second begins.
    conversation = make_conversation(tmp_path / "talk.wav", SENTENCES, gap=3.0, lead=0.3)
    window = voice_window(tiny_models["idefics3"], asr_model=str(real_whisper), mic=str(conversation.path))
    states = []
    window.bridge.listen_event.connect(lambda e: states.append(e.state))
    window.mic_panel.hands_free.click()  # the user ticks Hands-free
    assert window.settings.hands_free and window.mic_panel.toggle.isChecked()
    listener = window.bridge.listener
    assert listener is not None
    # A recording plays at its own pace; generous for a loaded machine (about 12 s when idle).
    qtbot.waitUntil(lambda: len(user_texts(window)) == 2 and not window.bridge.busy, timeout=180_000)
    heard = user_texts(window)
    assert word_error_rate(" ".join(SENTENCES), " ".join(heard)) <= 0.10, heard
    replies = [m for m in window.chat.messages if m.role == "assistant"]
    shown = [(m.state, m.text) for m in replies]
    assert len(replies) == 2 and replies[-1].state == "done" and replies[-1].text, shown
    # The first is answered too; on a machine so loaded that it is still being written when the
    # second question begins, the user's voice stops it (barge-in), as it would for anyone.
    assert replies[0].state == "done" and replies[0].text or replies[0].state == "stopped", shown
    assert {ListenState.LISTENING, ListenState.HEARING} <= set(states)
    qtbot.waitUntil(lambda: not window.mic_panel.toggle.isChecked(), timeout=10_000)  # the recording ended
    assert window.bridge.listener is None
    qtbot.waitUntil(lambda: not listener.running, timeout=10_000)  # its thread ends (the GUI does not wait on it)
    qtbot.waitUntil(lambda: "has ended" in window.mic_panel.state_label.text(), timeout=1_000)


def test_holding_space_is_push_to_talk_and_makes_one_turn(qtbot, tmp_path, voice_window, tiny_models, tiny_whisper):
    conversation = make_conversation(tmp_path / "talk.wav", SENTENCES[:1], lead=0.2, gap=3.0)
    window = voice_window(tiny_models["idefics3"], asr_model=str(tiny_whisper), mic=str(conversation.path))
    transcribed = []
    window.bridge.transcribed.connect(transcribed.append)
    # Space typed into the input box is a space, not push-to-talk.
    window.prompt.setFocus()
    qtbot.keyClick(window.prompt, Qt.Key.Key_Space)
    assert window.prompt.toPlainText() == " " and window.bridge.listener is None
    window.prompt.clear()
    window.chat.setFocus()
    qtbot.keyPress(window.chat, Qt.Key.Key_Space)  # hold…
    qtbot.waitUntil(lambda: window.bridge.listen_state is ListenState.RECORDING, timeout=10_000)
    qtbot.waitUntil(lambda: window.mic_panel.state_label.text().startswith("Recording"), timeout=1_000)
    qtbot.wait(int((conversation.spans[0][1] + 0.4) * 1000))
    qtbot.keyRelease(window.chat, Qt.Key.Key_Space)  # …and release
    qtbot.waitUntil(lambda: len(transcribed) == 1 and not window.bridge.busy, timeout=30_000)
    assert user_texts(window) == [transcribed[0].text] and transcribed[0].text
    assert [m.state for m in window.chat.messages if m.role == "assistant"] == ["done"]
    qtbot.wait(300)
    assert len(transcribed) == 1  # one press, one turn


def test_a_long_hold_of_space_with_unmarked_autorepeat_is_still_one_turn(qtbot, tmp_path, voice_window, tiny_models,
                                                                          tiny_whisper):
    """Some systems (X11 under Xvfb, for one) send a held key's autorepeat as plain release+press
    pairs, not marked as autorepeat.  Held for 4 s over a 3 s recording, Space used to send the
    recording, then open the microphone again on the next "press" and send its start as a second
    question, and a third: it must be one press, one turn."""
    conversation = make_conversation(tmp_path / "talk.wav", SENTENCES[:1], lead=0.2, gap=0.3)
    window = voice_window(tiny_models["idefics3"], asr_model=str(tiny_whisper), mic=str(conversation.path))
    transcribed = []
    window.bridge.transcribed.connect(transcribed.append)
    window.chat.setFocus()
    qtbot.keyPress(window.chat, Qt.Key.Key_Space)
    qtbot.waitUntil(lambda: window.bridge.listen_state is ListenState.RECORDING, timeout=10_000)
    held_until = time.monotonic() + 4.0
    while time.monotonic() < held_until:  # the key repeats ~30 times a second while held
        qtbot.wait(33)
        qtbot.keyRelease(window.chat, Qt.Key.Key_Space)
        qtbot.keyPress(window.chat, Qt.Key.Key_Space)
    qtbot.keyRelease(window.chat, Qt.Key.Key_Space)
    qtbot.waitUntil(lambda: len(transcribed) == 1 and not window.bridge.busy, timeout=30_000)
    qtbot.wait(1500)
    assert len(transcribed) == 1 and len(user_texts(window)) == 1, [t.text for t in transcribed]
    assert window.bridge.listener is None  # the recording ended; nothing opened it again


def test_push_to_talk_button_over_silence_sends_nothing(qtbot, tmp_path, voice_window, tiny_models, tiny_whisper):
    quiet = write_wav(tmp_path / "quiet.wav", np.zeros(16000 * 5, np.int16), 16000)
    window = voice_window(tiny_models["idefics3"], asr_model=str(tiny_whisper), mic=str(quiet))
    qtbot.mousePress(window.mic_panel.talk, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: window.bridge.listen_state is ListenState.RECORDING, timeout=10_000)
    qtbot.wait(700)
    qtbot.mouseRelease(window.mic_panel.talk, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: window.mic_panel.state_label.text() == "No speech was heard.", timeout=5_000)
    assert window.chat.messages == [] and not window.bridge.busy


def test_no_microphone_gives_a_clear_message_and_the_window_goes_on(qtbot, voice_window, tiny_models):
    window = voice_window(tiny_models["idefics3"], mic="no such microphone")
    qtbot.mouseClick(window.mic_panel.toggle, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: any("Microphone:" in n.text() for n in window.chat.notices), timeout=10_000)
    notice = [n.text() for n in window.chat.notices if "Microphone:" in n.text()][0]
    assert "was not found" in notice or "No microphone was found" in notice
    assert not window.mic_panel.toggle.isChecked() and window.bridge.listener is None
    assert window.mic_panel.meter.value() == window.mic_panel.meter.minimum()


def test_a_lost_microphone_is_reported_and_comes_back(qtbot, voice_window, tiny_models):
    from tests.test_voice_in import Unplugged

    window = voice_window(tiny_models["idefics3"])
    window.mic_panel.set_on(True)
    listener = window.bridge.start_listening(mic=Unplugged(np.zeros(0, np.int16)), hands_free=True)
    qtbot.waitUntil(lambda: any("Trying to reconnect" in n.text() for n in window.chat.notices), timeout=10_000)
    qtbot.waitUntil(lambda: window.mic_panel.state_label.text() == "USB mic is back.", timeout=10_000)
    assert window.mic_panel.toggle.isChecked() and listener.running  # still listening, no new click needed


def test_a_broken_recording_as_microphone_is_reported(qtbot, tmp_path, voice_window, tiny_models):
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF....WAVEfmt nonsense")
    window = voice_window(tiny_models["idefics3"], mic=str(broken))
    qtbot.mouseClick(window.mic_panel.toggle, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: any("cannot be played" in n.text() for n in window.chat.notices), timeout=10_000)
    assert window.bridge.listener is None


def test_closing_the_window_while_listening_joins_the_listener(qtbot, tmp_path, paths, tiny_models):
    long = write_wav(tmp_path / "long.wav", np.zeros(16000 * 60, np.int16), 16000)
    window = MainWindow(Settings(model=str(tiny_models["idefics3"]), mic=str(long), hands_free=True), paths,
                        persist_settings=False)
    window.show()
    listener = window.bridge.listener  # hands-free was saved on: listening starts with the window
    assert listener is not None
    qtbot.waitUntil(lambda: listener.state is ListenState.LISTENING, timeout=10_000)
    window.close()
    assert not listener.running and window.bridge.listener is None
    window.deleteLater()


# -- the command line ------------------------------------------------------------------------------


def test_headless_answers_every_utterance_of_a_recording_in_order(tmp_path, data_dir, tiny_models, real_whisper):
    sentences = SENTENCES + ["Thank you, that was very helpful."]
    conversation = make_conversation(tmp_path / "talk.wav", sentences, rate=44100, channels=2, gap=0.8)
    reply_wav = tmp_path / "reply.wav"
    done = run("--headless", "--mic", conversation.path, "--speaker", reply_wav, "--model", tiny_models["idefics3"],
               "--asr-model", real_whisper, "--max-new-tokens", "6", "--data-dir", data_dir)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == ["you", "assistant"] * len(sentences)
    heard = [line.removeprefix("you: ") for line in lines[::2]]
    assert word_error_rate(" ".join(sentences), " ".join(heard)) <= 0.10, heard
    assert all(line.removeprefix("assistant: ").strip() for line in lines[1::2])
    from assistant.devices.audio import read_audio

    assert read_audio(reply_wav).seconds > 0.5  # the replies were spoken into the file
    exported = run("--export-chat", "last", "--format", "json", "--data-dir", data_dir)
    import json

    messages = json.loads(exported.stdout)["messages"]
    assert [m["text"] for m in messages if m["role"] == "user"] == heard  # saved like typed turns


@pytest.mark.parametrize("make, expected, code", [
    (lambda p: p.write_bytes(b""), "cannot be played", 1),
    (lambda p: None, "does not exist", 1),
    (lambda p: write_wav(p, np.zeros(16000 * 2, np.int16), 8000), "no speech was heard", 0),
])
def test_headless_with_a_bad_or_silent_recording(tmp_path, data_dir, tiny_models, real_whisper, make, expected, code):
    path = tmp_path / "in.wav"
    make(path)
    done = run("--headless", "--mic", path, "--model", tiny_models["idefics3"], "--asr-model", real_whisper,
               "--data-dir", data_dir)
    assert done.returncode == code, done.stderr
    assert expected in done.stderr and done.stdout == ""
    assert "Traceback" not in done.stderr


def test_headless_and_ask_do_not_mix(data_dir):
    done = run("--headless", "--ask", "hi", "--data-dir", data_dir)
    assert done.returncode == 2 and "--headless" in done.stderr


def test_headless_on_a_real_sound_input_through_alsa(tmp_path, data_dir, tiny_models, real_whisper):
    """The PyAudio microphone (callback mode) reading an ALSA device that plays a raw file (no sound card here)."""
    conversation = make_conversation(tmp_path / "talk.wav", SENTENCES[1:], lead=0.5, gap=1.0)
    samples = AudioFileMicrophone.load(conversation.path)
    raw = tmp_path / "in.raw"
    raw.write_bytes(np.concatenate([samples, np.zeros(16000 * 30, np.int16)]).astype("<i2").tobytes())
    (tmp_path / ".asoundrc").write_text(
        'pcm.wavin { type file slave.pcm "nullpcm" file "/dev/null" infile "%s" format "raw" }\n'
        "pcm.nullpcm { type null }\n"
        'pcm.!default { type plug slave.pcm "wavin" }\n' % raw
    )
    env = dict(os.environ, HOME=str(tmp_path), HF_HUB_OFFLINE="1")
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "main.py"), "--headless", "--mic", "default", "--model", tiny_models["idefics3"],
         "--asr-model", str(real_whisper), "--max-new-tokens", "6", "--data-dir", str(data_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line.rstrip("\n")) for line in process.stdout], daemon=True)
    reader.start()
    got = []
    try:
        deadline = time.monotonic() + 120
        while len(got) < 2 and time.monotonic() < deadline and process.poll() is None:
            try:
                got.append(lines.get(timeout=0.5))
            except queue.Empty:
                pass
    finally:
        process.send_signal(signal.SIGINT)  # a live microphone listens until Ctrl+C
        process.wait(timeout=30)
        reader.join(5)
        err = process.stderr.read()
    lines = got
    assert process.returncode == 0, err
    assert len(lines) == 2 and lines[0].startswith("you: ") and lines[1].startswith("assistant: "), (lines, err)
    # Through ALSA's file plugin and PortAudio the sentence reaches Whisper tiny.en a little
    # differently from the WAV path: on some machines its last word is misheard ("today" as
    # "Janae", in every run on one).  One word of six may differ; more is a fault.
    assert word_error_rate(SENTENCES[1], lines[0].removeprefix("you: ")) <= 0.17, lines
    assert "Listening on" in err
