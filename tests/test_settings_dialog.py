"""The settings dialog (tabs, checks in the user's words, accessibility) and the
keyboard-shortcuts overview, driven as a user drives them."""

from __future__ import annotations

import dataclasses
import re
import wave

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractButton,
    QAbstractSpinBox,
    QApplication,
    QComboBox,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QSlider,
    QTextEdit,
    QToolBar,
    QWidget,
)

from assistant.settings import Settings, SettingsError
from tests.conftest import scripted_factory

INTERACTIVE = (QAbstractButton, QLineEdit, QComboBox, QAbstractSpinBox, QPlainTextEdit, QTextEdit, QSlider)
FIELD_NAMES = [f.name for f in dataclasses.fields(Settings) if f.name != "extra"]
# Field names that are not also words a sentence may use.
INTERNAL = [name for name in FIELD_NAMES if "_" in name] + ["dtype", "backend", "mic", "quantization"]


def internal_names_in(text: str) -> list[str]:
    return [name for name in INTERNAL if re.search(rf"(?<![\w]){re.escape(name)}(?![\w])", text)]


@pytest.fixture
def dialog(qtbot):
    from ui.dialogs.settings import SettingsDialog

    def open_(settings: Settings | None = None):
        d = SettingsDialog(settings or Settings())
        qtbot.addWidget(d)
        d.show()
        qtbot.waitExposed(d, timeout=5000)
        return d

    return open_


def tab_of(d, widget: QWidget) -> str:
    """The title of the tab ``widget`` is on."""
    pages = {d.tabs.widget(i): d.tabs.tabText(i) for i in range(d.tabs.count())}
    while widget is not None:
        if widget in pages:
            return pages[widget]
        widget = widget.parentWidget()
    raise AssertionError("not on a tab")


def visible_tabs(d) -> list[str]:
    return [d.tabs.tabText(i) for i in range(d.tabs.count()) if d.tabs.isTabVisible(i)]


def type_into(qtbot, widget: QWidget, text: str) -> None:
    """Select what the field holds and type ``text`` over it, as a user does."""
    widget.setFocus()
    editor = widget.lineEdit() if isinstance(widget, (QComboBox, QAbstractSpinBox)) else widget
    editor.selectAll()
    qtbot.keyClicks(editor, text)


def write_wav(path) -> None:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes(b"\0\0" * 1600)


# -- tabs ------------------------------------------------------------------------------------


def test_fields_are_grouped_into_tabs(dialog):
    d = dialog(Settings(backend="openai"))
    assert visible_tabs(d) == ["Model", "Server", "Voice", "Camera", "Chat"]
    where = {
        "Model": [d.backend, d.model, d.device, d.dtype, d.max_new_tokens, d.temperature, d.image_detail],
        "Server": [d.base_url, d.remote_model, d.fetch_models, d.api_key, d.request_timeout,
                   d.first_token_timeout, d.stall_timeout, d.image_max_side],
        "Voice": [d.speak, d.voice, d.speech_rate, d.volume, d.mic, d.hands_free, d.wake_word, d.wake_follow_up,
                  d.asr_model, d.asr_language, d.vad_threshold, d.vad_min_silence, d.max_utterance,
                  d.half_duplex, d.echo_cancellation],
        "Camera": [d.camera, d.mirror_camera, d.camera_frames, d.attention_temperature, d.search_model,
                   d.view_label_list, d.labels_with_question],
        "Chat": [d.system_prompt, d.theme],
    }
    for title, fields in where.items():
        for field in fields:
            assert tab_of(d, field) == title, field.accessibleName()
    # A local model has no server: its tab goes, and the model's own rows come back.
    d.backend.setCurrentIndex(d.backend.findData("local"))
    assert visible_tabs(d) == ["Model", "Voice", "Camera", "Chat"]
    assert d.device.isVisibleTo(d) and d.server_note.isHidden()
    d.backend.setCurrentIndex(d.backend.findData("openai"))
    assert not d.device.isVisibleTo(d) and d.server_note.isVisibleTo(d)
    d.show_page("Server")
    assert d.base_url.isVisibleTo(d) and d.first_token_timeout.isVisibleTo(d)
    # A problem on the Server tab keeps it in reach when the backend goes local.
    d.stall_timeout.setValue(0)
    d.backend.setCurrentIndex(d.backend.findData("local"))
    assert "Server" in visible_tabs(d) and "(Server tab)" in d.problem.text()
    d.show_page("Server")
    d.stall_timeout.setValue(30)
    assert d.ok_button.isEnabled() and d.tabs.currentWidget() is d.server_tab  # not pulled away mid-edit
    d.backend.setCurrentIndex(d.backend.findData("openai"))
    d.backend.setCurrentIndex(d.backend.findData("local"))
    assert visible_tabs(d) == ["Model", "Voice", "Camera", "Chat"]


def test_nothing_overlaps_in_server_mode_at_any_size(qtbot, dialog):
    """The old form hid rows under a fixed-height prompt; every tab now lays out its rows apart."""
    d = dialog(Settings(backend="openai"))
    for size in ((560, 480), (900, 1000), (420, 300)):
        d.resize(*size)
        for i in range(d.tabs.count()):
            if not d.tabs.isTabVisible(i):
                continue
            d.tabs.setCurrentIndex(i)
            QApplication.processEvents()
            page = d.tabs.widget(i).widget()  # the scroll area's content
            rows = [w for w in page.findChildren(QWidget) if w.isVisibleTo(page) and isinstance(w, (*INTERACTIVE, QLabel))
                    and w.parentWidget() is not None and not isinstance(w.parentWidget(), (QComboBox, QAbstractSpinBox))]
            boxes = [(w, w.geometry().translated(w.parentWidget().mapTo(page, w.parentWidget().rect().topLeft())))
                     for w in rows]
            for a, (wa, ra) in enumerate(boxes):
                for wb, rb in boxes[a + 1:]:
                    if wa.isAncestorOf(wb) or wb.isAncestorOf(wa):
                        continue
                    assert not ra.intersects(rb), (d.tabs.tabText(i), size, wa.accessibleName() or wa.text(),
                                                   wb.accessibleName() or wb.text())


def test_wake_word_and_follow_up(dialog):
    d = dialog(Settings(wake_word="okay_nabu", wake_follow_up=12.0))
    names = [d.wake_word.itemText(i) for i in range(d.wake_word.count())]
    assert names == ["Off", "Hey Jarvis", "Okay Nabu", "Hey Mycroft", "Alexa"]
    assert d.wake_word.currentText() == "Okay Nabu" and d.wake_follow_up.value() == 12
    d.wake_word.setCurrentIndex(d.wake_word.findText("Alexa"))
    d.wake_follow_up.setValue(0)
    d.hands_free.setChecked(True)
    result = d.result_settings()
    assert (result.wake_word, result.wake_follow_up, result.hands_free) == ("alexa", 0.0, True)
    d.wake_word.setCurrentIndex(0)
    assert d.result_settings().wake_word == "" and not d.wake_follow_up.isEnabled()


def test_camera_microphone_and_theme_are_edited(dialog, tmp_path):
    recording = tmp_path / "me.wav"
    write_wav(recording)
    d = dialog()
    d.mic.setText(str(recording))
    d.camera.setText("1")
    d.mirror_camera.setChecked(False)
    d.camera_frames.setValue(4)
    d.max_utterance.setValue(45)
    d.theme.setCurrentIndex(d.theme.findData("dark"))
    result = d.result_settings()
    assert (result.mic, result.camera, result.mirror_camera, result.camera_frames, result.max_utterance,
            result.theme) == (str(recording), "1", False, 4, 45.0, "dark")


# -- checks in the user's words --------------------------------------------------------------


def test_a_rate_out_of_range_is_refused_with_a_message_not_clamped(qtbot, dialog):
    d = dialog()
    d.show_page("Voice")
    type_into(qtbot, d.speech_rate, "9999")
    assert d.speech_rate.value() == 9999  # what was typed stays typed
    message = "Speech rate must be between 40 and 600 words per minute"
    qtbot.waitUntil(lambda: d.problem.isVisible(), timeout=5000)
    assert message in d.problem.text() and "Voice tab" in d.problem.text()
    assert not d.ok_button.isEnabled()
    voice = d.tabs.indexOf(d.voice_tab)
    assert not d.tabs.tabIcon(voice).isNull()  # the tab with the problem is marked
    assert d.tabs.tabIcon(d.tabs.indexOf(d.model_tab)).isNull()
    qtbot.mouseClick(d.ok_button, Qt.MouseButton.LeftButton)
    d.accept()  # Enter in a field presses the default button: also refused
    assert d.isVisible() and d.result() != d.DialogCode.Accepted
    with pytest.raises(SettingsError):
        d.result_settings()

    type_into(qtbot, d.speech_rate, "300")
    qtbot.waitUntil(lambda: d.ok_button.isEnabled(), timeout=5000)
    assert d.problem.isHidden() and d.problems() == []
    assert d.tabs.tabIcon(voice).isNull()
    assert d.result_settings().speech_rate == 300
    d.accept()
    assert d.result() == d.DialogCode.Accepted


def test_arrows_stay_in_range_and_an_emptied_box_is_not_a_value(qtbot, dialog):
    d = dialog(Settings(speech_rate=600))
    d.speech_rate.stepBy(3)
    assert d.speech_rate.value() == 600 and d.problems() == []
    d.vad_threshold.setValue(0.2)
    d.vad_threshold.stepBy(-1)
    assert d.vad_threshold.value() == pytest.approx(0.2)
    d.show_page("Voice")
    d.vad_min_silence.setFocus()
    d.vad_min_silence.lineEdit().selectAll()
    qtbot.keyClick(d.vad_min_silence.lineEdit(), Qt.Key.Key_Backspace)
    assert d.vad_min_silence.cleanText() == ""
    qtbot.waitUntil(lambda: not d.ok_button.isEnabled(), timeout=5000)
    assert any(p.startswith("Pause that sends is empty") for p in d.problems())
    type_into(qtbot, d.speech_rate, "-")
    qtbot.waitUntil(lambda: any(p.startswith("Speech rate is not a number") for p in d.problems()), timeout=5000)
    assert "Fix" in d.ok_button.toolTip()


def test_every_number_box_says_its_range(dialog):
    d = dialog(Settings(backend="openai"))
    boxes = {d.max_new_tokens: "Longest reply must be between 1 and 32768 tokens.",
             d.temperature: "Temperature must be between 0 and 2.",
             d.request_timeout: "Timeout must be between 1 and 3600 seconds.",
             d.image_max_side: "Image size sent must be between 64 and 8192 pixels.",
             d.vad_threshold: "Speech threshold must be between 0.2 and 0.95.",
             d.wake_follow_up: "Follow-up time must be between 0 and 60 seconds.",
             d.camera_frames: "Frames sent with a question must be between 1 and 8 frames.",
             d.attention_temperature: "Frame choice spread must be more than 0 and at most 10."}
    for box in boxes:
        box.setValue(-5 if box is not d.attention_temperature else 0)
    problems = d.problems()
    for expected in boxes.values():
        assert expected in problems
    assert not d.ok_button.isEnabled()


def test_paths_are_checked(dialog, tmp_path):
    recording = tmp_path / "voice.wav"
    write_wav(recording)
    whisper = tmp_path / "whisper-folder"
    whisper.mkdir()
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"not really a video, but a file")
    d = dialog()

    missing_wav = tmp_path / "gone.wav"
    d.mic.setText(str(missing_wav))
    assert f"Microphone: the recording {missing_wav} does not exist." in d.problems()
    d.mic.setText(f"room:{missing_wav}?delay=0.05")
    assert f"Microphone: the recording {missing_wav} does not exist." in d.problems()
    for fine in (str(recording), f"room:{recording}", "", "2", "USB Audio Device"):
        d.mic.setText(fine)
        assert not any(p.startswith("Microphone") for p in d.problems()), fine

    missing_folder = tmp_path / "no-such-whisper"
    d.asr_model.setCurrentText(str(missing_folder))
    assert any(p.startswith(f"Speech model: the folder {missing_folder} does not exist") for p in d.problems())
    d.asr_model.setCurrentText(str(recording))
    assert any("is a file, not a folder" in p for p in d.problems())
    for fine in (str(whisper), "openai/whisper-small", ""):
        d.asr_model.setCurrentText(fine)
        assert not any(p.startswith("Speech model") for p in d.problems()), fine

    d.camera.setText(str(tmp_path / "missing.mp4"))
    assert any(p.startswith("Camera: the video file") for p in d.problems())
    d.camera.setText("-1")
    assert any("Camera number -1 is not valid" in p for p in d.problems())
    for fine in ("0", "3", str(video), "rtsp://camera.local/stream"):
        d.camera.setText(fine)
        assert not any(p.startswith("Camera") for p in d.problems()), fine

    d.model.setCurrentText(str(tmp_path / "no-model-here"))
    assert any(p.startswith("Model: the folder") for p in d.problems())
    assert not d.ok_button.isEnabled()
    d.model.setCurrentText("HuggingFaceTB/SmolVLM-256M-Instruct")
    assert d.problems() == [] and d.ok_button.isEnabled()


def test_messages_never_name_internal_fields(dialog, tmp_path):
    d = dialog(Settings(backend="openai"))
    d.base_url.setText("localhost:8000")
    d.model.setCurrentText("")
    d.speech_rate.setValue(5)
    d.request_timeout.setValue(0)
    d.mic.setText(str(tmp_path / "x.wav"))
    d.asr_model.setCurrentText(str(tmp_path / "folder"))
    d.camera.setText(str(tmp_path / "x.mp4"))
    d.search_model.setText(str(tmp_path / "clip"))
    d.wake_follow_up.setValue(99)
    problems = d.problems()
    assert "Server address must start with http:// or https://, for example http://localhost:8000/v1." in problems
    assert len(problems) >= 7
    shown = d.problem.text()
    assert internal_names_in(shown) == [], shown
    d.backend.setCurrentIndex(d.backend.findData("local"))  # now the (empty) model is checked
    assert any("Model is empty" in p and "model" in p for p in d.problems())
    assert internal_names_in(d.problem.text()) == []


def test_settings_errors_are_put_into_the_dialogs_words():
    """Every message ``Settings`` can raise, as the dialog would show it: no field names."""
    from ui.dialogs.settings_fields import FIELD_LABELS, in_user_words

    assert set(FIELD_LABELS) == set(FIELD_NAMES)  # a new setting needs a name people read
    seen = 0
    for name in FIELD_NAMES:
        for bad in (object(), -1, "nonsense"):
            try:
                Settings(**{name: bad})
            except SettingsError as exc:
                words = in_user_words(str(exc))
                assert internal_names_in(words) == [], (str(exc), words)
                assert words[0].isupper(), words
                seen += 1
    assert seen > 60
    assert in_user_words("base_url must be an http:// or https:// address, not 'x'").startswith("Server address")
    assert in_user_words("speech_rate must be between 40 and 600 words per minute") == (
        "Speech rate must be between 40 and 600 words per minute")


# -- accessibility -----------------------------------------------------------------------------


def unnamed(root: QWidget) -> list[str]:
    return [f"{type(w).__name__} {w.objectName()!r} {getattr(w, 'text', lambda: '')()!r}"
            for w in root.findChildren(QWidget) if isinstance(w, INTERACTIVE) and not w.accessibleName().strip()]


def test_every_control_has_an_accessible_name_and_a_labelled_field(dialog):
    d = dialog(Settings(backend="openai"))
    assert unnamed(d) == []
    labels = {label.buddy(): label.text() for label in d.findChildren(QLabel) if label.buddy() is not None}
    for field in (d.backend, d.model, d.device, d.dtype, d.max_new_tokens, d.base_url, d.remote_model, d.api_key,
                  d.voice, d.speech_rate, d.volume, d.mic, d.wake_word, d.wake_follow_up, d.asr_model,
                  d.camera, d.camera_frames, d.search_model, d.system_prompt, d.theme):
        assert field in labels, field.accessibleName()
        assert labels[field] == field.accessibleName()
    # Inner editors speak with their field's name.
    assert d.speech_rate.lineEdit().accessibleName() == "Speech rate"
    assert d.asr_model.lineEdit().accessibleName() == "Speech model"


def test_tab_moves_through_a_page_in_reading_order(qtbot, dialog):
    d = dialog()
    d.activateWindow()
    qtbot.waitUntil(lambda: d.isActiveWindow(), timeout=5000)
    d.show_page("Voice")
    d.speak.setFocus()
    order = []
    for _ in range(8):
        order.append(QApplication.focusWidget())
        qtbot.keyClick(QApplication.focusWidget(), Qt.Key.Key_Tab)
    assert order == [d.speak, d.voice, d.speech_rate, d.volume, d.mic, d.browse_mic, d.hands_free, d.wake_word]


# -- keyboard shortcuts ---------------------------------------------------------------------------


@pytest.fixture
def window(main_window):
    return main_window(Settings(model="scripted"), backend_factory=scripted_factory("Hello."),
                       persist_settings=False)


def test_f1_opens_the_shortcuts_built_from_the_real_actions(qtbot, window):
    from PySide6.QtGui import QKeySequence

    from ui.dialogs.shortcuts import ShortcutsDialog

    window.activateWindow()
    qtbot.waitUntil(lambda: window.isActiveWindow(), timeout=5000)
    qtbot.keyClick(window, Qt.Key.Key_F1)
    qtbot.waitUntil(lambda: window.findChild(ShortcutsDialog) is not None
                    and window.findChild(ShortcutsDialog).isVisible(), timeout=5000)
    shortcuts = window.findChild(ShortcutsDialog)
    rows = dict(shortcuts.rows())
    native = QKeySequence.SequenceFormat.NativeText
    assert rows["New chat"] == QKeySequence(QKeySequence.StandardKey.New).toString(native)  # Ctrl+N
    assert rows["Stop"] == "Esc"
    assert rows["Settings"] == QKeySequence("Ctrl+,").toString(native)
    assert rows["Attach image"] == QKeySequence(QKeySequence.StandardKey.Open).toString(native)
    assert rows["Keyboard shortcuts"] == "F1 or " + QKeySequence("Ctrl+/").toString(native)
    assert rows["Send the message"] == "Enter" and rows["New line in the message"] == "Shift+Enter"
    assert "Space" in rows.values()
    assert unnamed(shortcuts) == []
    assert shortcuts.list.accessibleName() == "Keyboard shortcuts"

    # What the list shows is what the actions say, not a copy.
    window.import_action.setShortcut(QKeySequence("Ctrl+I"))
    shortcuts.close()
    window.activateWindow()
    qtbot.waitUntil(lambda: window.isActiveWindow(), timeout=5000)
    qtbot.keyClick(window, Qt.Key.Key_Slash, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: shortcuts.isVisible(), timeout=5000)
    assert dict(shortcuts.rows())["Import"] == QKeySequence("Ctrl+I").toString(native)
    assert window.findChildren(ShortcutsDialog) == [shortcuts]  # one dialog, brought back
    assert any(window.shortcuts_action in bar.actions() for bar in window.findChildren(QToolBar))  # also a button
    shortcuts.close()


def test_a_settings_file_warning_names_settings_as_the_dialog_does(paths):
    from assistant.settings import load_settings
    from ui.dialogs.settings_fields import readable_notice

    paths.config.mkdir(parents=True)
    paths.settings_file.write_text('{"device": "tpu", "speech_rate": 9999, "base_url": "nowhere", "model": "a/b"}')
    loaded = load_settings(paths)
    notice = readable_notice(loaded.warning)
    assert "were reset: Server address, Device, Speech rate." in notice, notice
    assert internal_names_in(notice) == []
    assert loaded.settings.model == "a/b"  # the usable value was kept
