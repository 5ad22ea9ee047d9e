"""The microphone panel: on/off, device, level meter, push-to-talk, hands-free, and what it is doing.

The device selector lists the default input, the sound inputs, recordings chosen
as microphones, "WAV file…" and "Simulated echo room…" (``room:PATH``: a recording
of the user plus the assistant's own voice as a room sends it back).

With a wake word chosen, hands-free answers only what follows it: the panel says
"Say 'Hey Jarvis'", flashes when it hears it, and counts down the follow-up window
after a reply (in which the next question needs no wake word).

The listening thread lives in the engine (``VoiceIn``, owned by the session).
This panel only pulls its newest level and state on a display-rate timer: no
Qt call crosses threads.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable

from PySide6.QtCore import QTimer, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from assistant.devices.echo_room import is_room_spec
from assistant.encoders.listener import ListenState
from assistant.encoders.wake_word import (
    SUGGESTED_WAKE_WORD,
    WAKE_PHRASES,
    WakeGate,
    WakeState,
    wake_words_available,
)

from ui.panels.elide import PathComboBox

METER_FLOOR_DB = -60  # the meter's left end

_STATE_TEXT = {
    ListenState.OFF: "Microphone off",
    ListenState.STARTING: "Opening the microphone…",
    ListenState.IDLE: "Hold Space or Talk to speak",
    ListenState.LISTENING: "Listening…",
    ListenState.WAITING_FOR_WAKE_WORD: "Waiting for the wake word",
    ListenState.HEARING: "Hearing speech…",
    ListenState.RECORDING: "Recording — release to send",
    ListenState.MUTED: "Muted while the assistant speaks",
    ListenState.RECONNECTING: "Microphone lost — reconnecting…",
    ListenState.ENDED: "The recording has ended",
    ListenState.ERROR: "Microphone error",
}

DEFAULT_DEVICE = "Default microphone"
MIC_TURN_ON = "Turn mic on"
MIC_TURN_OFF = "Turn mic off"
FILE_ITEM = "WAV file…"
ROOM_ITEM = "Simulated echo room…"
ROOM_CHOICE = "room:"  # the item's data: pick the user's recording, then the spec is room:PATH
AUDIO_FILTER = "Audio (*.wav *.flac *.ogg *.oga *.opus *.mp3 *.aiff *.aif)"


NO_WAKE_WORD = "Off"
WAKE_FLASH_MS = 1200  # how long the state line lights up when the wake word is heard


def source_label(spec: str) -> str:
    """How a microphone spec is shown in the selector."""
    if is_room_spec(spec):
        return f"Echo room: {spec[len(ROOM_CHOICE):]}"
    return spec


LISTENING_MODES = {  # what the panel says when listening starts
    "echo cancellation": "Echo cancellation is on: speak any time, even over the reply, to interrupt it.",
    "half-duplex": "Half-duplex: the microphone is off while replies are spoken (no echo cancellation).",
    "open": "The microphone stays on while replies are spoken (headphones): speak to interrupt.",
}


class MicPanel(QWidget):
    mic_toggled = Signal(bool)  # the user turned the microphone on/off
    source_chosen = Signal(str)  # "" (default), a device index, or an audio file path
    hands_free_toggled = Signal(bool)
    talk_pressed = Signal(bool)  # push-to-talk button down/up
    wake_word_chosen = Signal(str)  # a model id of WAKE_PHRASES, or "" (none)

    def __init__(self, source: str = "", hands_free: bool = False, wake_word: str = "",
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("micPanel")
        self._state_source = lambda: ListenState.OFF
        self._level_source = lambda: METER_FLOOR_DB
        self._wake_source: Callable[[], WakeGate | None] = lambda: None
        self._flashing = False
        self.transcribing = False
        self.notice = ""  # a short message shown until the state changes (e.g. "no speech heard")
        self._shown_state: ListenState | None = None

        column = QVBoxLayout(self)
        column.setContentsMargins(6, 2, 6, 6)
        top = QHBoxLayout()
        self.toggle = QPushButton(MIC_TURN_ON)
        self.toggle.setObjectName("micToggle")
        self.toggle.setCheckable(True)
        self.toggle.setToolTip("Open the microphone (the level meter shows what it hears)")
        self.toggle.toggled.connect(self._toggled)
        self.toggle.setAccessibleName(MIC_TURN_ON)
        # A recording's path can be long: elided in the middle, in full in the tooltips, never widening the column.
        self.source = PathComboBox("Microphone: a sound input, a WAV file played as one, or a simulated echo room "
                                   "(a WAV file of the user, plus the assistant's own voice as a room sends it back)")
        self.source.setObjectName("micSource")
        self.source.setAccessibleName("Microphone source")
        self.source.addItem(DEFAULT_DEVICE, "")
        if source:
            self.source.addItem(source_label(source), source)
            self.source.setCurrentIndex(1)
        self.source.addItem(FILE_ITEM, None)
        self.source.addItem(ROOM_ITEM, ROOM_CHOICE)
        self.source.activated.connect(self._source_activated)
        top.addWidget(self.toggle)
        top.addWidget(self.source, 1)
        column.addLayout(top)

        self.meter = QProgressBar()
        self.meter.setObjectName("micMeter")
        self.meter.setRange(METER_FLOOR_DB, 0)
        self.meter.setValue(METER_FLOOR_DB)
        self.meter.setTextVisible(False)
        self.meter.setFixedHeight(8)
        self.meter.setToolTip("Input level")
        column.addWidget(self.meter)

        row = QHBoxLayout()
        self.talk = QPushButton("Talk")
        self.talk.setObjectName("talkButton")
        self.talk.setToolTip("Hold to talk (or hold Space when you are not typing)")
        self.talk.pressed.connect(lambda: self.talk_pressed.emit(True))
        self.talk.released.connect(lambda: self.talk_pressed.emit(False))
        self.hands_free = QCheckBox("Hands-free")
        self.hands_free.setObjectName("handsFree")
        self.hands_free.setToolTip("Listen all the time: each thing you say is sent when you pause")
        self.hands_free.setChecked(hands_free)
        self.hands_free.toggled.connect(self.hands_free_toggled)
        self.wake_word = QComboBox()
        self.wake_word.setObjectName("wakeWord")
        self.wake_word.setAccessibleName("Wake word")
        self.wake_word.setToolTip("Hands-free answers only what you say after the wake word "
                                  "(and, for a few seconds after a reply, follow-up questions)")
        self.wake_word.addItem(NO_WAKE_WORD, "")
        for name, phrase in WAKE_PHRASES.items():
            suggested = " (suggested)" if name == SUGGESTED_WAKE_WORD else ""
            self.wake_word.addItem(f"“{phrase}”{suggested}", name)
        self.set_wake_word(wake_word)
        if not wake_words_available() and not wake_word:
            self.wake_word.setEnabled(False)
            self.wake_word.setToolTip("Wake words need the pymicro-wakeword package, which has no build for "
                                      "this system (Linux with glibc 2.35+, or Windows)")
        self.wake_word.activated.connect(lambda i: self.wake_word_chosen.emit(self.wake_word.itemData(i)))
        row.addWidget(self.talk)
        row.addWidget(self.hands_free, 1)
        column.addLayout(row)
        wake_row = QHBoxLayout()
        wake_label = QLabel("Wake word:")
        wake_label.setBuddy(self.wake_word)
        wake_row.addWidget(wake_label)
        wake_row.addWidget(self.wake_word, 1)
        column.addLayout(wake_row)
        self.state_label = QLabel(_STATE_TEXT[ListenState.OFF])
        self.state_label.setObjectName("micState")
        self.state_label.setWordWrap(True)
        column.addWidget(self.state_label)

        self._timer = QTimer(self)
        self._timer.setInterval(33)
        self._timer.timeout.connect(self.refresh)
        self._timer.start()
        self._devices: list[tuple[int, str]] | None = None
        self._lister = threading.Thread(target=self._list_devices, name="list-microphones", daemon=True)
        self._lister.start()  # PortAudio takes a while to enumerate: not on the GUI thread
        self._devices_shown = False

    # -- wiring ---------------------------------------------------------------------

    def follow(self, state_source, level_source, wake_source=lambda: None) -> None:
        """Where the panel reads the listener's newest state, level and wake-word gate (polled)."""
        self._state_source, self._level_source, self._wake_source = state_source, level_source, wake_source

    def set_wake_word(self, name: str) -> None:
        """Show ``name`` (a model id, or "" for none) as chosen, without asking for it again."""
        self.wake_word.setCurrentIndex(max(0, self.wake_word.findData(name)))

    def flash_wake(self) -> None:
        """The wake word was heard: light the state line up for a moment."""
        self._flashing = True
        self._shown_state = None
        QTimer.singleShot(WAKE_FLASH_MS, self._end_flash)
        self.refresh()

    def _end_flash(self) -> None:
        self._flashing = False
        self.refresh()

    def _list_devices(self) -> None:
        from assistant.devices.microphone import list_input_devices

        try:
            self._devices = list_input_devices()
        except Exception:  # noqa: BLE001 - the list is a convenience
            self._devices = []

    def _add_devices(self) -> None:
        self._devices_shown = True
        for index, name in self._devices or []:
            if self.source.findData(str(index)) < 0:
                self.source.insertItem(self._choices_at(), f"{index}: {name}", str(index))

    def _choices_at(self) -> int:
        """Where the last items ("WAV file…", "Simulated echo room…") begin: sources go before them."""
        return self.source.count() - 2

    def _source_activated(self, index: int) -> None:
        data = self.source.itemData(index)
        if data is None or data == ROOM_CHOICE:  # "WAV file…" or "Simulated echo room…"
            room = data == ROOM_CHOICE
            title = ("Simulated echo room: choose a recording of the user (the room adds the assistant's echo)"
                     if room else "Use a recording as the microphone")
            path, _ = QFileDialog.getOpenFileName(self, title, "", AUDIO_FILTER)
            if not path:
                self.source.setCurrentIndex(0)
                return
            data = ROOM_CHOICE + path if room else path
            self.set_source(data)
        self.source_chosen.emit(data)

    def set_source(self, spec: str) -> None:
        i = self.source.findData(spec)
        if i < 0:
            self.source.insertItem(self._choices_at(), source_label(spec), spec)
            i = self.source.findData(spec)
        self.source.setCurrentIndex(i)

    def _toggled(self, on: bool) -> None:
        self._name_toggle(on)
        self.mic_toggled.emit(on)

    def set_on(self, on: bool) -> None:
        """Show the microphone as on/off without asking for it again."""
        self.toggle.blockSignals(True)
        self.toggle.setChecked(on)
        self._name_toggle(on)
        self.toggle.blockSignals(False)

    def _name_toggle(self, on: bool) -> None:
        """The toggle names what clicking it does."""
        self.toggle.setText(MIC_TURN_OFF if on else MIC_TURN_ON)
        self.toggle.setAccessibleName(self.toggle.text())
        self.toggle.setToolTip("Close the microphone" if on
                               else "Open the microphone (the level meter shows what it hears)")

    def show_notice(self, text: str) -> None:
        self.notice = text
        self._shown_state = None
        self.refresh()

    # -- display ----------------------------------------------------------------------

    def refresh(self) -> None:
        if not self._devices_shown and self._devices is not None:
            self._add_devices()
        state = self._state_source()
        level = self._level_source() if state not in (ListenState.OFF, ListenState.ERROR) else METER_FLOOR_DB
        self.meter.setValue(int(max(METER_FLOOR_DB, min(0, level))))
        if self.transcribing:
            text = "Transcribing…"
        elif self.notice:
            text = self.notice
        else:
            text = self._wake_text(state) or _STATE_TEXT[state]
        look = "woken" if self._flashing else state.name.lower()
        if text != self.state_label.text() or look != self.state_label.property("listen"):
            self.state_label.setText(text)
            self.state_label.setProperty("listen", look)
            self.state_label.style().unpolish(self.state_label)
            self.state_label.style().polish(self.state_label)
        if state is not self._shown_state:
            if self._shown_state is not None:
                self.notice = ""  # a notice lasts until something happens
            self._shown_state = state

    def _wake_text(self, state: ListenState) -> str:
        """What hands-free with a wake word is doing, or "" without one."""
        gate: WakeGate | None = self._wake_source()
        if gate is None:
            return ""
        if state is ListenState.WAITING_FOR_WAKE_WORD:
            return f"Say “{gate.phrase}” to ask something"
        if state is not ListenState.LISTENING:
            return ""
        wake = gate.state
        if wake is WakeState.AWAKE:
            return "Listening — ask your question"
        if wake is WakeState.FOLLOW_UP:
            return f"Listening for a follow-up, no wake word needed — {math.ceil(gate.seconds_left)} s"
        return ""

    def show_mode(self, mode: str) -> None:
        """Say how it listens while replies are spoken ("echo cancellation", "half-duplex", "open")."""
        self.show_notice(LISTENING_MODES.get(mode, ""))

    def shutdown(self) -> None:
        self._timer.stop()
        self._lister.join(timeout=2)
