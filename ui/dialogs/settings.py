"""Model and generation settings."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from PySide6.QtCore import QObject, Qt, Signal
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
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSlider,
    QSpinBox,
    QWidget,
)

from assistant.settings import DEFAULT_MODEL, DEVICES, DTYPES, Settings, SettingsError
from assistant.speech.tts import Voice
from ui.workers.thread_events import ThreadEvents

BACKEND_CHOICES = (("Local (this computer)", "local"), ("OpenAI-compatible server", "openai"))
IMAGE_DETAIL_CHOICES = (("Auto (low without a GPU)", "auto"), ("Low: one tile", "low"), ("High: full tiling", "high"))


class _ModelLister(QObject):
    """Asks a server for its models (``GET /v1/models``) in a thread of its own;
    the answer comes back on the GUI thread (no Qt call from that thread)."""

    done = Signal(object, str)  # model names (or None), error message

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.thread: threading.Thread | None = None
        self._answers = ThreadEvents(parent=self)
        self._answers.arrived.connect(self._answered)

    @property
    def busy(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def start(self, base_url: str, key: str | None, timeout: float) -> None:
        """One listing at a time (the dialog disables its button meanwhile)."""
        self._answers.start()
        # A daemon: a listing still in flight at exit holds no state worth waiting for beyond
        # ``wait_for_model_listings``' bound.
        self.thread = threading.Thread(target=self._run, args=(base_url, key, timeout), name="list-models",
                                       daemon=True)
        self.thread.start()

    def _run(self, base_url: str, key: str | None, timeout: float) -> None:
        from assistant.generators.openai_backend import list_models
        from assistant.errors import ModelLoadError
        from assistant.secrets import keys

        try:
            names, error = list_models(base_url, key or keys.key_for(base_url), timeout), ""
        except ModelLoadError as exc:
            names, error = None, str(exc)
        self._answers.put((names, error))

    def _answered(self, answer: tuple) -> None:
        self._answers.stop()
        self.done.emit(*answer)

    def abandon(self) -> None:
        """The dialog is closing: its answer is no longer wanted, and nothing waits for it here
        (the GUI thread); a listing in flight is joined at exit by ``wait_for_model_listings``."""
        self._answers.stop()
        if self.thread is not None and self.thread.is_alive():
            _in_flight.append(self.thread)
        self.thread = None


_in_flight: list[threading.Thread] = []  # listings still running after their dialog closed


def wait_for_model_listings(timeout: float) -> None:
    """At exit: join listings still in flight, ``timeout`` seconds for all of them together."""
    deadline = time.monotonic() + timeout
    while _in_flight:
        _in_flight.pop().join(max(0.0, deadline - time.monotonic()))


class SettingsDialog(QDialog):
    def __init__(self, settings: Settings, parent: QWidget | None = None, voices: Sequence[Voice] = ()) -> None:
        super().__init__(parent)
        self.setWindowTitle("Settings")
        self.setMinimumWidth(520)
        self._settings = settings
        form = QFormLayout(self)
        self._form = form

        self.backend = QComboBox()
        for label, value in BACKEND_CHOICES:
            self.backend.addItem(label, value)
        self.backend.setCurrentIndex(max(0, self.backend.findData(settings.backend)))
        self.backend.setToolTip("Run the model in this app, or use a server (vLLM, Ollama, llama.cpp server)")
        form.addRow("Backend", self.backend)

        self.model = QComboBox()
        self.model.setEditable(True)
        for choice in dict.fromkeys([settings.model, DEFAULT_MODEL]):
            self.model.addItem(choice)
        self.model.setCurrentText(settings.model)
        self.model.setToolTip("A Hugging Face hub id (downloaded on first use) or a local model folder")
        browse = QPushButton("Folder…")
        browse.clicked.connect(self._browse)
        row = self._model_row = QHBoxLayout()
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
        self._build_server_rows(form, settings)

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
        self.image_detail = QComboBox()
        for label, value in IMAGE_DETAIL_CHOICES:
            self.image_detail.addItem(label, value)
        self.image_detail.setCurrentIndex(self.image_detail.findData(settings.image_detail))
        self.image_detail.setToolTip(
            "How finely the model reads images. Low: one tile (fast on a CPU). High: the model's full "
            "tiling (sharper for documents, several times the work). Auto: low without a GPU, high with one."
        )
        form.addRow("Image detail", self.image_detail)
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
        self._build_voice_in_rows(form, settings)

        self.problem = QLabel()
        self.problem.setObjectName("dialogError")
        self.problem.hide()
        form.addRow(self.problem)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    # -- voice input -----------------------------------------------------------------------

    def _build_voice_in_rows(self, form: QFormLayout, settings: Settings) -> None:
        from assistant.encoders.asr import DEFAULT_ASR_CPU, DEFAULT_ASR_GPU

        self.asr_model = QComboBox()
        self.asr_model.setEditable(True)
        self.asr_model.setToolTip(
            "A Whisper model: hub id or folder, transformers or CTranslate2 (faster-whisper) format. "
            f"Empty: {DEFAULT_ASR_CPU} on the CPU, {DEFAULT_ASR_GPU} on a GPU."
        )
        for name in ("", DEFAULT_ASR_CPU, "Systran/faster-whisper-small.en", DEFAULT_ASR_GPU,
                     "openai/whisper-small", "openai/whisper-large-v3-turbo"):
            self.asr_model.addItem(name)
        self.asr_model.setCurrentText(settings.asr_model)
        self.asr_model.lineEdit().setPlaceholderText("Automatic for the device")
        form.addRow("Speech model", self.asr_model)
        self.asr_language = QLineEdit(settings.asr_language)
        self.asr_language.setPlaceholderText("detect (multilingual models only)")
        form.addRow("Speech language", self.asr_language)
        self.vad_threshold = QDoubleSpinBox()
        self.vad_threshold.setRange(0.2, 0.95)
        self.vad_threshold.setSingleStep(0.05)
        self.vad_threshold.setValue(settings.vad_threshold)
        self.vad_threshold.setToolTip("How sure the voice detector must be that you speak (higher: ignores more noise)")
        form.addRow("Speech threshold", self.vad_threshold)
        self.vad_min_silence = QDoubleSpinBox()
        self.vad_min_silence.setRange(0.1, 5.0)
        self.vad_min_silence.setSingleStep(0.1)
        self.vad_min_silence.setSuffix(" s")
        self.vad_min_silence.setValue(settings.vad_min_silence)
        self.vad_min_silence.setToolTip("Hands-free: how long a pause ends what you say and sends it")
        form.addRow("Pause that sends", self.vad_min_silence)
        self.half_duplex = QCheckBox("Don't listen while replies are spoken")
        self.half_duplex.setToolTip("Keeps the assistant from hearing its own voice. Turn off with headphones "
                                    "to interrupt it by speaking.")
        self.half_duplex.setChecked(settings.half_duplex)
        form.addRow("Microphone", self.half_duplex)
        self.echo_cancellation = QCheckBox("Echo cancellation: keep listening while replies are spoken")
        self.echo_cancellation.setToolTip("Takes the assistant's own voice out of the microphone (WebRTC AEC3), so "
                                          "you can interrupt it by speaking, even on laptop speakers. Where it is "
                                          "not available, the option above applies.")
        self.echo_cancellation.setChecked(settings.echo_cancellation)
        form.addRow("", self.echo_cancellation)

    # -- the OpenAI-compatible server ----------------------------------------------------

    def _build_server_rows(self, form: QFormLayout, settings: Settings) -> None:
        from assistant.secrets import keys

        self.base_url = QLineEdit(settings.base_url)
        self.base_url.setPlaceholderText("http://localhost:8000/v1")
        self.base_url.setToolTip("The server's OpenAI-compatible API address, ending in /v1")
        form.addRow("Server URL", self.base_url)
        self.remote_model = QComboBox()
        self.remote_model.setEditable(True)
        if settings.remote_model:
            self.remote_model.addItem(settings.remote_model)
        self.remote_model.setCurrentText(settings.remote_model)
        self.remote_model.lineEdit().setPlaceholderText("the server's only model")
        self.fetch_models = QPushButton("Fetch list")
        self.fetch_models.setToolTip("Ask the server which models it serves")
        self.fetch_models.clicked.connect(self._fetch_models)
        self._server_model_row = QWidget()
        row = QHBoxLayout(self._server_model_row)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.remote_model, 1)
        row.addWidget(self.fetch_models)
        form.addRow("Server model", self._server_model_row)
        self.api_key = QLineEdit()
        self.api_key.setEchoMode(QLineEdit.EchoMode.Password)
        self.api_key.setPlaceholderText("leave empty to keep the saved key (or none)")
        form.addRow("API key", self.api_key)
        status = keys.known_status()  # probed in the pipeline thread: a keyring call can block
        if status is None:
            note, usable = "The system keyring is still being checked; a key typed here is stored there if it " \
                           "can be, or kept for this session.", True
        else:
            usable = status.usable
            note = status.detail if usable else f"{status.detail} A key typed here is kept for this session only."
        self.keyring_note = QLabel(note)
        self.keyring_note.setObjectName("dialogNote" if usable else "dialogWarning")
        self.keyring_note.setWordWrap(True)
        form.addRow("", self.keyring_note)
        self.request_timeout = QDoubleSpinBox()
        self.request_timeout.setRange(1, 3600)
        self.request_timeout.setDecimals(0)
        self.request_timeout.setSuffix(" s")
        self.request_timeout.setValue(settings.request_timeout)
        self.request_timeout.setToolTip("Longest wait for the server to connect or send the next part of a reply")
        form.addRow("Timeout", self.request_timeout)
        self.first_token_timeout = self._seconds_box(
            settings.first_token_timeout, "Longest wait for the first word of a reply (a server reading a long prompt "
            "or loading its model); messages that only keep the connection open do not count")
        form.addRow("Wait for the first word", self.first_token_timeout)
        self.stall_timeout = self._seconds_box(
            settings.stall_timeout, "Longest silence in the middle of a reply before it is given up (what arrived is kept)")
        form.addRow("Longest pause in a reply", self.stall_timeout)
        self.image_max_side = QSpinBox()
        self.image_max_side.setRange(64, 8192)
        self.image_max_side.setSingleStep(64)
        self.image_max_side.setSuffix(" px")
        self.image_max_side.setValue(settings.remote_image_max_side)
        self.image_max_side.setToolTip("Images and camera frames are shrunk to this longest side before they are sent")
        form.addRow("Image size sent", self.image_max_side)
        self.models_note = QLabel()
        self.models_note.setWordWrap(True)
        self.models_note.hide()
        form.addRow("", self.models_note)
        self._lister = _ModelLister(self)
        self._lister.done.connect(self._models_fetched)
        self.backend.currentIndexChanged.connect(self._show_backend_rows)
        self._show_backend_rows()

    @staticmethod
    def _seconds_box(value: float, tip: str) -> QDoubleSpinBox:
        box = QDoubleSpinBox()
        box.setRange(1, 3600)
        box.setDecimals(0)
        box.setSuffix(" s")
        box.setValue(value)
        box.setToolTip(tip)
        return box

    def _show_backend_rows(self) -> None:
        remote = self.backend.currentData() == "openai"
        for row in (self._model_row, self.device, self.dtype):
            self._form.setRowVisible(row, not remote)
        for widget in (self.base_url, self._server_model_row, self.api_key, self.keyring_note, self.request_timeout,
                       self.first_token_timeout, self.stall_timeout, self.image_max_side):
            self._form.setRowVisible(widget, remote)
        self._form.setRowVisible(self.models_note, remote and bool(self.models_note.text()))

    def _fetch_models(self) -> None:
        if self._lister.busy:
            return
        url = self.base_url.text().strip()
        self.fetch_models.setEnabled(False)
        self.models_note.setText(f"Asking {url} for its models…")
        self.models_note.setObjectName("dialogNote")
        self._show_backend_rows()
        self._lister.start(url, self.api_key.text().strip() or None, min(self.request_timeout.value(), 10.0))

    def _models_fetched(self, names: list[str] | None, error: str) -> None:
        self.fetch_models.setEnabled(True)
        if names is None:
            self.models_note.setText(error)
        else:
            typed = self.remote_model.currentText()
            self.remote_model.clear()
            self.remote_model.addItems(names)
            self.remote_model.setCurrentText(typed if typed in names or not names else names[0])
            self.models_note.setText(
                f"The server serves {len(names)} model{'s' if len(names) != 1 else ''}." if names
                else "The server serves no models.")
        self._show_backend_rows()

    def api_key_entered(self) -> str | None:
        """The key typed in the dialog, or None when the field was left empty (keep the saved one)."""
        return self.api_key.text().strip() or None

    def done(self, result: int) -> None:  # noqa: D401 - Qt API: every way the dialog closes
        self._lister.abandon()
        super().done(result)

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
            image_detail=self.image_detail.currentData(),
            system_prompt=self.system_prompt.toPlainText(),
            speak_replies=self.speak.isChecked(),
            voice=self.voice.currentData() or "",
            speech_rate=self.speech_rate.value(),
            speech_volume=self.volume.value() / 100,
            backend=self.backend.currentData(),
            base_url=self.base_url.text().strip(),
            remote_model=self.remote_model.currentText().strip(),
            request_timeout=float(self.request_timeout.value()),
            first_token_timeout=float(self.first_token_timeout.value()),
            stall_timeout=float(self.stall_timeout.value()),
            remote_image_max_side=self.image_max_side.value(),
            asr_model=self.asr_model.currentText().strip(),
            asr_language=self.asr_language.text().strip().lower(),
            vad_threshold=round(self.vad_threshold.value(), 2),
            vad_min_silence=round(self.vad_min_silence.value(), 2),
            half_duplex=self.half_duplex.isChecked(),
            echo_cancellation=self.echo_cancellation.isChecked(),
        )

    def accept(self) -> None:
        try:
            self.result_settings()
        except SettingsError as exc:
            self.problem.setText(str(exc))
            self.problem.show()
            return
        super().accept()
