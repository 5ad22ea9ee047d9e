"""The settings dialog: one tab for each thing a person sets up (Model, Server, Voice,
Camera, Chat).

Every field says what is wrong with it in words (``settings_fields``): a number out
of range, a folder or recording that does not exist.  While anything is wrong the
problems are listed under the tabs, the tabs holding them are marked, and OK is
disabled; nothing is changed behind the user's back.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from PySide6.QtCore import Qt
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import (
    QAbstractSpinBox,
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSlider,
    QStyle,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from assistant.settings import DEFAULT_MODEL, DEVICES, DTYPES, WAKE_WORDS, Settings, SettingsError, parse_labels
from assistant.speech.tts import Voice
from ui.dialogs.model_lister import ModelLister, _in_flight, wait_for_model_listings
from ui.dialogs.settings_fields import (
    FloatBox,
    IntBox,
    Range,
    camera_problem,
    editor_of,
    folder_problem,
    in_user_words,
    microphone_problem,
    server_address_problem,
)
from ui.theme import THEME_LABELS

__all__ = ["SettingsDialog", "wait_for_model_listings", "_in_flight"]

# The same words on the Models page: where the model runs.
RUNS_ON = "Runs on"
BACKEND_CHOICES = (("This computer", "local"), ("A server (OpenAI-compatible: vLLM, Ollama, llama.cpp)", "openai"))
IMAGE_DETAIL_CHOICES = (("Auto (low without a GPU)", "auto"), ("Low: one tile", "low"), ("High: full tiling", "high"))
AUDIO_FILTER = "Audio (*.wav *.flac *.ogg *.oga *.opus *.mp3 *.aiff *.aif)"
VIDEO_FILTER = "Videos (*.mp4 *.mkv *.avi *.mov *.webm *.m4v);;All files (*)"


def wake_word_label(name: str) -> str:
    """``hey_jarvis`` → "Hey Jarvis"."""
    return name.replace("_", " ").title()


class SettingsDialog(QDialog):
    def __init__(self, settings: Settings, parent: QWidget | None = None, voices: Sequence[Voice] = ()) -> None:
        super().__init__(parent)
        self.setWindowTitle("Settings")
        self.setMinimumSize(560, 480)
        self._settings = settings
        self._checks: list[tuple[QWidget, Callable[[], str | None]]] = []
        self._page_of: dict[QWidget, QWidget] = {}  # field -> its tab's page
        self._found: dict[QWidget, str | None] = {}  # each checked field's problem (None: none)
        self._problems: list[tuple[QWidget, str]] = []  # the problems, in the order of the tabs

        column = QVBoxLayout(self)
        self.tabs = QTabWidget()
        self.tabs.setAccessibleName("Settings pages")
        self.tabs.setDocumentMode(True)
        column.addWidget(self.tabs, 1)

        self.model_tab = self._build_model_tab(settings)
        self.server_tab = self._build_server_tab(settings)
        self.voice_tab = self._build_voice_tab(settings, voices)
        self.camera_tab = self._build_camera_tab(settings)
        self.chat_tab = self._build_chat_tab(settings)

        self.problem = QLabel()
        self.problem.setObjectName("dialogError")
        self.problem.setWordWrap(True)
        self.problem.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.problem.setAccessibleName("Problems")
        self.problem.hide()
        column.addWidget(self.problem)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.ok_button = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        self.ok_button.setAccessibleName("OK")
        self.buttons.button(QDialogButtonBox.StandardButton.Cancel).setAccessibleName("Cancel")
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        column.addWidget(self.buttons)

        self._lister = ModelLister(self)
        self._lister.done.connect(self._models_fetched)
        self.backend.currentIndexChanged.connect(self._show_backend_rows)
        self._show_backend_rows()
        self._name_inner_widgets()
        self.validate()

    # -- building blocks -------------------------------------------------------------------

    def _page(self, title: str) -> tuple[QWidget, QVBoxLayout]:
        """A tab whose content scrolls when the dialog is small: rows never squeeze into each other."""
        page = QWidget()
        layout = QVBoxLayout(page)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setWidget(page)
        scroll.setAccessibleName(f"{title} settings")
        self.tabs.addTab(scroll, title)
        return scroll, layout

    @staticmethod
    def _form(parent_layout: QVBoxLayout, title: str | None = None) -> QFormLayout:
        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
        if title is None:
            parent_layout.addLayout(form)
        else:
            group = QGroupBox(title)
            group.setLayout(form)
            parent_layout.addWidget(group)
        return form

    def _row(self, page: QWidget, form: QFormLayout, label: str, field: QWidget,
             shown: QWidget | None = None, tip: str = "") -> QLabel:
        """A labelled row: the label is the field's buddy and its accessible name."""
        caption = QLabel(label)
        caption.setBuddy(field)
        field.setAccessibleName(label)
        if tip:
            field.setToolTip(tip)
            field.setAccessibleDescription(tip)
        form.addRow(caption, shown or field)
        self._page_of[field] = page
        return caption

    def _check(self, field: QWidget, page: QWidget, check: Callable[[], str | None]) -> None:
        """``check`` says what is wrong with ``field`` (None: nothing); it runs when the field is
        edited (only that field's check: a path check touches the disk)."""
        self._checks.append((field, check))
        self._page_of[field] = page

        def edited(*_args) -> None:
            self.validate(field)

        if isinstance(field, QAbstractSpinBox):
            field.textChanged.connect(edited)  # a new value, typed or set
            editor_of(field).textChanged.connect(edited)  # typing that is no number yet (empty, "-")
        elif isinstance(field, QComboBox):
            field.currentTextChanged.connect(edited)
        elif isinstance(field, QLineEdit):
            field.textChanged.connect(edited)

    def _number_box(self, page: QWidget, form: QFormLayout, label: str, box: IntBox | FloatBox,
                    suffix: str = "", tip: str = "", hint: str = "") -> IntBox | FloatBox:
        if suffix:
            box.setSuffix(suffix)
        box.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Fixed)  # a number, not a text line
        shown = None
        if hint:
            shown = QWidget()
            row = QHBoxLayout(shown)
            row.setContentsMargins(0, 0, 0, 0)
            row.addWidget(box)
            note = QLabel(hint)
            note.setObjectName("dialogNote")
            row.addWidget(note, 1)
        self._row(page, form, label, box, shown, tip)
        self._check(box, page, box.problem)
        return box

    @staticmethod
    def _with_button(field: QWidget, button: QPushButton) -> QWidget:
        row_widget = QWidget()
        row = QHBoxLayout(row_widget)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(field, 1)
        row.addWidget(button)
        return row_widget

    def _name_inner_widgets(self) -> None:
        """The editors inside number boxes and editable lists carry their field's name."""
        for box in self.findChildren(QAbstractSpinBox):
            editor_of(box).setAccessibleName(box.accessibleName())
        for combo in self.findChildren(QComboBox):
            if combo.lineEdit() is not None:
                combo.lineEdit().setAccessibleName(combo.accessibleName())

    # -- Model ---------------------------------------------------------------------------------

    def _build_model_tab(self, settings: Settings) -> QWidget:
        page, layout = self._page("Model")
        form = self._form(layout)
        self._model_form = form
        self.backend = QComboBox()
        for label, value in BACKEND_CHOICES:
            self.backend.addItem(label, value)
        self.backend.setCurrentIndex(max(0, self.backend.findData(settings.backend)))
        self._row(page, form, RUNS_ON, self.backend,
                  tip="Run the model in this app, or use a server (vLLM, Ollama, llama.cpp server)")

        self.model = QComboBox()
        self.model.setEditable(True)
        for choice in dict.fromkeys([settings.model, DEFAULT_MODEL]):
            self.model.addItem(choice)
        self.model.setCurrentText(settings.model)
        self.browse_model = QPushButton("Folder…")
        self.browse_model.setAccessibleName("Choose a model folder")
        self.browse_model.setToolTip("Choose a model folder on this computer")
        self.browse_model.clicked.connect(self._browse)
        self._model_row = self._with_button(self.model, self.browse_model)
        # Choosing among models (sizes, what fits, downloads) is the Models page's: one place.
        self.wants_models_page = False
        self.choose_model = QPushButton("Choose model…")
        self.choose_model.setAccessibleName("Choose model on the Models page")
        self.choose_model.setToolTip("Keep these settings and open the Models page: recommended models for this "
                                     "computer, downloads, what is loaded (Ctrl+Shift+M)")
        self.choose_model.clicked.connect(self._open_models_page)
        self._model_row.layout().addWidget(self.choose_model)
        self._row(page, form, "Model", self.model, self._model_row,
                  tip="A Hugging Face hub id (downloaded on first use) or a local model folder")
        self._check(self.model, page, self._model_problem)

        self.device = QComboBox()
        self.device.addItems(DEVICES)
        self.device.setCurrentText(settings.device)
        self._row(page, form, "Device", self.device, tip="Where the model computes: auto picks a GPU when there is one")
        self.dtype = QComboBox()
        self.dtype.addItems(DTYPES)
        self.dtype.setCurrentText(settings.dtype)
        self._row(page, form, "Precision", self.dtype, tip="Number format of the weights: lower uses less memory")
        self.server_note = QLabel("The model runs on the server set up on the Server tab.")
        self.server_note.setObjectName("dialogNote")
        self.server_note.setWordWrap(True)
        form.addRow(self.server_note)

        self.max_new_tokens = self._number_box(
            page, form, "Longest reply", IntBox(Range("Longest reply", 1, 32768, "tokens"), settings.max_new_tokens),
            " tokens", "The most tokens (word pieces) one reply may have")
        self.temperature = self._number_box(
            page, form, "Temperature", FloatBox(Range("Temperature", 0, 2), settings.temperature, 2, 0.1),
            tip="0 picks the most likely word every time; higher values vary more")
        self.image_detail = QComboBox()
        for label, value in IMAGE_DETAIL_CHOICES:
            self.image_detail.addItem(label, value)
        self.image_detail.setCurrentIndex(max(0, self.image_detail.findData(settings.image_detail)))
        self._row(page, form, "Image detail", self.image_detail, tip=(
            "How finely the model reads images. Low: one tile (fast on a CPU). High: the model's full "
            "tiling (sharper for documents, several times the work). Auto: low without a GPU, high with one."))
        layout.addStretch(1)
        return page

    def _open_models_page(self) -> None:
        """OK, then the window opens the Models page (``wants_models_page``); stays open on a problem."""
        self.wants_models_page = True
        self.accept()
        if self.result() != QDialog.DialogCode.Accepted:
            self.wants_models_page = False

    def _model_problem(self) -> str | None:
        if self.backend.currentData() == "openai":
            return None
        text = self.model.currentText().strip()
        if not text:
            return "Model is empty: type a Hugging Face model id (owner/name) or choose a model folder."
        return folder_problem(text, "Model")

    # -- Server --------------------------------------------------------------------------------

    def _build_server_tab(self, settings: Settings) -> QWidget:
        from assistant.secrets import keys

        page, layout = self._page("Server")
        form = self._server_form = self._form(layout)
        self.base_url = QLineEdit(settings.base_url)
        self.base_url.setPlaceholderText("http://localhost:8000/v1")
        self._row(page, form, "Server address", self.base_url,
                  tip="The server's OpenAI-compatible API address, ending in /v1 (Ollama: http://localhost:11434/v1)")
        self._check(self.base_url, page,
                    lambda: server_address_problem(self.base_url.text()) if self._remote() else None)

        self.remote_model = QComboBox()
        self.remote_model.setEditable(True)
        if settings.remote_model:
            self.remote_model.addItem(settings.remote_model)
        self.remote_model.setCurrentText(settings.remote_model)
        self.remote_model.lineEdit().setPlaceholderText("the server's only model")
        self.fetch_models = QPushButton("Fetch list")
        self.fetch_models.setAccessibleName("Fetch the server's models")
        self.fetch_models.setToolTip("Ask the server which models it serves")
        self.fetch_models.clicked.connect(self._fetch_models)
        self._server_model_row = self._with_button(self.remote_model, self.fetch_models)
        self._row(page, form, "Server model", self.remote_model, self._server_model_row,
                  tip="The name the server knows the model by; empty uses its only model")
        self.models_note = QLabel()
        self.models_note.setWordWrap(True)
        self.models_note.setAccessibleName("Server models")
        form.addRow("", self.models_note)

        self.api_key = QLineEdit()
        self.api_key.setEchoMode(QLineEdit.EchoMode.Password)
        self.api_key.setPlaceholderText("leave empty to keep the saved key (or none)")
        self._row(page, form, "API key", self.api_key, tip="Stored in the system keyring, never in the settings file")
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

        seconds = "seconds"
        self.request_timeout = self._number_box(
            page, form, "Timeout", FloatBox(Range("Timeout", 1, 3600, seconds), settings.request_timeout, 0, 1),
            " s", "Longest wait for the server to connect or send the next part of a reply")
        self.first_token_timeout = self._number_box(
            page, form, "Wait for the first word",
            FloatBox(Range("Wait for the first word", 1, 3600, seconds), settings.first_token_timeout, 0, 1), " s",
            "Longest wait for the first word of a reply (a server reading a long prompt or loading its model); "
            "messages that only keep the connection open do not count")
        self.stall_timeout = self._number_box(
            page, form, "Longest pause in a reply",
            FloatBox(Range("Longest pause in a reply", 1, 3600, seconds), settings.stall_timeout, 0, 1), " s",
            "Longest silence in the middle of a reply before it is given up (what arrived is kept)")
        self.image_max_side = self._number_box(
            page, form, "Image size sent",
            IntBox(Range("Image size sent", 64, 8192, "pixels"), settings.remote_image_max_side), " px",
            "Images and camera frames are shrunk to this longest side before they are sent")
        self.image_max_side.setSingleStep(64)
        layout.addStretch(1)
        return page

    def _remote(self) -> bool:
        return self.backend.currentData() == "openai"

    # -- Voice ---------------------------------------------------------------------------------

    def _build_voice_tab(self, settings: Settings, voices: Sequence[Voice]) -> QWidget:
        from assistant.encoders.asr import DEFAULT_ASR_CPU, DEFAULT_ASR_GPU

        page, layout = self._page("Voice")
        speaking = self._form(layout, "Speaking")
        self.speak = QCheckBox("Read replies aloud")
        self.speak.setAccessibleName("Read replies aloud")
        self.speak.setChecked(settings.speak_replies)
        speaking.addRow(self.speak)
        self.voice = QComboBox()
        self.voice.addItem("System default", "")
        for voice in voices:
            self.voice.addItem(voice.name, voice.id)
        if settings.voice and self.voice.findData(settings.voice) < 0:
            self.voice.addItem(settings.voice, settings.voice)
        self.voice.setCurrentIndex(max(0, self.voice.findData(settings.voice)))
        self._row(page, speaking, "Voice", self.voice)
        self.speech_rate = self._number_box(
            page, speaking, "Speech rate",
            IntBox(Range("Speech rate", 40, 600, "words per minute"), settings.speech_rate), " words/min",
            "How fast replies are read: 175 words per minute is an ordinary pace")
        self.speech_rate.setSingleStep(10)
        self.volume = QSlider(Qt.Orientation.Horizontal)
        self.volume.setRange(0, 100)
        self.volume.setPageStep(10)
        self.volume.setValue(round(settings.speech_volume * 100))
        self.volume_value = QLabel()
        self.volume_value.setMinimumWidth(40)
        self.volume.valueChanged.connect(lambda v: self.volume_value.setText(f"{v} %"))
        self.volume_value.setText(f"{self.volume.value()} %")
        volume_row = QWidget()
        row = QHBoxLayout(volume_row)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.volume, 1)
        row.addWidget(self.volume_value)
        self._row(page, speaking, "Volume", self.volume, volume_row)

        listening = self._form(layout, "Listening")
        self.mic = QLineEdit(settings.mic)
        self.mic.setPlaceholderText("System default input")
        self.browse_mic = QPushButton("Recording…")
        self.browse_mic.setAccessibleName("Choose a recording to use as the microphone")
        self.browse_mic.setToolTip("Use a recording (WAV, FLAC, …) as the microphone: replays, demos")
        self.browse_mic.clicked.connect(self._browse_mic)
        self._row(page, listening, "Microphone", self.mic, self._with_button(self.mic, self.browse_mic),
                  tip="Empty: the system's default input. Or a device number or name, or an audio file to play "
                      "as the microphone.")
        self._check(self.mic, page, lambda: microphone_problem(self.mic.text()))
        self.hands_free = QCheckBox("Hands-free: listen all the time")
        self.hands_free.setAccessibleName("Hands-free: listen all the time")
        self.hands_free.setToolTip("Each pause in what you say sends it; no button to hold")
        self.hands_free.setChecked(settings.hands_free)
        listening.addRow(self.hands_free)
        self.wake_word = QComboBox()
        self.wake_word.addItem("Off", "")
        for name in WAKE_WORDS:
            self.wake_word.addItem(wake_word_label(name), name)
        self.wake_word.setCurrentIndex(max(0, self.wake_word.findData(settings.wake_word)))
        self._row(page, listening, "Wake word", self.wake_word,
                  tip="Hands-free: answer only what follows this word. Off: answer everything you say.")
        self.wake_follow_up = self._number_box(
            page, listening, "Follow-up time",
            FloatBox(Range("Follow-up time", 0, 60, "seconds"), settings.wake_follow_up, 0, 1), " s",
            "After a reply, how long you can go on talking without the wake word",
            hint="0 = always need the wake word")
        self.wake_word.currentIndexChanged.connect(
            lambda: self.wake_follow_up.setEnabled(bool(self.wake_word.currentData())))
        self.wake_follow_up.setEnabled(bool(settings.wake_word))

        self.asr_model = QComboBox()
        self.asr_model.setEditable(True)
        for name in ("", DEFAULT_ASR_CPU, "Systran/faster-whisper-small.en", DEFAULT_ASR_GPU,
                     "openai/whisper-small", "openai/whisper-large-v3-turbo"):
            self.asr_model.addItem(name)
        self.asr_model.setCurrentText(settings.asr_model)
        self.asr_model.lineEdit().setPlaceholderText("Automatic for the device")
        self._row(page, listening, "Speech model", self.asr_model, tip=(
            "A Whisper model: hub id or folder, transformers or CTranslate2 (faster-whisper) format. "
            f"Empty: {DEFAULT_ASR_CPU} on the CPU, {DEFAULT_ASR_GPU} on a GPU."))
        self._check(self.asr_model, page, lambda: folder_problem(self.asr_model.currentText(), "Speech model"))
        self.asr_language = QLineEdit(settings.asr_language)
        self.asr_language.setPlaceholderText("detect (multilingual models only)")
        self._row(page, listening, "Speech language", self.asr_language,
                  tip="A language code such as en or de; empty detects it")
        self.vad_threshold = self._number_box(
            page, listening, "Speech threshold",
            FloatBox(Range("Speech threshold", 0.2, 0.95), settings.vad_threshold, 2, 0.05),
            tip="How sure the voice detector must be that you speak (higher: ignores more noise)")
        self.vad_min_silence = self._number_box(
            page, listening, "Pause that sends",
            FloatBox(Range("Pause that sends", 0.1, 5, "seconds"), settings.vad_min_silence, 2, 0.1), " s",
            "Hands-free: how long a pause ends what you say and sends it")
        self.max_utterance = self._number_box(
            page, listening, "Longest utterance",
            FloatBox(Range("Longest utterance", 2, 120, "seconds"), settings.max_utterance, 0, 5), " s",
            "Longer speech is split into parts of this length, not lost")
        self.half_duplex = QCheckBox("Don't listen while replies are spoken")
        self.half_duplex.setAccessibleName("Don't listen while replies are spoken")
        self.half_duplex.setToolTip("Keeps the assistant from hearing its own voice. Turn off with headphones "
                                    "to interrupt it by speaking.")
        self.half_duplex.setChecked(settings.half_duplex)
        listening.addRow(self.half_duplex)
        self.echo_cancellation = QCheckBox("Echo cancellation: keep listening while replies are spoken")
        self.echo_cancellation.setAccessibleName("Echo cancellation: keep listening while replies are spoken")
        self.echo_cancellation.setToolTip("Takes the assistant's own voice out of the microphone (WebRTC AEC3), so "
                                          "you can interrupt it by speaking, even on laptop speakers. Where it is "
                                          "not available, the option above applies.")
        self.echo_cancellation.setChecked(settings.echo_cancellation)
        listening.addRow(self.echo_cancellation)
        layout.addStretch(1)
        return page

    # -- Camera --------------------------------------------------------------------------------

    def _build_camera_tab(self, settings: Settings) -> QWidget:
        page, layout = self._page("Camera")
        form = self._form(layout)
        self.camera = QLineEdit(settings.camera)
        self.camera.setPlaceholderText("0")
        self.browse_camera = QPushButton("Video file…")
        self.browse_camera.setAccessibleName("Choose a video file to use as the camera")
        self.browse_camera.setToolTip("Use a video file as the camera")
        self.browse_camera.clicked.connect(self._browse_camera)
        self._row(page, form, "Camera", self.camera, self._with_button(self.camera, self.browse_camera),
                  tip="A camera number (0 is the first), a video file, or a stream address (rtsp://, http://)")
        self._check(self.camera, page, lambda: camera_problem(self.camera.text()))
        self.mirror_camera = QCheckBox("Mirror the preview")
        self.mirror_camera.setAccessibleName("Mirror the preview")
        self.mirror_camera.setToolTip("Show the camera like a mirror (the model sees the frames as they are)")
        self.mirror_camera.setChecked(settings.mirror_camera)
        form.addRow(self.mirror_camera)
        self.camera_frames = self._number_box(
            page, form, "Frames sent with a question",
            IntBox(Range("Frames sent with a question", 1, 8, "frames"), settings.camera_frames),
            tip="How many of the recent camera frames go with a question (the clearest and most relevant)")
        self.attention_temperature = self._number_box(
            page, form, "Frame choice spread",
            FloatBox(Range("Frame choice spread", 0, 10, low_open=True), settings.attention_temperature, 2, 0.1),
            tip="Low: the frames' weights favour the single best frame; high: they are spread more evenly")
        self.search_model = QLineEdit(settings.search_model)
        self.search_model.setPlaceholderText("off")
        self._row(page, form, "Image search model", self.search_model,
                  tip="A CLIP or SigLIP model (hub id or folder): it finds saved pictures and messages by what "
                      "they show and mean, names what is in view, and picks the camera frames that match the "
                      "question. Empty: off")
        self._check(self.search_model, page,
                    lambda: folder_problem(self.search_model.text(), "Image search model"))
        # What's in view (the camera panel's box): named from this list.
        self.view_label_list = QPlainTextEdit(settings.view_label_list)
        self.view_label_list.setTabChangesFocus(True)
        self.view_label_list.setFixedHeight(72)
        self.view_label_list.setPlaceholderText("mug, keyboard, plant, …")
        caption = self._row(page, form, "Things to look for", self.view_label_list,
                            tip="What \"What's in view\" on the camera panel can name: things separated by commas")
        caption.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        self._check(self.view_label_list, page, self._view_labels_problem)
        self.view_label_list.textChanged.connect(lambda: self.validate(self.view_label_list))
        self.labels_with_question = QCheckBox("Say what is in view with each question")
        self.labels_with_question.setAccessibleName("Say what is in view with each question")
        self.labels_with_question.setToolTip("A question with camera frames tells the model what its main frame "
                                             "shows, named from the list above, for example \"mug 0.62, "
                                             "keyboard 0.21\" (needs the image search model)")
        self.labels_with_question.setChecked(settings.labels_with_question)
        form.addRow(self.labels_with_question)
        self._page_of[self.labels_with_question] = page
        layout.addStretch(1)
        return page

    def _view_labels_problem(self) -> str | None:
        if parse_labels(self.view_label_list.toPlainText()):
            return None
        return "Things to look for is empty: name at least one thing, for example: mug, keyboard, plant."

    # -- Chat ----------------------------------------------------------------------------------

    def _build_chat_tab(self, settings: Settings) -> QWidget:
        page, layout = self._page("Chat")
        form = self._form(layout)
        self.system_prompt = QPlainTextEdit(settings.system_prompt)
        self.system_prompt.setMinimumHeight(100)
        self.system_prompt.setTabChangesFocus(True)
        caption = self._row(page, form, "System prompt", self.system_prompt,
                            tip="What the assistant is told before every conversation")
        caption.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        self.theme = QComboBox()
        for label, value in THEME_LABELS:
            self.theme.addItem(label, value)
        self.theme.setCurrentIndex(max(0, self.theme.findData(settings.theme)))
        self._row(page, form, "Appearance", self.theme,
                  tip="Light or dark window; \"Follow the system\" switches with your desktop")
        layout.addStretch(1)
        return page

    # -- showing the right rows ------------------------------------------------------------

    def _show_backend_rows(self) -> None:
        remote = self._remote()
        for row in (self._model_row, self.device, self.dtype):
            self._model_form.setRowVisible(row, not remote)
        self._model_form.setRowVisible(self.server_note, remote)
        # The Server tab is for a server backend (and while it holds a problem: see _show_problems).
        self.tabs.setTabVisible(self.tabs.indexOf(self.server_tab), remote)
        self._show_models_note()
        self.validate()

    def show_page(self, name: str) -> None:
        """Open the tab called ``name`` ("Model", "Server", "Voice", "Camera", "Chat")."""
        for i in range(self.tabs.count()):
            if self.tabs.tabText(i) == name and self.tabs.isTabVisible(i):
                self.tabs.setCurrentIndex(i)
                return

    # -- checking ------------------------------------------------------------------------------

    def validate(self, field: QWidget | None = None) -> list[str]:
        """Check ``field`` (default: every field); show what is wrong and where, and allow OK only
        when nothing is.  Returns the problems, in the words shown."""
        if not hasattr(self, "ok_button"):  # still being built
            return []
        for checked, check in self._checks:
            if field is None or checked is field:
                message = check()
                self._found[checked] = message
                checked.setAccessibleDescription(message or checked.toolTip())
        self._problems = [(checked, self._found[checked]) for checked, _ in self._checks if self._found.get(checked)]
        self._show_problems([f"{message} ({self._tab_title(checked)} tab)" for checked, message in self._problems])
        return self.problems()

    def problems(self) -> list[str]:
        """What is wrong now, in the words the dialog shows."""
        return [message for _, message in self._problems]

    def _tab_title(self, field: QWidget) -> str:
        return self.tabs.tabText(self.tabs.indexOf(self._page_of[field]))

    def _show_problems(self, lines: list[str]) -> None:
        self.problem.setText("\n".join(lines))
        self.problem.setVisible(bool(lines))
        self.ok_button.setEnabled(not lines)
        self.ok_button.setToolTip("Fix the problems listed above first" if lines else "")
        marked = {self.tabs.indexOf(self._page_of[field]) for field, _ in self._problems}
        if self.tabs.indexOf(self.server_tab) in marked:  # something to fix there stays in reach
            self.tabs.setTabVisible(self.tabs.indexOf(self.server_tab), True)
        warning = self.style().standardIcon(QStyle.StandardPixmap.SP_MessageBoxWarning)
        for i in range(self.tabs.count()):
            self.tabs.setTabIcon(i, warning if i in marked else QIcon())
            self.tabs.setTabToolTip(i, "Something on this tab needs fixing" if i in marked else "")

    # -- the server's models -----------------------------------------------------------------

    def _fetch_models(self) -> None:
        if self._lister.busy:
            return
        url = self.base_url.text().strip()
        problem = server_address_problem(url)
        if problem:
            self.models_note.setText(problem)
            self._show_models_note()
            return
        self.fetch_models.setEnabled(False)
        self.models_note.setText(f"Asking {url} for its models…")
        self.models_note.setObjectName("dialogNote")
        self._show_models_note()
        timeout = self.request_timeout.value() if self.request_timeout.problem() is None else 10.0
        self._lister.start(url, self.api_key.text().strip() or None, min(timeout, 10.0))

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
        self._show_models_note()

    def _show_models_note(self) -> None:
        self._server_form.setRowVisible(self.models_note, bool(self.models_note.text()))

    def api_key_entered(self) -> str | None:
        """The key typed in the dialog, or None when the field was left empty (keep the saved one)."""
        return self.api_key.text().strip() or None

    # -- files ---------------------------------------------------------------------------------

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Choose a model folder")
        if folder:
            self.model.setCurrentText(folder)

    def _browse_mic(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Use a recording as the microphone", "", AUDIO_FILTER)
        if path:
            self.mic.setText(path)

    def _browse_camera(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Use a video file as the camera", "", VIDEO_FILTER)
        if path:
            self.camera.setText(path)

    # -- result --------------------------------------------------------------------------------

    def done(self, result: int) -> None:  # noqa: D401 - Qt API: every way the dialog closes
        self._lister.abandon()
        super().done(result)

    def result_settings(self) -> Settings:
        """The settings as the dialog shows them; raises ``SettingsError`` when one is unusable."""
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
            camera=self.camera.text().strip(),
            camera_frames=self.camera_frames.value(),
            attention_temperature=round(self.attention_temperature.value(), 2),
            search_model=self.search_model.text().strip(),
            view_label_list=", ".join(parse_labels(self.view_label_list.toPlainText())),
            labels_with_question=self.labels_with_question.isChecked(),
            mirror_camera=self.mirror_camera.isChecked(),
            mic=self.mic.text().strip(),
            backend=self.backend.currentData(),
            base_url=self.base_url.text().strip(),
            remote_model=self.remote_model.currentText().strip(),
            request_timeout=float(self.request_timeout.value()),
            first_token_timeout=float(self.first_token_timeout.value()),
            stall_timeout=float(self.stall_timeout.value()),
            remote_image_max_side=self.image_max_side.value(),
            asr_model=self.asr_model.currentText().strip(),
            asr_language=self.asr_language.text().strip().lower(),
            hands_free=self.hands_free.isChecked(),
            wake_word=self.wake_word.currentData() or "",
            wake_follow_up=float(self.wake_follow_up.value()),
            vad_threshold=round(self.vad_threshold.value(), 2),
            vad_min_silence=round(self.vad_min_silence.value(), 2),
            max_utterance=float(self.max_utterance.value()),
            half_duplex=self.half_duplex.isChecked(),
            echo_cancellation=self.echo_cancellation.isChecked(),
            theme=self.theme.currentData(),
        )

    def accept(self) -> None:
        if self.validate():
            first = self._problems[0][0]
            self.tabs.setCurrentWidget(self._page_of[first])
            first.setFocus()
            return
        try:
            self.result_settings()
        except SettingsError as exc:
            self._show_problems([in_user_words(str(exc))])
            return
        super().accept()
