"""The main window: conversation, composer, status line.

Its jobs beyond building itself and showing the conversation are parts of their own
in ``ui/window/``, mixed in: the layout the user arranges (``layout.py``), voice in
(``voice.py``), errors and missing-model downloads (``model_offers.py``), settings and
model choices (``choices.py``), and saved conversations and message versions
(``conversations.py``)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt, QTimer, Slot
from PySide6.QtGui import QAction, QCloseEvent, QDragEnterEvent, QDropEvent, QImage, QKeySequence
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QStyle
from PySide6.QtWidgets import (
    QApplication,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QProgressBar,
    QPushButton,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from assistant.engine import BackendFactory, default_backend_factory, encoder_choice
from assistant.models.hub import human_bytes
from assistant.events import (
    ErrorEvent,
    FramesChosen,
    ImageInput,
    ReplyFinished,
    State,
    StatusEvent,
    UserTurn,
)
from assistant.settings import APP_TITLE, AppPaths, Settings
from assistant.devices.speaker import Speaker
from assistant.speech.voice_out import SpeechEvent

from ui.workers.models import ModelsBridge
from ui.workers.pipeline import SessionBridge
from ui.workers.search import SearchWorker
from ui.panels.camera import CameraPanel, frame_to_qimage
from ui.panels.chat import ChatView
from ui.panels.composer import Attachments, PromptEdit, image_paths, png_bytes, readable_image
from ui.panels.microphone import MicPanel
from ui.dialogs.settings import wait_for_model_listings
from ui.panels.sidebar import Sidebar
from ui.panels.devices import DevicesColumn
from ui.panels.splitter import PanelSplitter
from ui.window.choices import SettingsChoices
from ui.window.conversations import ConversationActions
from ui.window.layout import LayoutControls
from ui.window.model_offers import ModelOffers
from ui.window.voice import VoiceControls

if TYPE_CHECKING:
    from assistant.store.history import HistoryStore

log = logging.getLogger(__name__)

SPACE_RELEASE_MS = 120  # a Space release followed by a press within this is the key's autorepeat
CLOSE_POLL_MS = 100  # closing while a model still loads: how often to look whether it has ended
CHAT_MIN_WIDTH = 360  # no splitter drag or panel makes the conversation narrower than this
STATUS_NOTICE_MS = 8000  # a passing notice on the status line ("Exported to …") goes after this

_MODELS_HINT = "Choose another model or device with Models… (Ctrl+Shift+M)."

_STATE_TEXT = {
    State.UNLOADED: "Not loaded",
    State.LOADING: "Loading model",
    State.READY: "Ready",
    State.TRANSCRIBING: "Transcribing…",
    State.THINKING: "Thinking…",
    State.GENERATING: "Generating…",
    State.ERROR: "Error",
}

def short_model_name(model: str) -> str:
    return Path(model).name or model

class MainWindow(LayoutControls, VoiceControls, ModelOffers, SettingsChoices, ConversationActions, QMainWindow):
    def __init__(
        self,
        settings: Settings,
        paths: AppPaths,
        backend_factory: BackendFactory = default_backend_factory,
        startup_notice: str | None = None,
        persist_settings: bool = True,
        speaker: Speaker | None = None,
        store: HistoryStore | None = None,
    ) -> None:
        super().__init__()
        from ui.collector import install as install_collector

        install_collector()  # Python's garbage collection on this (the GUI) thread only
        self.settings = settings
        self.paths = paths
        self.persist_settings = persist_settings
        self._closing = False
        self.setWindowTitle(APP_TITLE)
        self.resize(980, 720)
        self.setAcceptDrops(True)
        self.bridge = SessionBridge(settings, paths, backend_factory, parent=self, speaker=speaker, store=store)
        self.sidebar: Sidebar | None = Sidebar() if store is not None else None
        # The image search model loads in the search thread, in the background: a reply never
        # waits for it (frame relevance uses it once it is there), and it indexes the history.
        self.bridge.engine.encoder_loads_on_use = False
        session = self.bridge.session
        # It loads in the pipeline thread (between turns): two models loading at once in two
        # threads break each other (transformers changes process-wide state while loading).
        self.search_worker = SearchWorker(self.bridge.engine.encoder, self.bridge.engine.store,
                                          encoder_choice(settings), busy=lambda: session.busy,
                                          load_thread=self.bridge.pipeline_thread, parent=self)
        self.camera_panel = CameraPanel(settings.camera, settings.mirror_camera)
        self.mic_panel = MicPanel(settings.mic, settings.hands_free, settings.wake_word)
        self.mic_panel.follow(
            lambda: self.bridge.listen_state,
            lambda: self.bridge.listener.level if self.bridge.listener is not None else -100.0,
            lambda: self.bridge.listener.wake if self.bridge.listener is not None else None,
        )
        self._space_talking = False
        self._space_release = QTimer(self)
        self._space_release.setSingleShot(True)
        self._space_release.setInterval(SPACE_RELEASE_MS)
        self._space_release.timeout.connect(self._space_released)
        self.models_bridge: ModelsBridge | None = None  # made when the Models page first opens
        self.models_page = None

        self._build_actions()
        self._build_body()
        self.chat.set_show_figures(settings.show_reply_figures)
        self._build_status_line()
        self._build_layout_controls()  # panels to show/hide, and the layout of the last run

        self.bridge.status_changed.connect(self.on_status)
        self.bridge.tokens.connect(self.on_tokens)
        self.bridge.reply_finished.connect(self.on_reply)
        self.bridge.error.connect(self.on_error)
        self.bridge.busy_changed.connect(self.on_busy)
        self.bridge.speech.connect(self.on_speech)
        self.bridge.conversation_opened.connect(self.on_conversation_opened)
        self.bridge.model_kept.connect(self.on_model_kept)
        # Regenerate, edit and ‹ n/m ›.
        self._version_focus: int | None = None  # the message whose other version is being opened
        self.bridge.versions.connect(self.on_versions)
        self.chat.regenerate_requested.connect(self.regenerate)
        self.chat.edit_submitted.connect(self.edit_question)
        self.chat.version_requested.connect(self.show_version)
        self.bridge.frames_chosen.connect(self.on_frames_chosen)
        self.bridge.transcribed.connect(self.on_transcribed)
        self.bridge.utterance_ready.connect(self.on_utterance)
        self.bridge.listen_event.connect(self.on_listen_event)
        self.mic_panel.mic_toggled.connect(self.set_listening)
        self.mic_panel.source_chosen.connect(lambda spec: self.apply_settings(self.settings.replace(mic=spec)))
        self.mic_panel.hands_free_toggled.connect(self.set_hands_free)
        self.mic_panel.wake_word_chosen.connect(
            lambda name: self.apply_settings(self.settings.replace(wake_word=name)))
        self.mic_panel.talk_pressed.connect(self.push_to_talk)
        QApplication.instance().installEventFilter(self)  # hold Space to talk (when not typing)
        self.camera_panel.snapshot_taken.connect(self.attach_qimage)
        self.camera_panel.mirror.toggled.connect(lambda on: self.apply_settings(self.settings.replace(mirror_camera=on)))
        self.camera_panel.state_changed.connect(self._camera_source_used)
        if self.sidebar is not None:
            sidebar = self.sidebar
            self.bridge.conversations.connect(lambda e: sidebar.show_conversations(e.items, e.current_id))
            self.bridge.search_results.connect(lambda e: sidebar.show_search(e.query, e.hits))
            sidebar.open_requested.connect(self.bridge.open_conversation)
            sidebar.rename_requested.connect(lambda i, t: self.bridge.rename_conversation(i, t))
            sidebar.delete_requested.connect(lambda i: self.bridge.delete_conversation(i))
            sidebar.export_requested.connect(self.export_conversation)
            sidebar.search_changed.connect(self.search)
            sidebar.new_chat_requested.connect(self.new_chat)
            sidebar.use_picture_requested.connect(self.use_found_picture)
            sidebar.search_line.retry_requested.connect(self.search_worker.retry)
            sidebar.search.textChanged.connect(lambda _t: self._show_search_line())
            self.search_worker.answered.connect(self.on_search_answer)
            # Something was saved (a question, a reply, an import): index what is new.
            self.bridge.conversations.connect(lambda _e: self.search_worker.reindex())
            self.bridge.list_conversations()
        self.search_worker.state_changed.connect(self.on_search_state)
        self.on_status(self.bridge.status)
        self.on_busy(False)
        if startup_notice:
            self.chat.add_notice(startup_notice, "warning")
        if settings.hands_free:  # the user left hands-free on: listen again
            self.set_listening(True)

    # -- layout ---------------------------------------------------------------------

    def _build_actions(self) -> None:
        bar = QToolBar("Main")
        bar.setObjectName("mainToolbar")
        bar.setMovable(False)
        self.addToolBar(bar)
        self.new_chat_action = QAction("New chat", self)
        self.new_chat_action.setShortcut(QKeySequence.StandardKey.New)
        self.new_chat_action.triggered.connect(self.new_chat)
        self.settings_action = QAction("Settings…", self)
        self.settings_action.setShortcut(QKeySequence("Ctrl+,"))
        self.settings_action.triggered.connect(lambda: self.open_settings())
        self.models_action = QAction("Models…", self)
        self.models_action.setShortcut(QKeySequence("Ctrl+Shift+M"))
        self.models_action.setToolTip("Download, choose, unload and delete models; device, precision, offline")
        self.models_action.triggered.connect(self.open_models)
        self.stop_action = QAction("Stop", self)
        self.stop_action.setShortcut(QKeySequence(Qt.Key.Key_Escape))
        self.stop_action.triggered.connect(self.stop)
        self.attach_action = QAction("Attach image…", self)
        self.attach_action.setShortcut(QKeySequence.StandardKey.Open)
        self.attach_action.triggered.connect(self.choose_images)
        self.quit_action = QAction("Quit", self)
        self.quit_action.setShortcut(QKeySequence.StandardKey.Quit)
        self.quit_action.triggered.connect(self.close)
        self.addAction(self.quit_action)
        self.speak_action = QAction("Speak replies", self)
        self.speak_action.setCheckable(True)
        self.speak_action.setChecked(self.settings.speak_replies and self.bridge.voice is not None)
        self.speak_action.setEnabled(self.bridge.voice is not None)
        self.speak_action.setShortcut(QKeySequence("Ctrl+M"))
        self.speak_action.setToolTip("Read replies aloud (Ctrl+M mutes)")
        self.speak_action.toggled.connect(self.set_speaking)
        self.figures_action = QAction("Reply figures", self)
        self.figures_action.setCheckable(True)
        self.figures_action.setChecked(self.settings.show_reply_figures)
        self.figures_action.setShortcut(QKeySequence("Ctrl+Shift+F"))
        self.figures_action.setToolTip("Show under each reply how long the first word took and the tokens per second")
        self.figures_action.toggled.connect(
            lambda on: self.apply_settings(self.settings.replace(show_reply_figures=on)))
        self.addAction(self.figures_action)
        self.import_action = QAction("Import…", self)
        self.import_action.setToolTip("Import a chat exported as JSON")
        self.import_action.triggered.connect(self.import_conversation)
        self.addAction(self.new_chat_action)  # Ctrl+N; the sidebar has the button when history is on
        if self.sidebar is None:
            bar.addAction(self.new_chat_action)
        bar.addAction(self.settings_action)
        bar.addAction(self.models_action)
        bar.addAction(self.speak_action)
        bar.addAction(self.figures_action)
        bar.addAction(self.import_action)
        self.addAction(self.stop_action)
        self.addAction(self.attach_action)
        from ui.dialogs.shortcuts import show_shortcuts

        self.shortcuts_action = QAction("Keyboard shortcuts", self)
        self.shortcuts_action.setShortcuts([QKeySequence(Qt.Key.Key_F1), QKeySequence("Ctrl+/")])
        self.shortcuts_action.setToolTip("Every keyboard shortcut of the window (F1)")
        self.shortcuts_action.setIconText("Shortcuts")
        self.shortcuts_action.triggered.connect(lambda: show_shortcuts(self))
        self.addAction(self.shortcuts_action)
        bar.addAction(self.shortcuts_action)

    def _build_body(self) -> None:
        central = QWidget()
        central.setObjectName("chatColumn")
        central.setMinimumWidth(CHAT_MIN_WIDTH)  # a splitter drag or a wide device panel never squeezes the chat
        self.chat_column = central
        column = QVBoxLayout(central)
        column.setContentsMargins(8, 4, 8, 8)
        self.chat = ChatView(model_info=lambda: (self.settings.generator_name, self.settings.generator_place))
        column.addWidget(self.chat, 1)
        self.attachments = Attachments()
        column.addWidget(self.attachments)
        row = QHBoxLayout()
        self.attach_button = QPushButton("Attach image…")
        self.attach_button.setObjectName("attachButton")
        self.attach_button.setIcon(QIcon.fromTheme(
            "mail-attachment", self.style().standardIcon(QStyle.StandardPixmap.SP_FileIcon)))
        self.attach_button.setToolTip("Attach images (Ctrl+O); you can also paste or drop them")
        self.attach_button.setAccessibleName("Attach image")
        self.attach_button.clicked.connect(self.choose_images)
        self.prompt = PromptEdit()
        self.prompt.setFixedHeight(84)
        self.prompt.submitted.connect(self.send)
        self.prompt.image_pasted.connect(self.attach_qimage)
        self.prompt.files_pasted.connect(self.attach_files)
        self.send_button = QPushButton("Send")
        self.send_button.setObjectName("sendButton")
        self.send_button.setAccessibleName("Send message")
        self.send_button.setToolTip("Send the message (Enter)")
        self.send_button.setDefault(True)
        self.send_button.clicked.connect(self.send)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setObjectName("stopButton")
        self.stop_button.setToolTip("Stop the answer (Esc)")
        self.stop_button.setAccessibleName("Stop the answer")
        self.stop_button.clicked.connect(self.stop)
        row.addWidget(self.attach_button, 0, Qt.AlignmentFlag.AlignBottom)
        row.addWidget(self.prompt, 1)
        row.addWidget(self.send_button, 0, Qt.AlignmentFlag.AlignBottom)
        row.addWidget(self.stop_button, 0, Qt.AlignmentFlag.AlignBottom)
        column.addLayout(row)
        splitter = PanelSplitter()
        splitter.setObjectName("mainSplitter")
        splitter.main = central  # a narrower window narrows the side panels before the chat
        splitter.setChildrenCollapsible(False)  # a drag never hides a panel; the devices fold with their arrow
        if self.sidebar is not None:
            splitter.addWidget(self.sidebar)
        splitter.addWidget(central)
        self.devices = DevicesColumn([self.camera_panel, self.mic_panel])
        splitter.addWidget(self.devices)
        for index in range(splitter.count()):
            splitter.setStretchFactor(index, 1 if splitter.widget(index) is central else 0)
        splitter.setSizes([200, 700, 280] if self.sidebar is not None else [700, 280])
        self.splitter = splitter
        self.setCentralWidget(splitter)
        # Tab: the sidebar, then the message, Send (or Stop), attach, then the devices column.
        camera, mic = self.camera_panel, self.mic_panel
        chain = [self.prompt, self.send_button, self.stop_button, self.attach_button, self.devices.fold_button,
                 camera.toggle, camera.source, camera.browse, camera.mirror, camera.snapshot, camera.include,
                 mic.toggle, mic.source, mic.talk, mic.hands_free, mic.wake_word]
        if self.sidebar is not None:
            line = self.sidebar.search_line
            chain = [self.sidebar.new_button, self.sidebar.search, line.retry_button, self.sidebar.list, *chain]
        for first, second in zip(chain, chain[1:]):
            QWidget.setTabOrder(first, second)
        self.prompt.setFocus()

    def _build_status_line(self) -> None:
        status = self.statusBar()
        self.state_label = QLabel()
        self.state_label.setObjectName("stateLabel")
        self.state_label.setAccessibleName("Status")
        # A passing notice ("Ready — Exported to …") goes back to the bare state after a while.
        self.status_notice_ms = STATUS_NOTICE_MS
        self._status_plain = ""  # the state line without its notice
        self._notice_timer = QTimer(self)
        self._notice_timer.setSingleShot(True)
        self._notice_timer.timeout.connect(lambda: self.state_label.setText(self._status_plain))
        self.progress = QProgressBar()
        self.progress.setMaximumWidth(180)
        self.progress.setTextVisible(True)
        self.progress.hide()
        # While a model loads (the first run downloads it), the loading can be cancelled here.
        self.cancel_load_button = QPushButton("Cancel")
        self.cancel_load_button.setObjectName("cancelLoadButton")
        self.cancel_load_button.setAccessibleName("Cancel loading")
        self.cancel_load_button.setAccessibleDescription(
            "Stop loading or downloading the model; a partial download continues next time"
        )
        self.cancel_load_button.setToolTip("Stop loading the model (a download continues where it stopped next time)")
        self.cancel_load_button.clicked.connect(self.stop)
        self.cancel_load_button.hide()
        self.model_label = QLabel()
        self.model_label.setObjectName("modelLabel")
        self.model_label.setAccessibleName("Model and device")
        status.addWidget(self.state_label, 1)
        status.addWidget(self.progress)
        status.addWidget(self.cancel_load_button)
        self.speech_label = QLabel()
        self.speech_label.setObjectName("speechLabel")
        status.addPermanentWidget(self.speech_label)
        status.addPermanentWidget(self.model_label)

    # -- engine events ----------------------------------------------------------------

    @Slot(object)
    def on_status(self, event: StatusEvent) -> None:
        text = _STATE_TEXT[event.state]
        if event.state in (State.LOADING, State.ERROR) and event.detail:
            text = f"{text}: {event.detail}"
        elif event.state in (State.READY, State.UNLOADED) and event.detail and event.detail != "Ready":
            text = f"{_STATE_TEXT[event.state]} — {event.detail}"
        self._status_plain = _STATE_TEXT[event.state]
        if text != self._status_plain and event.state is State.READY:
            self._notice_timer.start(self.status_notice_ms)  # a passing notice: it does not linger
        else:
            self._notice_timer.stop()
        self.state_label.setText(text)
        self.state_label.setProperty("state", event.state.name.lower())
        self.state_label.style().unpolish(self.state_label)
        self.state_label.style().polish(self.state_label)
        self.cancel_load_button.setVisible(event.state is State.LOADING)
        if event.state is State.LOADING:
            self.progress.show()
            if event.progress is None:
                self.progress.setRange(0, 0)  # busy indicator
            else:
                self.progress.setRange(0, 1000)
                self.progress.setValue(int(event.progress * 1000))
        else:
            self.progress.hide()
        self.mic_panel.transcribing = event.state is State.TRANSCRIBING
        memory = f" · {human_bytes(event.memory_bytes)}" if event.memory_bytes else ""
        if event.memory_bytes and event.cache_bytes:
            memory += f" + {human_bytes(event.cache_bytes)} cache"
        self.model_label.setText(f"{short_model_name(event.model)} · {event.device}{memory}")
        self.model_label.setToolTip(event.model)

    @Slot(object)
    def on_speech(self, event: SpeechEvent) -> None:
        if event.kind == "speaking":
            self.speech_label.setText("🔊 Speaking — Esc to stop")
        elif event.kind == "idle":
            self.speech_label.setText("")
        elif event.kind in ("error", "disabled"):
            self.speech_label.setText("")
            self.chat.add_notice(event.text, "warning")
            if event.kind == "disabled":  # this session only: the saved choice stays
                self.speak_action.blockSignals(True)
                self.speak_action.setChecked(False)
                self.speak_action.blockSignals(False)

    @Slot(object)
    def on_frames_chosen(self, event: FramesChosen) -> None:
        message = self.chat.message("user", event.turn_id)
        if message is not None and event.chosen:
            message.add_frames(
                [(frame_to_qimage(c.frame), c.frame.t, c.weight) for c in event.chosen], event.candidates
            )

    @Slot(bool)
    def _camera_source_used(self, on: bool) -> None:
        source = self.camera_panel.source.currentText().strip()
        if on and source and source != self.settings.camera:
            self.apply_settings(self.settings.replace(camera=source))

    @Slot(int, str)
    def on_tokens(self, turn_id: int, text: str) -> None:
        message = self.chat.message("assistant", turn_id)
        if message is not None:
            message.append(text)

    @Slot(object)
    def on_reply(self, reply: ReplyFinished) -> None:
        message = self.chat.message("assistant", reply.turn_id)
        if message is None:
            return
        if message.text != reply.text:
            message.set_text(reply.text)
        if reply.stopped:
            message.finish("stopped", "Stopped — the partial reply is kept." if reply.text else "Stopped before it began.")
        else:
            message.finish("done")
        message.set_figures(reply.tokens, reply.seconds, reply.first_token_seconds)

    # First run: what failed to load, said once (see on_error).
    _held_load_error: ErrorEvent | None = None
    _last_load_notice: str | None = None
    _speech_offer = None  # DownloadOffer: the speech model is not downloaded
    _speech_offer_key: tuple | None = None  # (asr_model, device) it was offered for
    _chat_offer = None  # DownloadOffer: the chat model is not downloaded
    _checks: dict | None = None

        # Already listening: the next utterance loads it from the cache.

    @Slot(bool)
    def on_busy(self, busy: bool) -> None:
        self.send_button.setVisible(not busy)
        self.stop_button.setVisible(busy)
        self.stop_button.setEnabled(busy)
        self.chat.set_busy(busy)

    # -- user actions -----------------------------------------------------------------

    @Slot()
    def send(self) -> None:
        if self.bridge.busy:
            return  # one question at a time; Stop ends the current answer
        text = self.prompt.toPlainText()
        if not text.strip() and not self.attachments.items:
            return
        items = self.attachments.take()
        frames = self.camera_panel.frames_for_question()
        turn = UserTurn(text.strip(), tuple(image for image, _ in items), frames=frames)
        self.chat.add_user(turn.id, turn.text, [(image.name, preview) for image, preview in items])
        self.chat.add_assistant(turn.id)
        self.prompt.clear()
        self.bridge.submit(turn)

    @Slot()
    def stop(self) -> None:
        """Stop the answer being written and the voice reading it."""
        self.bridge.stop()

    @Slot(bool)
    def set_speaking(self, on: bool) -> None:
        if on != self.settings.speak_replies:
            self.apply_settings(self.settings.replace(speak_replies=on))

    @Slot()
    def new_chat(self) -> None:
        self.bridge.new_chat()
        self.chat.clear()
        self.setWindowTitle(APP_TITLE)
        if self.sidebar is not None:
            self.sidebar.current_id = None
            self.sidebar.list.clearSelection()
        self.attachments.take()
        self.prompt.clear()
        self.prompt.setFocus()

    @Slot()
    def choose_images(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(
            self, "Attach images", "", "Images (*.png *.jpg *.jpeg *.gif *.bmp *.webp *.tif *.tiff);;All files (*)"
        )
        self.attach_files(files)

    @Slot(list)
    def attach_files(self, files: list[str]) -> None:
        for path in files:
            problem = readable_image(path)
            if problem:
                self.chat.add_notice(problem, "error")
                continue
            preview = QImage(path)
            self.attachments.add(ImageInput.from_path(path), None if preview.isNull() else preview)

    @Slot(QImage)
    def attach_qimage(self, image: QImage) -> None:
        if image.isNull():
            return
        count = sum(1 for item, _ in self.attachments.items if item.path is None) + 1
        self.attachments.add(ImageInput.from_bytes(png_bytes(image), f"pasted image {count}"), image.copy())

    # -- drag and drop, closing ------------------------------------------------------

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802 - Qt API
        mime = event.mimeData()
        if image_paths(mime) or mime.hasImage():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802
        mime = event.mimeData()
        files = image_paths(mime)
        if files:
            self.attach_files(files)
        elif mime.hasImage():
            self.attach_qimage(QImage(mime.imageData()))
        event.acceptProposedAction()

    def apply_settings(self, settings: Settings, reload: bool = False) -> None:
        """Use ``settings`` now (``SettingsChoices.apply_settings``); another image search model
        (or device, or offline mode) is got ready and indexed for in the search thread."""
        super().apply_settings(settings, reload)
        self.search_worker.configure(encoder_choice(self.settings))

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802
        first = not self._closing
        if first:
            self._closing = True
            self._save_layout()  # while the window still shows as the user left it
            app = QApplication.instance()
            if app is not None:
                app.removeEventFilter(self)
            self.camera_panel.shutdown()  # devices first, then downloads, then the pipeline
            self.mic_panel.shutdown()
            wait_for_model_listings(timeout=2.0)
            if self.models_page is not None:
                self.models_page.close()
        # Bounded waits only: a model load or download that cannot stop half-way is not waited
        # for here.  The window goes at once and closes for good when the work has ended.
        wait_ms = 2000 if first else 0
        # The search thread first: it uses the shared encoder, which the engine frees with its models.
        searched = self.search_worker.shutdown(timeout_ms=wait_ms, patience_ms=0)
        ended = self.models_bridge is None or self.models_bridge.shutdown(timeout_ms=wait_ms, patience_ms=0)
        if searched:
            ended = self.bridge.shutdown(timeout_ms=wait_ms if ended else 0, patience_ms=0) and ended
        else:
            ended = False
        if ended:
            event.accept()
            return
        event.ignore()
        self.hide()
        QTimer.singleShot(CLOSE_POLL_MS, self.close)
