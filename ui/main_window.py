"""The main window: conversation, composer, status line."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QEvent, QObject, Qt, QTimer, Slot
from PySide6.QtGui import QAction, QCloseEvent, QDragEnterEvent, QDropEvent, QImage, QKeySequence
from PySide6.QtWidgets import (
    QAbstractSpinBox,
    QApplication,
    QComboBox,
    QLineEdit,
    QPlainTextEdit,
    QTextEdit,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QProgressBar,
    QPushButton,
    QSplitter,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from assistant.engine import BackendFactory, default_backend_factory
from assistant.models.hub import human_bytes
from assistant.events import (
    ConversationOpened,
    ErrorEvent,
    ErrorKind,
    FramesChosen,
    ImageInput,
    ReplyFinished,
    State,
    StatusEvent,
    Transcribed,
    UserTurn,
)
from assistant.settings import APP_TITLE, AppPaths, Settings, load_settings, save_settings
from assistant.devices.speaker import Speaker
from assistant.encoders.vad import Utterance
from assistant.encoders.listener import ListenEvent
from assistant.speech.voice_out import SpeechEvent

from ui.workers.models import ModelsBridge
from ui.workers.pipeline import SessionBridge
from ui.panels.camera import CameraPanel, frame_to_qimage
from ui.panels.chat import ChatView
from ui.panels.composer import Attachments, PromptEdit, image_paths, png_bytes, readable_image
from ui.panels.microphone import MicPanel
from ui.dialogs.settings import SettingsDialog, wait_for_model_listings
from ui.panels.sidebar import Sidebar

if TYPE_CHECKING:
    from assistant.store.history import HistoryStore

log = logging.getLogger(__name__)

CLOSE_POLL_MS = 100  # closing while a model still loads: how often to look whether it has ended

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


class MainWindow(QMainWindow):
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
        self.camera_panel = CameraPanel(settings.camera, settings.mirror_camera)
        self.mic_panel = MicPanel(settings.mic, settings.hands_free)
        self.mic_panel.follow(
            lambda: self.bridge.listen_state,
            lambda: self.bridge.listener.level if self.bridge.listener is not None else -100.0,
        )
        self._space_talking = False
        self.models_bridge: ModelsBridge | None = None  # made when the Models page first opens
        self.models_page = None

        self._build_actions()
        self._build_body()
        self._build_status_line()

        self.bridge.status_changed.connect(self.on_status)
        self.bridge.tokens.connect(self.on_tokens)
        self.bridge.reply_finished.connect(self.on_reply)
        self.bridge.error.connect(self.on_error)
        self.bridge.busy_changed.connect(self.on_busy)
        self.bridge.speech.connect(self.on_speech)
        self.bridge.conversation_opened.connect(self.on_conversation_opened)
        self.bridge.frames_chosen.connect(self.on_frames_chosen)
        self.bridge.transcribed.connect(self.on_transcribed)
        self.bridge.utterance_ready.connect(self.on_utterance)
        self.bridge.listen_event.connect(self.on_listen_event)
        self.mic_panel.mic_toggled.connect(self.set_listening)
        self.mic_panel.source_chosen.connect(lambda spec: self.apply_settings(self.settings.replace(mic=spec)))
        self.mic_panel.hands_free_toggled.connect(self.set_hands_free)
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
            self.bridge.list_conversations()
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
        self.settings_action.triggered.connect(self.open_settings)
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
        self.import_action = QAction("Import…", self)
        self.import_action.setToolTip("Import a chat exported as JSON")
        self.import_action.triggered.connect(self.import_conversation)
        self.addAction(self.new_chat_action)  # Ctrl+N; the sidebar has the button when history is on
        if self.sidebar is None:
            bar.addAction(self.new_chat_action)
        bar.addAction(self.settings_action)
        bar.addAction(self.models_action)
        bar.addAction(self.speak_action)
        bar.addAction(self.import_action)
        self.addAction(self.stop_action)
        self.addAction(self.attach_action)

    def _build_body(self) -> None:
        central = QWidget()
        column = QVBoxLayout(central)
        column.setContentsMargins(8, 4, 8, 8)
        self.chat = ChatView()
        column.addWidget(self.chat, 1)
        self.attachments = Attachments()
        column.addWidget(self.attachments)
        row = QHBoxLayout()
        self.attach_button = QPushButton("Image…")
        self.attach_button.setObjectName("attachButton")
        self.attach_button.setToolTip("Attach images (Ctrl+O); you can also paste or drop them")
        self.attach_button.clicked.connect(self.choose_images)
        self.prompt = PromptEdit()
        self.prompt.setFixedHeight(84)
        self.prompt.submitted.connect(self.send)
        self.prompt.image_pasted.connect(self.attach_qimage)
        self.prompt.files_pasted.connect(self.attach_files)
        self.send_button = QPushButton("Send")
        self.send_button.setObjectName("sendButton")
        self.send_button.setDefault(True)
        self.send_button.clicked.connect(self.send)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setObjectName("stopButton")
        self.stop_button.setToolTip("Stop the answer (Esc)")
        self.stop_button.clicked.connect(self.stop)
        row.addWidget(self.attach_button, 0, Qt.AlignmentFlag.AlignBottom)
        row.addWidget(self.prompt, 1)
        row.addWidget(self.send_button, 0, Qt.AlignmentFlag.AlignBottom)
        row.addWidget(self.stop_button, 0, Qt.AlignmentFlag.AlignBottom)
        column.addLayout(row)
        splitter = QSplitter()
        if self.sidebar is not None:
            splitter.addWidget(self.sidebar)
        splitter.addWidget(central)
        devices = QWidget()
        devices.setObjectName("devicesColumn")
        device_column = QVBoxLayout(devices)
        device_column.setContentsMargins(0, 0, 0, 0)
        device_column.addWidget(self.camera_panel, 1)
        device_column.addWidget(self.mic_panel)
        splitter.addWidget(devices)
        splitter.setStretchFactor(splitter.indexOf(central), 1)
        splitter.setSizes([240, 700, 320] if self.sidebar is not None else [700, 320])
        self.setCentralWidget(splitter)
        self.prompt.setFocus()

    def _build_status_line(self) -> None:
        status = self.statusBar()
        self.state_label = QLabel()
        self.state_label.setObjectName("stateLabel")
        self.progress = QProgressBar()
        self.progress.setMaximumWidth(180)
        self.progress.setTextVisible(True)
        self.progress.hide()
        self.model_label = QLabel()
        self.model_label.setObjectName("modelLabel")
        status.addWidget(self.state_label, 1)
        status.addWidget(self.progress)
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
        elif event.state is State.READY and event.detail and event.detail != "Ready":
            text = f"Ready — {event.detail}"
        self.state_label.setText(text)
        self.state_label.setProperty("state", event.state.name.lower())
        self.state_label.style().unpolish(self.state_label)
        self.state_label.style().polish(self.state_label)
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

    # -- voice in -------------------------------------------------------------------------

    @Slot(bool)
    def set_listening(self, on: bool) -> None:
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
        pressed = kind == QEvent.Type.KeyPress
        if pressed != self._space_talking:
            self._space_talking = pressed
            self.push_to_talk(pressed)
        return True

    @Slot(object)
    def on_conversation_opened(self, event: ConversationOpened) -> None:
        """Show a saved conversation; the engine already gave the model its history."""
        self.chat.clear()
        for message in event.messages:
            turn_id = -message.id  # restored messages never collide with live turns
            if message.role == "user":
                frames = message.meta.get("frames", [])  # camera frames are the last images
                split = len(message.images) - len(frames)
                images = [(image.path.name, QImage(str(image.path))) for image in message.images[:split]]
                widget = self.chat.add_user(turn_id, message.text, images)
                if frames:
                    widget.add_frames([
                        (QImage(str(image.path)), f"t={f['t']:.1f}s · {f['weight']:.0%}")
                        for image, f in zip(message.images[split:], frames)
                    ])
            elif message.role == "assistant":
                widget = self.chat.add_assistant(turn_id)
                widget.set_text(message.text)
                if message.status == "stopped" and message.meta.get("interrupted"):
                    widget.finish("stopped", "Interrupted — the app closed while this was being written; "
                                             "the part written is kept.")
                elif message.status == "stopped":
                    widget.finish("stopped", "Stopped — the partial reply is kept.")
                elif message.status == "failed":
                    widget.finish("failed", message.meta.get("error", "This reply failed."))
                else:
                    widget.finish("done")
        self.setWindowTitle(f"{event.title} — {APP_TITLE}" if event.title else APP_TITLE)
        self.prompt.setFocus()

    @Slot(object)
    def on_frames_chosen(self, event: FramesChosen) -> None:
        message = self.chat.message("user", event.turn_id)
        if message is not None and event.chosen:
            message.add_frames([
                (frame_to_qimage(c.frame), f"t={c.frame.t:.1f}s · {c.weight:.0%}") for c in event.chosen
            ])

    @Slot(bool)
    def _camera_source_used(self, on: bool) -> None:
        source = self.camera_panel.source.currentText().strip()
        if on and source and source != self.settings.camera:
            self.apply_settings(self.settings.replace(camera=source))

    @Slot(str)
    def search(self, query: str) -> None:
        if query:
            self.bridge.search(query)
        else:
            self.bridge.list_conversations()

    @Slot(int, str)
    def export_conversation(self, conversation_id: int, fmt: str) -> None:
        if fmt == "md":
            folder = QFileDialog.getExistingDirectory(self, "Export chat as Markdown into folder")
            if folder:
                self.bridge.export_conversation(conversation_id, "md", Path(folder))
        else:
            path, _ = QFileDialog.getSaveFileName(self, "Export chat as JSON", "chat.json", "JSON (*.json)")
            if path:
                self.bridge.export_conversation(conversation_id, "json", Path(path))

    @Slot()
    def import_conversation(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Import a chat", "", "JSON (*.json)")
        if path:
            self.bridge.import_conversation(Path(path))

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

    @Slot(object)
    def on_error(self, error: ErrorEvent) -> None:
        message = self.chat.message("assistant", error.turn_id) if error.turn_id is not None else None
        if message is None:
            hint = (
                " Choose another model or device with Models… (Ctrl+Shift+M)."
                if error.kind is ErrorKind.MODEL_LOAD
                else ""
            )
            self.chat.add_notice(error.message + hint, "warning" if error.kind is ErrorKind.SETTINGS else "error")
            return
        if error.partial_text and message.text != error.partial_text:
            message.set_text(error.partial_text)
        message.finish("failed", error.message)

    @Slot(bool)
    def on_busy(self, busy: bool) -> None:
        self.send_button.setVisible(not busy)
        self.stop_button.setVisible(busy)
        self.stop_button.setEnabled(busy)

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

    @Slot()
    def open_settings(self) -> None:
        voices = self.bridge.voice.voices if self.bridge.voice is not None else []
        dialog = SettingsDialog(self.settings, self, voices=voices)
        if dialog.exec() != SettingsDialog.DialogCode.Accepted:
            return
        settings, key = dialog.result_settings(), dialog.api_key_entered()
        if key is not None:  # to the keyring (never the settings file), before the reload
            self.bridge.save_api_key(settings.base_url, key)
        self.apply_settings(settings, reload=key is not None and settings.backend == "openai")

    @Slot()
    def open_models(self) -> None:
        """The Models page (one, non-modal: a download goes on while the user chats)."""
        from ui.dialogs.models import ModelsPage

        if self.models_page is None:
            self.models_bridge = ModelsBridge(self.paths, parent=self)
            self.models_page = ModelsPage(self.settings, self.bridge, self.models_bridge, self)
            self.models_page.settings_chosen.connect(self.apply_settings)
            self.models_page.server_settings_requested.connect(self.open_settings)
        else:
            self.models_page.set_settings(self.settings)
            self.models_bridge.refresh()
        self.models_page.show()
        self.models_page.raise_()
        self.models_page.activateWindow()

    def apply_settings(self, settings: Settings, reload: bool = False) -> None:
        """Use ``settings`` now, and save what the user changed.

        Only the changed fields are written over the saved file, so a command-line
        override of this session (``--model`` …) is never saved by accident.
        """
        changed = {
            f.name: getattr(settings, f.name)
            for f in dataclasses.fields(Settings)
            if f.name != "extra" and getattr(settings, f.name) != getattr(self.settings, f.name)
        }
        model_choices_changed = (settings.generator_key(), settings.offline) != (
            self.settings.generator_key(),
            self.settings.offline,
        )
        self.settings = settings
        self.speak_action.setChecked(settings.speak_replies and self.bridge.voice is not None)
        if self.persist_settings and changed:
            try:
                save_settings(self.paths, load_settings(self.paths).settings.replace(**changed))
            except OSError as exc:
                self.chat.add_notice(f"Settings could not be saved: {exc.strerror or exc}", "error")
        self.bridge.apply_settings(settings, reload)
        if self.models_page is not None and model_choices_changed:
            self.models_page.set_settings(settings)

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

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802
        first = not self._closing
        if first:
            self._closing = True
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
        ended = self.models_bridge is None or self.models_bridge.shutdown(timeout_ms=wait_ms, patience_ms=0)
        ended = self.bridge.shutdown(timeout_ms=wait_ms if ended else 0, patience_ms=0) and ended
        if ended:
            event.accept()
            return
        event.ignore()
        self.hide()
        QTimer.singleShot(CLOSE_POLL_MS, self.close)
