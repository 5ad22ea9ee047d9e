"""The real window, driven with qtbot, running the real pipeline on tiny models."""

from __future__ import annotations

import sys
import time

import pytest
from PySide6.QtCore import QMimeData, Qt, QUrl
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QApplication

from assistant.events import State
from assistant.settings import Settings, load_settings
from tests.conftest import failing_factory, paced_factory
from ui.workers.pipeline import SessionBridge
from ui.panels.chat import markdown_to_html
from ui.main_window import MainWindow


@pytest.fixture
def open_window(main_window):
    """Open a window on ``model`` and wait until the model is loaded (or failed)."""

    def open_(model, factory=None, wait_for=State.READY, **settings):
        kwargs = {"backend_factory": factory} if factory else {}
        return main_window(Settings(model=str(model), device="cpu", **settings), wait_for, **kwargs)

    return open_


def send(qtbot, window, text: str) -> None:
    window.prompt.setFocus()
    qtbot.keyClicks(window.prompt, text)
    qtbot.keyClick(window.prompt, Qt.Key.Key_Return)


def wait_idle(qtbot, window, timeout=20_000) -> None:
    qtbot.waitUntil(lambda: not window.bridge.busy, timeout=timeout)


def test_type_send_and_read_the_streamed_reply(qtbot, open_window, tiny_models):
    window = open_window(tiny_models["idefics3"], max_new_tokens=24)
    assert "Ready" in window.state_label.text()
    assert "idefics3" in window.model_label.text() and "cpu" in window.model_label.text()
    replies = []
    window.bridge.reply_finished.connect(replies.append)
    send(qtbot, window, "What is the weather like?")
    assert window.prompt.toPlainText() == ""  # the input is cleared on send
    assert window.stop_button.isVisible() and not window.send_button.isVisible()
    wait_idle(qtbot, window)
    qtbot.waitUntil(lambda: bool(replies), timeout=5000)
    user, assistant = window.chat.messages
    assert user.role == "user" and user.text == "What is the weather like?"
    assert assistant.role == "assistant" and assistant.state == "done"
    assert assistant.text == replies[0].text and replies[0].tokens > 0
    assert window.state_label.text() == "Ready"
    assert window.send_button.isVisible() and not window.stop_button.isVisible()


def test_shift_enter_makes_a_new_line_and_empty_input_sends_nothing(qtbot, open_window, tiny_models):
    window = open_window(tiny_models["causal_lm"], max_new_tokens=4)
    qtbot.keyClick(window.prompt, Qt.Key.Key_Return)
    assert window.chat.messages == [] and not window.bridge.busy
    qtbot.keyClicks(window.prompt, "line one")
    qtbot.keyClick(window.prompt, Qt.Key.Key_Return, Qt.KeyboardModifier.ShiftModifier)
    qtbot.keyClicks(window.prompt, "line two")
    assert window.prompt.toPlainText() == "line one\nline two" and window.chat.messages == []
    qtbot.keyClick(window.prompt, Qt.Key.Key_Return)
    wait_idle(qtbot, window)
    assert window.chat.messages[0].text == "line one\nline two"


def test_attached_image_reaches_the_model(qtbot, open_window, tiny_models, image_file):
    window = open_window(tiny_models["llava"], max_new_tokens=4)
    window.attach_files([str(image_file)])
    assert len(window.attachments.items) == 1 and window.attachments.isVisible()
    send(qtbot, window, "What is in this picture?")
    wait_idle(qtbot, window)
    backend = window.bridge.engine.backend
    image_id = backend.tokenizer.convert_tokens_to_ids("<image>")
    assert int((backend.last_inputs["input_ids"] == image_id).sum()) == 16
    assert tuple(backend.last_inputs["pixel_values"].shape) == (1, 3, 32, 32)
    user = window.chat.messages[0]
    assert user.image_names == [image_file.name]
    assert window.attachments.items == [] and not window.attachments.isVisible()


def test_paste_and_drop_attach_images(qtbot, open_window, tiny_models, image_file):
    window = open_window(tiny_models["idefics3"], max_new_tokens=4)
    mime = QMimeData()
    image = QImage(40, 30, QImage.Format.Format_RGB32)
    image.fill(Qt.GlobalColor.blue)
    mime.setImageData(image)
    window.prompt.insertFromMimeData(mime)  # what Ctrl+V does with an image on the clipboard
    dropped = QMimeData()
    dropped.setUrls([QUrl.fromLocalFile(str(image_file))])
    window.prompt.insertFromMimeData(dropped)
    text = QMimeData()
    text.setHtml("<b>bold</b>")
    text.setText("bold")
    window.prompt.insertFromMimeData(text)
    assert window.prompt.toPlainText() == "bold"
    names = [item.name for item, _ in window.attachments.items]
    assert names == ["pasted image 1", image_file.name]
    send(qtbot, window, " - what are these?")
    wait_idle(qtbot, window)
    backend = window.bridge.engine.backend
    image_id = backend.tokenizer.convert_tokens_to_ids("<image>")
    assert int((backend.last_inputs["input_ids"] == image_id).sum()) == 2 * 16


def test_stop_mid_generation_keeps_the_partial_reply(qtbot, open_window, tiny_models):
    window = open_window(
        tiny_models["idefics3"], paced_factory(delay=0.02, min_new_tokens=500), max_new_tokens=500
    )
    send(qtbot, window, "Tell me a very long story")
    qtbot.waitUntil(lambda: bool(window.chat.messages[-1].text), timeout=10_000)
    qtbot.wait(150)
    started = time.monotonic()
    qtbot.mouseClick(window.stop_button, Qt.MouseButton.LeftButton)
    wait_idle(qtbot, window, timeout=2000)
    assert time.monotonic() - started < 1.0
    reply = window.chat.messages[-1]
    assert reply.state == "stopped" and reply.text
    assert "Stopped" in reply.footer.text()
    assert window.bridge.engine.chat[-1].text == reply.text
    # The next question is answered normally.
    window.bridge.engine.backend.generate_kwargs = {}
    send(qtbot, window, "short please")
    wait_idle(qtbot, window)
    assert window.chat.messages[-1].state == "done"


def test_escape_stops_too(qtbot, open_window, tiny_models):
    window = open_window(tiny_models["causal_lm"], paced_factory(delay=0.02, min_new_tokens=300), max_new_tokens=300)
    send(qtbot, window, "go on and on")
    qtbot.waitUntil(lambda: bool(window.chat.messages[-1].text), timeout=10_000)
    window.stop_action.trigger()  # the Escape shortcut's action
    wait_idle(qtbot, window, timeout=2000)
    assert window.chat.messages[-1].state == "stopped"


def test_bad_model_path_shows_an_error_and_the_app_recovers(qtbot, open_window, tiny_models, tmp_path):
    window = open_window(tmp_path / "missing-model", wait_for=State.ERROR)
    assert window.state_label.text().startswith("Error") and "does not exist" in window.state_label.text()
    assert any("does not exist" in n.text() for n in window.chat.notices)
    send(qtbot, window, "hello?")
    wait_idle(qtbot, window)
    assert window.chat.messages[-1].state == "failed"
    assert "No model is loaded" in window.chat.messages[-1].footer.text()
    # Choosing a real model (what the Settings… dialog does) makes it work.
    with qtbot.waitSignal(window.bridge.status_changed, timeout=30_000,
                          check_params_cb=lambda e: e.state is State.READY):
        window.apply_settings(window.settings.replace(model=str(tiny_models["causal_lm"]), max_new_tokens=4))
    send(qtbot, window, "hello again")
    wait_idle(qtbot, window)
    assert window.chat.messages[-1].state == "done"
    assert window.chat.messages[0].text == "hello?"  # nothing earlier was lost
    assert load_settings(window.paths).settings.model == str(tiny_models["causal_lm"])


def test_broken_image_gives_a_clear_error_and_keeps_the_chat(qtbot, open_window, tiny_models, broken_image, tmp_path):
    window = open_window(tiny_models["idefics3"], max_new_tokens=4)
    send(qtbot, window, "first question")
    wait_idle(qtbot, window)
    first_reply = window.chat.messages[1].text
    window.attach_files([str(broken_image)])  # its header looks fine: it fails when decoded
    send(qtbot, window, "what is this?")
    wait_idle(qtbot, window)
    failed = window.chat.messages[-1]
    assert failed.state == "failed" and "broken.png" in failed.footer.text()
    # A file that is not an image at all is refused when attached.
    not_image = tmp_path / "notes.png"
    not_image.write_text("just text")
    window.attach_files([str(not_image)])
    assert window.attachments.items == []
    assert "notes.png" in window.chat.notices[-1].text()
    assert [m.text for m in window.chat.messages[:2]] == ["first question", first_reply]
    send(qtbot, window, "still working?")
    wait_idle(qtbot, window)
    assert window.chat.messages[-1].state == "done"
    assert [m.text for m in window.bridge.engine.chat if m.role == "user"] == ["first question", "still working?"]


def test_generation_failure_keeps_the_partial_reply(qtbot, open_window, tiny_models):
    window = open_window(tiny_models["idefics3"], failing_factory(after_chunks=5), max_new_tokens=50)
    send(qtbot, window, "first try")
    wait_idle(qtbot, window)
    failed = window.chat.messages[-1]
    assert failed.state == "failed" and failed.text  # what had streamed is still shown
    assert "failed while answering" in failed.footer.text() and "device-side assert" in failed.footer.text()
    assert window.state_label.text().startswith("Ready")
    assert window.bridge.engine.chat == []  # a failed turn does not poison the model's context
    assert window.send_button.isVisible()


def test_special_tokens_typed_in_the_window_stay_text(qtbot, open_window, tiny_models):
    window = open_window(tiny_models["idefics3"], max_new_tokens=4)
    typed = "hi <image> <end_of_utterance> <|im_end|>"
    send(qtbot, window, typed)
    wait_idle(qtbot, window)
    assert window.chat.messages[-1].state == "done"
    backend = window.bridge.engine.backend
    ids = backend.last_inputs["input_ids"]
    assert "pixel_values" not in backend.last_inputs
    assert int((ids == backend.tokenizer.convert_tokens_to_ids("<image>")).sum()) == 0
    eou = backend.tokenizer.convert_tokens_to_ids("<end_of_utterance>")
    assert int((ids == eou).sum()) == 2  # only the template's own: after the system prompt and the user turn
    assert window.chat.messages[0].body.text() == typed  # shown literally, not as markup


def test_new_chat_clears_view_and_model_history(qtbot, open_window, tiny_models):
    window = open_window(tiny_models["causal_lm"], max_new_tokens=3)
    send(qtbot, window, "remember tokyo")
    wait_idle(qtbot, window)
    window.new_chat_action.trigger()
    qtbot.waitUntil(lambda: window.bridge.engine.chat == [], timeout=5000)
    assert window.chat.messages == []
    send(qtbot, window, "what did I say?")
    wait_idle(qtbot, window)
    prompt = window.bridge.engine.backend.tokenizer.decode(window.bridge.engine.backend.last_inputs["input_ids"][0])
    assert "tokyo" not in prompt


def test_closing_during_generation_joins_the_thread(qtbot, paths, tiny_models):
    window = MainWindow(
        Settings(model=str(tiny_models["idefics3"]), max_new_tokens=1500),
        paths,
        backend_factory=paced_factory(delay=0.01, min_new_tokens=1500),
    )
    window.show()
    window.bridge.load()
    qtbot.waitUntil(lambda: window.bridge.status.state is State.READY, timeout=30_000)
    send(qtbot, window, "a long answer please")
    qtbot.waitUntil(lambda: bool(window.chat.messages[-1].text), timeout=10_000)
    thread = window.bridge._thread
    started = time.monotonic()
    window.close()
    elapsed = time.monotonic() - started
    # The reply had ~15 s of tokens left: the thread ended because closing stopped it between
    # tokens, not because the reply ran out.  (Closing took 1.0 s on an idle machine and
    # 2.06 s once in CI under load: the bound is generous, and still far below 15 s.)
    assert thread.isFinished() and elapsed < 8.0, elapsed
    window.deleteLater()


def test_tokens_are_coalesced(qtbot, paths, tiny_models):
    bridge = SessionBridge(Settings(model=str(tiny_models["causal_lm"]), max_new_tokens=300), paths,
                          backend_factory=paced_factory(min_new_tokens=300), flush_ms=50)
    try:
        emissions = []
        bridge.tokens.connect(lambda turn_id, text: emissions.append(text))
        with qtbot.waitSignal(bridge.status_changed, timeout=30_000, check_params_cb=lambda e: e.state is State.READY):
            bridge.load()
        from assistant.events import UserTurn

        finished = []
        bridge.reply_finished.connect(finished.append)
        started = time.monotonic()
        bridge.submit(UserTurn("count"))
        qtbot.waitUntil(lambda: bool(finished), timeout=20_000)
        elapsed = time.monotonic() - started
        assert finished[0].tokens == 300
        assert "".join(emissions) == finished[0].text
        assert len(emissions) <= elapsed * 1000 / 50 + 2 < 300
    finally:
        assert bridge.shutdown()


def test_markdown_rendering():
    html = markdown_to_html("**bold** and `x = 1`\n\n```python\nprint('hi')\n```\n\n<script>alert(1)</script>")
    assert "font-weight" in html and "print(&#x27;hi&#x27;)" in html or "print('hi')" in html
    assert "monospace" in html.lower() or "courier" in html.lower()
    assert "&lt;script&gt;" in html  # raw HTML from the model is shown, not interpreted
    QApplication.processEvents()


def test_status_line_shows_download_progress(qtbot, paths, tiny_models):
    from assistant.events import StatusEvent

    window = MainWindow(Settings(model="HuggingFaceTB/SmolVLM-256M-Instruct"), paths)
    qtbot.addWidget(window)
    try:
        window.show()
        detail = "Downloading HuggingFaceTB/SmolVLM-256M-Instruct: 210.0 MB of 500.0 MB (21.0 MB/s, 14 s left)"
        window.on_status(StatusEvent(State.LOADING, detail, 0.42, model="HuggingFaceTB/SmolVLM-256M-Instruct", device="auto"))
        assert window.progress.isVisible() and window.progress.value() == 420
        assert window.state_label.text() == f"Loading model: {detail}"
        assert window.model_label.text() == "SmolVLM-256M-Instruct · auto"
        window.on_status(StatusEvent(State.LOADING, "Loading …", None))
        assert window.progress.maximum() == 0  # an indeterminate bar while the total is unknown
        window.on_status(StatusEvent(State.READY, "Ready", model="m", device="cpu"))
        assert not window.progress.isVisible() and window.state_label.text() == "Ready"
    finally:
        window.close()
        window.deleteLater()


SPOKEN = "Hello there. Here is the first answer. And a second sentence follows it."


@pytest.fixture
def speaking_window(qtbot, paths, tmp_path):
    """A window whose (scripted) replies are spoken into a real-time WAV recorder."""
    from assistant.devices.speaker import WavRecorderSpeaker
    from tests.conftest import scripted_factory

    def open_(reply: str, chunk_delay: float):
        speaker = WavRecorderSpeaker(tmp_path / "spoken.wav", realtime=True)
        window = MainWindow(Settings(model="scripted"), paths, backend_factory=scripted_factory(reply, chunk_delay),
                            speaker=speaker)
        speech = []
        window.bridge.speech.connect(speech.append)
        window.show()
        window.bridge.load()
        qtbot.waitUntil(lambda: window.bridge.status.state is State.READY, timeout=10_000)
        return window, speaker, speech

    return open_


def test_replies_are_spoken_and_stop_silences_them(qtbot, speaking_window):
    window, speaker, speech = speaking_window(SPOKEN * 3, 0.01)
    try:
        assert window.speak_action.isChecked() and window.speak_action.isEnabled()
        send(qtbot, window, "talk to me")
        qtbot.waitUntil(lambda: any(e.kind == "speaking" for e in speech), timeout=10_000)
        assert "Speaking" in window.speech_label.text()
        wait_idle(qtbot, window)
        assert window.chat.messages[-1].state == "done"  # the text reply is complete...
        assert window.bridge.voice.speaking  # ...while it is still being read out
        stopped_at = time.monotonic()
        qtbot.keyClick(window.prompt, Qt.Key.Key_Escape)
        qtbot.waitUntil(lambda: any(e.kind == "idle" for e in speech), timeout=1000)
        idle = next(e for e in speech if e.kind == "idle")
        assert idle.time - stopped_at < 0.1
        assert window.speech_label.text() == ""
        assert window.chat.messages[-1].text == SPOKEN * 3  # the text reply is kept
        # Mute: the next reply makes no sound.
        window.speak_action.trigger()
        assert not window.settings.speak_replies
        written = speaker.samples_written
        send(qtbot, window, "again")
        wait_idle(qtbot, window)
        qtbot.wait(300)
        assert speaker.samples_written == written
    finally:
        window.close()
        window.deleteLater()
    assert not window.bridge.voice._thread.is_alive()


def test_closing_while_speaking_joins_the_speech_thread(qtbot, speaking_window):
    window, _, _ = speaking_window(SPOKEN, 0.0)
    send(qtbot, window, "talk")
    qtbot.waitUntil(lambda: window.bridge.voice.speaking, timeout=10_000)
    started = time.monotonic()
    window.close()
    assert time.monotonic() - started < 2.0
    assert not window.bridge.voice._thread.is_alive() and window.bridge._thread.isFinished()
    window.deleteLater()


def test_a_new_question_interrupts_the_spoken_answer(qtbot, speaking_window):
    window, _, speech = speaking_window(SPOKEN * 2, 0.0)
    try:
        send(qtbot, window, "first")
        wait_idle(qtbot, window)
        qtbot.waitUntil(lambda: window.bridge.voice.speaking, timeout=10_000)
        asked = time.monotonic()
        send(qtbot, window, "second")
        qtbot.waitUntil(lambda: any(e.kind == "idle" for e in speech), timeout=1000)
        assert next(e for e in speech if e.kind == "idle").time - asked < 0.1
        first_reply_sentences = [e for e in speech if e.kind == "sentence" and e.time < asked]
        assert first_reply_sentences
    finally:
        window.close()
        window.deleteLater()


def test_changing_a_setting_saves_only_that_setting(qtbot, paths, tiny_models):
    from assistant.settings import save_settings

    save_settings(paths, Settings(model="saved/model", max_new_tokens=99))
    # This session runs with a command-line override of the model.
    window = MainWindow(load_settings(paths).settings.replace(model=str(tiny_models["causal_lm"])), paths)
    qtbot.addWidget(window)
    try:
        window.camera_panel.mirror.setChecked(not window.settings.mirror_camera)
        saved = load_settings(paths).settings
        assert saved.model == "saved/model" and saved.max_new_tokens == 99  # the override was not saved
        assert saved.mirror_camera == window.settings.mirror_camera  # the change was
    finally:
        window.close()


def test_settings_dialog_edits_every_setting(qtbot):
    from assistant.speech.tts import Voice
    from ui.dialogs.settings import SettingsDialog

    dialog = SettingsDialog(Settings(), voices=[Voice("en-us", "English (America)"), Voice("fr-fr", "French")])
    qtbot.addWidget(dialog)
    dialog.model.setCurrentText("  some/other-model ")
    dialog.device.setCurrentText("cpu")
    dialog.dtype.setCurrentText("bfloat16")
    dialog.max_new_tokens.setValue(64)
    dialog.temperature.setValue(0.7)
    assert dialog.image_detail.currentData() == "auto"
    dialog.image_detail.setCurrentIndex(dialog.image_detail.findData("high"))
    dialog.system_prompt.setPlainText("Be brief.")
    dialog.speak.setChecked(False)
    dialog.voice.setCurrentIndex(dialog.voice.findData("fr-fr"))
    dialog.speech_rate.setValue(220)
    dialog.volume.setValue(40)
    dialog.asr_model.setCurrentText(" Systran/faster-whisper-small.en ")
    dialog.asr_language.setText("EN")
    dialog.vad_threshold.setValue(0.65)
    dialog.vad_min_silence.setValue(0.8)
    dialog.half_duplex.setChecked(False)
    result = dialog.result_settings()
    assert (result.asr_model, result.asr_language, result.vad_threshold, result.vad_min_silence, result.half_duplex) == (
        "Systran/faster-whisper-small.en", "en", 0.65, 0.8, False)
    assert (result.model, result.device, result.dtype, result.max_new_tokens, result.temperature,
            result.image_detail) == ("some/other-model", "cpu", "bfloat16", 64, 0.7, "high")
    assert (result.system_prompt, result.speak_replies, result.voice, result.speech_rate, result.speech_volume) == (
        "Be brief.", False, "fr-fr", 220, 0.4)
    dialog.model.setCurrentText("")
    dialog.accept()
    assert not dialog.problem.isHidden() and "model" in dialog.problem.text()  # refused, with the reason
    assert dialog.result() != SettingsDialog.DialogCode.Accepted


def test_closing_during_a_model_load_never_freezes_the_window(qtbot, paths):
    """A load cannot stop half-way: closing hides the window at once (no wait on the GUI
    thread beyond a short bound) and finishes closing when the load has ended."""
    import threading

    from tests.conftest import ScriptedBackend

    release = threading.Event()

    class SlowLoad(ScriptedBackend):
        def load(self, progress, cancel):
            release.wait(60)  # like from_pretrained: deaf to cancel
            return super().load(progress, cancel)

    window = MainWindow(Settings(model="slow"), paths, backend_factory=lambda s, p: SlowLoad("hi"),
                        persist_settings=False)
    window.show()
    with qtbot.waitSignal(window.bridge.status_changed, timeout=30_000,
                          check_params_cb=lambda e: e.state is State.LOADING):
        window.bridge.load()
    started = time.monotonic()
    window.close()
    assert time.monotonic() - started < 10  # bounded (2 s for the thread to end), not the load's 60 s
    assert not window.isVisible() and not window.bridge._thread.isFinished()
    release.set()
    qtbot.waitUntil(lambda: window.bridge._thread.isFinished() and window.bridge._released, timeout=30_000)
    window.deleteLater()


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="None is immortal from Python 3.12 on")
def test_qt_calls_do_not_use_up_references_to_none(qtbot):
    """PySide6 6.12.0 on Python 3.11 dropped a reference to None on every Qt call returning
    nothing, so a long session aborted ("none_dealloc"); pyproject.toml excludes it."""
    from PySide6.QtWidgets import QLabel

    label = QLabel()
    qtbot.addWidget(label)
    before = sys.getrefcount(None)
    for _ in range(1000):
        label.setText("x")
    assert sys.getrefcount(None) - before > -100


def test_every_control_has_an_accessible_name(qtbot, main_window, tiny_models):
    """What a screen reader says for each control of the window (and of its Settings dialog):
    walked over the whole widget tree, through Qt's accessibility interface."""
    from PySide6.QtGui import QAccessible
    from PySide6.QtWidgets import (
        QAbstractButton,
        QAbstractItemView,
        QAbstractSlider,
        QAbstractSpinBox,
        QComboBox,
        QLineEdit,
        QPlainTextEdit,
        QScrollBar,
        QTextEdit,
        QWidget,
    )

    from assistant.settings import Settings
    from ui.dialogs.settings import SettingsDialog

    def within(widget, kinds) -> bool:
        parent = widget.parent()
        while parent is not None:
            if isinstance(parent, kinds):
                return True
            parent = parent.parent()
        return False

    interactive = (QAbstractButton, QAbstractItemView, QAbstractSlider, QAbstractSpinBox, QComboBox, QLineEdit,
                   QPlainTextEdit, QTextEdit)
    window = main_window(Settings(model=str(tiny_models["causal_lm"]), device="cpu"))
    dialog = SettingsDialog(window.settings, window)
    qtbot.addWidget(dialog)
    unnamed = []
    for root in (window, dialog):
        for widget in root.findChildren(QWidget):
            if not isinstance(widget, interactive) or widget.objectName().startswith("qt_"):
                continue
            if isinstance(widget, QScrollBar) or within(widget, (QComboBox, QAbstractSpinBox)):
                continue  # scroll bars; the editor and list inside a combo or number box (the box is named)
            interface = QAccessible.queryAccessibleInterface(widget)
            name = interface.text(QAccessible.Text.Name) if interface is not None else ""
            if not name.strip():
                unnamed.append(f"{type(widget).__name__}#{widget.objectName()} in {type(widget.parent()).__name__}")
    assert not unnamed, unnamed
