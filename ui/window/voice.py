"""Voice in: the microphone on and off, hands-free, push-to-talk (the Talk button, or
Space held while not typing: one turn per press, even where the key's autorepeat comes
as plain release+press pairs), and what the listening thread reports.

A part of ``MainWindow`` (``ui/main_window.py``), which it is mixed into: it uses the
window's widgets and bridges as attributes."""

from __future__ import annotations


from PySide6.QtCore import (
    QEvent,
    QObject,
    Qt,
    Slot,
)
from PySide6.QtWidgets import (
    QAbstractSpinBox,
    QApplication,
    QComboBox,
    QLineEdit,
    QPlainTextEdit,
    QTextEdit,
)

from assistant.events import Transcribed
from assistant.encoders.vad import Utterance
from assistant.encoders.listener import ListenEvent


class VoiceControls:
    @Slot(bool)
    def set_listening(self, on: bool) -> None:
        if on and self._speech_model_offered():  # said already in the chat: not downloaded yet
            self._say_speech_model_missing(first=True)
        self.mic_panel.set_on(on)
        if on:
            if self.bridge.listener is None:
                self.bridge.start_listening()
                self.mic_panel.show_mode(self.bridge.session.listening_mode)
        else:
            self.bridge.stop_listening()

    @Slot(bool)
    def set_hands_free(self, on: bool) -> None:
        if on != self.settings.hands_free:
            self.apply_settings(self.settings.replace(hands_free=on))
        if on and self.bridge.listener is None:
            self.set_listening(True)

    @Slot(bool)
    def push_to_talk(self, pressed: bool) -> None:
        if pressed and self.bridge.listener is None:
            self.set_listening(True)
        self.bridge.push_to_talk(pressed)

    @Slot(object)
    def on_utterance(self, utterance: Utterance) -> None:
        """Something was said: it goes through the pipeline like typed text, camera frames included."""
        self.bridge.submit_utterance(utterance, self.camera_panel.frames_for_question())

    @Slot(object)
    def on_transcribed(self, event: Transcribed) -> None:
        if not event.text:
            self.mic_panel.show_notice("Didn't catch that: no words were recognized.")
            return
        self.chat.add_user(event.turn_id, event.text, [])
        self.chat.add_assistant(event.turn_id)

    @Slot(object)
    def on_listen_event(self, event: ListenEvent) -> None:
        if event.kind == "error":
            self.bridge.stop_listening()
            self.mic_panel.set_on(False)
            self.chat.add_notice(f"Microphone: {event.text}", "warning")
        elif event.kind == "lost":
            self.chat.add_notice(f"Microphone: {event.text} Trying to reconnect…", "warning")
        elif event.kind == "reconnected":
            self.mic_panel.show_notice(f"{event.text} is back.")
        elif event.kind == "dropped":
            self.mic_panel.show_notice(event.text)
        elif event.kind == "wake":
            self.mic_panel.flash_wake()
        elif event.kind == "ignored":
            self.mic_panel.show_notice(f"Not answered: {event.text}.")
        elif event.kind == "ended":
            self.bridge.stop_listening()
            self.mic_panel.set_on(False)
            self.mic_panel.show_notice(f"The recording {event.text} has ended.")

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt API
        """Hold Space to talk, unless the keyboard is typing into something."""
        kind = event.type()
        if kind not in (QEvent.Type.KeyPress, QEvent.Type.KeyRelease):
            return False
        if event.key() != Qt.Key.Key_Space or event.modifiers() & ~Qt.KeyboardModifier.KeypadModifier:
            return False
        if not self.isActiveWindow() and QApplication.activeWindow() is not None:
            return False
        focus = QApplication.focusWidget()
        if isinstance(focus, (QLineEdit, QTextEdit, QPlainTextEdit, QAbstractSpinBox, QComboBox)):
            if not (isinstance(focus, QTextEdit) and focus.isReadOnly()):
                return False
        if event.isAutoRepeat():
            return True
        if kind == QEvent.Type.KeyPress:
            if self._space_release.isActive():  # a release and a press at once: the key's autorepeat
                self._space_release.stop()
            elif not self._space_talking:
                self._space_talking = True
                self.push_to_talk(True)
        elif self._space_talking and not self._space_release.isActive():
            # Some systems send a held key's autorepeat as release+press pairs not marked as
            # such: the release counts once no press follows it at once (one turn per press).
            self._space_release.start()
        return True

    def _space_released(self) -> None:
        self._space_talking = False
        self.push_to_talk(False)
