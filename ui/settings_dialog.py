"""Model and generation settings."""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QSlider,
    QSpinBox,
    QWidget,
)

from assistant.settings import DEFAULT_MODEL, DEVICES, DTYPES, Settings, SettingsError
from assistant.voice.tts import Voice


class SettingsDialog(QDialog):
    def __init__(self, settings: Settings, parent: QWidget | None = None, voices: Sequence[Voice] = ()) -> None:
        super().__init__(parent)
        self.setWindowTitle("Model and settings")
        self.setMinimumWidth(520)
        self._settings = settings
        form = QFormLayout(self)

        self.model = QComboBox()
        self.model.setEditable(True)
        for choice in dict.fromkeys([settings.model, DEFAULT_MODEL]):
            self.model.addItem(choice)
        self.model.setCurrentText(settings.model)
        self.model.setToolTip("A Hugging Face hub id (downloaded on first use) or a local model folder")
        browse = QPushButton("Folder…")
        browse.clicked.connect(self._browse)
        row = QHBoxLayout()
        row.addWidget(self.model, 1)
        row.addWidget(browse)
        form.addRow("Model", row)

        self.device = QComboBox()
        self.device.addItems(DEVICES)
        self.device.setCurrentText(settings.device)
        form.addRow("Device", self.device)
        self.dtype = QComboBox()
        self.dtype.addItems(DTYPES)
        self.dtype.setCurrentText(settings.dtype)
        form.addRow("Precision", self.dtype)

        self.max_new_tokens = QSpinBox()
        self.max_new_tokens.setRange(1, 32768)
        self.max_new_tokens.setValue(settings.max_new_tokens)
        form.addRow("Longest reply (tokens)", self.max_new_tokens)
        self.temperature = QDoubleSpinBox()
        self.temperature.setRange(0.0, 2.0)
        self.temperature.setSingleStep(0.1)
        self.temperature.setValue(settings.temperature)
        self.temperature.setToolTip("0 picks the most likely word every time")
        form.addRow("Temperature", self.temperature)
        self.system_prompt = QPlainTextEdit(settings.system_prompt)
        self.system_prompt.setFixedHeight(80)
        form.addRow("System prompt", self.system_prompt)

        self.speak = QCheckBox("Read replies aloud")
        self.speak.setChecked(settings.speak_replies)
        form.addRow("Voice output", self.speak)
        self.voice = QComboBox()
        self.voice.addItem("System default", "")
        for voice in voices:
            self.voice.addItem(voice.name, voice.id)
        if settings.voice and self.voice.findData(settings.voice) < 0:
            self.voice.addItem(settings.voice, settings.voice)
        self.voice.setCurrentIndex(max(0, self.voice.findData(settings.voice)))
        form.addRow("Voice", self.voice)
        self.speech_rate = QSpinBox()
        self.speech_rate.setRange(40, 600)
        self.speech_rate.setSuffix(" words/min")
        self.speech_rate.setValue(settings.speech_rate)
        form.addRow("Speaking rate", self.speech_rate)
        self.volume = QSlider(Qt.Orientation.Horizontal)
        self.volume.setRange(0, 100)
        self.volume.setValue(round(settings.speech_volume * 100))
        form.addRow("Volume", self.volume)

        self.problem = QLabel()
        self.problem.setObjectName("dialogError")
        self.problem.hide()
        form.addRow(self.problem)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Choose a model folder")
        if folder:
            self.model.setCurrentText(folder)

    def result_settings(self) -> Settings:
        return self._settings.replace(
            model=self.model.currentText().strip(),
            device=self.device.currentText(),
            dtype=self.dtype.currentText(),
            max_new_tokens=self.max_new_tokens.value(),
            temperature=round(self.temperature.value(), 2),
            system_prompt=self.system_prompt.toPlainText(),
            speak_replies=self.speak.isChecked(),
            voice=self.voice.currentData() or "",
            speech_rate=self.speech_rate.value(),
            speech_volume=self.volume.value() / 100,
        )

    def accept(self) -> None:
        try:
            self.result_settings()
        except SettingsError as exc:
            self.problem.setText(str(exc))
            self.problem.show()
            return
        super().accept()
