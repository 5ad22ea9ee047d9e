"""The Models page: which model runs where and how, downloads, and the model cache.

A non-modal dialog: a download goes on while the user chats (or closes the page).
All file and network work runs in ``ModelsBridge``'s thread; unloading runs in the
pipeline thread.  Choices are handed to the window (``settings_chosen``), which
applies them and saves only what changed.
"""

from __future__ import annotations

import time

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDialog,
    QFileDialog,
    QFrame,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from assistant.progress import Progress
from assistant.models.hub import (
    human_bytes,
    looks_like_path,
    offline_from_environment,
)
from assistant.events import State, StatusEvent
from assistant.models.cache import CachedModel, CacheListing
from assistant.models.recommended import RECOMMENDED, Machine, Verdict, fit, gb
from assistant.settings import (
    DEFAULT_MODEL,
    DEVICES,
    DTYPES,
    QUANTIZATIONS,
    Settings,
    SettingsError,
)

from ui.dialogs.settings import BACKEND_CHOICES, RUNS_ON
from ui.panels.download_offer import progress_text
from ui.workers.models import ModelsBridge
from ui.workers.pipeline import SessionBridge

_QUANT_TEXT = {"none": "none (full weights)", "8bit": "8-bit (bitsandbytes, CUDA)", "4bit": "4-bit NF4 (bitsandbytes, CUDA)"}


class ModelsPage(QDialog):
    settings_chosen = Signal(object)  # Settings: the window applies and saves them
    server_settings_requested = Signal()  # the window opens Settings… (server address, model, key)

    def __init__(
        self,
        settings: Settings,
        bridge: SessionBridge,
        models: ModelsBridge,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Models")
        self.setMinimumWidth(640)
        self.bridge = bridge
        self.models = models
        self._settings = settings
        self.listing: CacheListing | None = None
        self.capabilities: dict | None = None
        outer = QVBoxLayout(self)
        # Everything but Close scrolls: on a small screen no group is squeezed.
        scroll = QScrollArea()
        scroll.setObjectName("modelsScroll")
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        content = QWidget()
        column = QVBoxLayout(content)
        column.setContentsMargins(0, 0, 0, 0)
        column.addWidget(self._build_recommended())
        column.addWidget(self._build_choice())
        column.addWidget(self._build_loaded())
        column.addWidget(self._build_download())
        column.addWidget(self._build_cache(), 1)
        self.problem = QLabel()
        self.problem.setObjectName("dialogError")
        self.problem.setWordWrap(True)
        self.problem.hide()
        column.addWidget(self.problem)
        scroll.setWidget(content)
        outer.addWidget(scroll, 1)
        column = outer
        close = QPushButton("Close")
        close.clicked.connect(self.close)
        row = QHBoxLayout()
        row.addStretch(1)
        row.addWidget(close)
        column.addLayout(row)
        screen = self.screen().availableGeometry() if self.screen() is not None else None
        wanted = content.sizeHint().height() + 80
        self.resize(max(self.minimumWidth(), content.sizeHint().width() + 40),
                    min(wanted, int(screen.height() * 0.9)) if screen is not None else wanted)

        bridge.status_changed.connect(self.show_status)
        models.listed.connect(self.show_listing)
        models.capabilities.connect(self.show_capabilities)
        models.download_progress.connect(self.show_progress)
        models.download_finished.connect(self._download_finished)
        models.download_failed.connect(self._download_failed)
        models.deleted.connect(self._deleted)
        models.error.connect(self.show_problem)
        models.downloading_changed.connect(self._downloading_changed)
        self.set_settings(settings)
        self.show_status(bridge.status)
        self._downloading_changed(models.downloading is not None)
        models.refresh()
        models.probe()

    # -- layout -------------------------------------------------------------------------

    def _build_recommended(self) -> QGroupBox:
        box = QGroupBox("Models for this computer")
        column = QVBoxLayout(box)
        self.machine_label = QLabel("Measuring this computer's memory…")
        self.machine_label.setObjectName("hint")
        self.machine_label.setWordWrap(True)
        column.addWidget(self.machine_label)
        self.recommended = QTreeWidget()
        self.recommended.setObjectName("recommendedModels")
        self.recommended.setAccessibleName("Recommended models")
        self.recommended.setHeaderLabels(["Model", "Download", "Memory needed", "On this computer", ""])
        self.recommended.setRootIsDecorated(False)
        self.recommended.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        header = self.recommended.header()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for section in (1, 2, 3, 4):
            header.setSectionResizeMode(section, QHeaderView.ResizeMode.ResizeToContents)
        self.recommended.headerItem().setToolTip(2, "At the precision the settings below would load it in, "
                                                    "with room to answer; approximate")
        self.recommended_buttons: dict[str, QPushButton] = {}
        for entry in RECOMMENDED:
            item = QTreeWidgetItem([entry.title, f"≈ {human_bytes(entry.download_bytes)}", "…", "…", ""])
            item.setData(0, Qt.ItemDataRole.UserRole, entry.repo_id)
            item.setToolTip(0, f"{entry.repo_id}\n{entry.note}")
            item.setToolTip(1, "Approximate size of the model's weights on the Hugging Face hub")
            item.setTextAlignment(1, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            self.recommended.addTopLevelItem(item)
            button = QPushButton("Download")
            button.setObjectName("recommendedAction")
            button.clicked.connect(lambda _=False, repo_id=entry.repo_id: self.use_or_download(repo_id))
            self.recommended.setItemWidget(item, 4, button)
            self.recommended_buttons[entry.repo_id] = button
        rows = self.recommended.sizeHintForRow(0) * len(RECOMMENDED) + self.recommended.header().sizeHint().height()
        self.recommended.setFixedHeight(rows + 2 * self.recommended.frameWidth() + 4)
        column.addWidget(self.recommended)
        return box

    def recommended_item(self, repo_id: str) -> QTreeWidgetItem | None:
        for i in range(self.recommended.topLevelItemCount()):
            item = self.recommended.topLevelItem(i)
            if item.data(0, Qt.ItemDataRole.UserRole) == repo_id:
                return item
        return None

    def _downloaded(self, repo_id: str) -> bool:
        return self.listing is not None and any(m.repo_id == repo_id and m.complete for m in self.listing.models)

    def _update_recommended(self) -> None:
        """Sizes, what fits (with the page's device/precision/quantization), and each entry's action."""
        machine = Machine.from_capabilities(self.capabilities) if self.capabilities else None
        device, dtype = self.device.currentText(), self.dtype.currentText()
        quantization = self.quantization.currentData() or "none"
        in_use = self._settings.model if self._settings.backend == "local" else None
        busy = self.models.downloading
        for entry in RECOMMENDED:
            item = self.recommended_item(entry.repo_id)
            button = self.recommended_buttons[entry.repo_id]
            if machine is not None:
                verdict = fit(entry, machine, device, dtype, quantization)
                kind = "GPU memory" if verdict.where == "gpu" else "RAM"
                item.setText(2, f"≈ {gb(verdict.needed_bytes)} {kind} ({verdict.precision})")
                item.setText(3, {Verdict.FITS: "Fits", Verdict.TIGHT: "Tight", Verdict.TOO_BIG: "Too big",
                                 Verdict.UNKNOWN: "Unknown"}[verdict.verdict])
                item.setToolTip(2, verdict.text)
                item.setToolTip(3, verdict.text)
            downloaded = self._downloaded(entry.repo_id)
            if busy == entry.repo_id:
                button.setText("Downloading…")
                button.setEnabled(False)
            elif entry.repo_id == in_use:
                button.setText("In use")
                button.setEnabled(False)
            elif downloaded:
                button.setText("Use")
                button.setEnabled(True)
            else:
                button.setText("Download")
                button.setEnabled(busy is None and self.listing is not None)
            button.setToolTip(
                f"Load {entry.repo_id} now (the model in use stays until it has loaded)" if downloaded
                else f"Download {entry.repo_id} (≈ {human_bytes(entry.download_bytes)}); then Use loads it")

    def use_or_download(self, repo_id: str) -> None:
        """An entry's one button: download the model, or (once downloaded) use it."""
        if self._downloaded(repo_id):
            self.use_model(repo_id)
        else:
            self.download(repo_id)
        self._update_recommended()

    def use_model(self, repo_id: str) -> None:
        """Run ``repo_id`` on this computer, with the page's device and precision."""
        self.backend.setCurrentIndex(self.backend.findData("local"))
        self.model.setCurrentText(repo_id)
        self.apply()

    def _build_choice(self) -> QGroupBox:
        box = QGroupBox("Model and how it runs")
        form = QFormLayout(box)
        self.backend = QComboBox()
        for label, value in BACKEND_CHOICES:  # the same words as Settings → Model
            self.backend.addItem(label, value)
        self.backend.setToolTip("Where the model runs: in this app (transformers), or on a server")
        self.backend.currentIndexChanged.connect(self._changed)
        self.server_note = QLabel()
        self.server_note.setObjectName("hint")
        self.server_note.setWordWrap(True)
        self.server_button = QPushButton("Server settings…")
        self.server_button.setToolTip("The server's address, model name and API key (Settings…, Ctrl+,)")
        self.server_button.clicked.connect(self.server_settings_requested)
        server_row = QHBoxLayout()
        server_row.addWidget(self.server_note, 1)
        server_row.addWidget(self.server_button)
        form.addRow(RUNS_ON, self.backend)
        form.addRow("", server_row)
        self.model = QComboBox()
        self.model.setEditable(True)
        self.model.setToolTip("A Hugging Face hub id (downloaded on first use) or a local model folder")
        self.model.currentTextChanged.connect(self._changed)
        browse = QPushButton("Folder…")
        browse.clicked.connect(self._browse)
        row = QHBoxLayout()
        row.addWidget(self.model, 1)
        row.addWidget(browse)
        form.addRow("Model", row)
        self.device = QComboBox()
        self.device.addItems(DEVICES)
        self.device.setToolTip("auto: a CUDA GPU, else Apple's Metal (MPS), else the CPU")
        self.dtype = QComboBox()
        self.dtype.addItems(DTYPES)
        self.dtype.setToolTip("auto: bfloat16/float16 on GPUs, float32 on the CPU")
        self.quantization = QComboBox()
        for value in QUANTIZATIONS:
            self.quantization.addItem(_QUANT_TEXT[value], value)
        self.quantization.setToolTip("8-/4-bit weights take 2-4 times less GPU memory (CUDA with bitsandbytes only)")
        self.capability_note = QLabel("Checking this computer's GPU…")
        self.capability_note.setObjectName("hint")
        self.capability_note.setWordWrap(True)
        self.offline = QCheckBox("Offline: never contact the Hugging Face hub (downloaded models and folders only)")
        for combo in (self.device, self.dtype, self.quantization):
            combo.currentIndexChanged.connect(self._changed)
        self.offline.toggled.connect(self._changed)
        form.addRow("Device", self.device)
        form.addRow("Precision", self.dtype)
        form.addRow("Quantization", self.quantization)
        form.addRow("", self.capability_note)
        form.addRow("", self.offline)
        self.apply_button = QPushButton("Use these settings")
        self.apply_button.setObjectName("applyModel")
        self.apply_button.setToolTip("Save the choices and load the model with them")
        self.apply_button.clicked.connect(self.apply)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.apply_button)
        form.addRow(buttons)
        return box

    def _build_loaded(self) -> QGroupBox:
        box = QGroupBox("Loaded now")
        row = QHBoxLayout(box)
        self.loaded_label = QLabel()
        self.loaded_label.setObjectName("loadedModel")
        self.loaded_label.setWordWrap(True)
        self.unload_button = QPushButton("Unload model")
        self.unload_button.setToolTip("Free the memory the model takes; the next question loads it again")
        self.unload_button.clicked.connect(self.unload)
        row.addWidget(self.loaded_label, 1)
        row.addWidget(self.unload_button)
        return box

    def _build_download(self) -> QGroupBox:
        box = QGroupBox("Download")
        column = QVBoxLayout(box)
        row = QHBoxLayout()
        self.download_button = QPushButton("Download")
        self.download_button.setToolTip("Download the model named above into the app's model folder")
        self.download_button.clicked.connect(lambda: self.download())
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setValue(0)
        self.progress.setTextVisible(True)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop the download; Download again continues where it stopped")
        self.cancel_button.clicked.connect(self.models.cancel_download)
        row.addWidget(self.download_button)
        row.addWidget(self.progress, 1)
        row.addWidget(self.cancel_button)
        column.addLayout(row)
        self.progress_label = QLabel()
        self.progress_label.setObjectName("downloadProgress")
        column.addWidget(self.progress_label)
        return box

    def _build_cache(self) -> QGroupBox:
        box = QGroupBox("Downloaded models")
        column = QVBoxLayout(box)
        self.cache_label = QLabel()
        self.cache_label.setWordWrap(True)
        self.cache_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        column.addWidget(self.cache_label)
        self.cached = QTreeWidget()
        self.cached.setHeaderLabels(["Model", "Size", "State"])
        self.cached.setRootIsDecorated(False)
        self.cached.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.cached.header().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.cached.itemSelectionChanged.connect(self._selection_changed)
        self.cached.itemDoubleClicked.connect(lambda *_: self.use_selected())
        column.addWidget(self.cached, 1)
        row = QHBoxLayout()
        self.use_button = QPushButton("Use")
        self.use_button.setToolTip("Put the selected model in the Model field")
        self.use_button.clicked.connect(self.use_selected)
        self.delete_button = QPushButton("Delete…")
        self.delete_button.clicked.connect(lambda: self.delete_selected())
        refresh = QPushButton("Refresh")
        refresh.clicked.connect(self.models.refresh)
        row.addWidget(self.use_button)
        row.addWidget(self.delete_button)
        row.addStretch(1)
        row.addWidget(refresh)
        column.addLayout(row)
        self._selection_changed()
        return box

    # -- the choices ------------------------------------------------------------------------

    def set_settings(self, settings: Settings) -> None:
        """Show ``settings`` (the window's current ones)."""
        self._settings = settings
        widgets = (self.backend, self.model, self.device, self.dtype, self.quantization, self.offline)
        for widget in widgets:
            widget.blockSignals(True)
        self.backend.setCurrentIndex(max(0, self.backend.findData(settings.backend)))
        self._fill_model_choices()
        self.model.setCurrentText(settings.model)
        self.device.setCurrentText(settings.device)
        self.dtype.setCurrentText(settings.dtype)
        self.quantization.setCurrentIndex(self.quantization.findData(settings.quantization))
        forced = offline_from_environment()
        self.offline.setChecked(settings.offline or forced)
        self.offline.setEnabled(not forced)
        self.offline.setToolTip(
            "HF_HUB_OFFLINE is set in the environment: the app stays offline whatever this says"
            if forced
            else "Also --offline on the command line"
        )
        for widget in widgets:
            widget.blockSignals(False)
        self._changed()

    def _fill_model_choices(self) -> None:
        text = self.model.currentText()
        cached = [m.repo_id for m in self.listing.models if m.complete] if self.listing else []
        self.model.blockSignals(True)
        self.model.clear()
        for choice in dict.fromkeys([self._settings.model, DEFAULT_MODEL, *cached]):
            self.model.addItem(choice)
        self.model.setCurrentText(text or self._settings.model)
        self.model.blockSignals(False)

    def chosen_settings(self) -> Settings:
        """The settings with this page's choices (raises ``SettingsError`` for unusable ones)."""
        return self._settings.replace(
            backend=self.backend.currentData(),
            model=self.model.currentText().strip(),
            device=self.device.currentText(),
            dtype=self.dtype.currentText(),
            quantization=self.quantization.currentData(),
            offline=self.offline.isChecked() if self.offline.isEnabled() else self._settings.offline,
        )

    @Slot()
    def _changed(self) -> None:
        remote = self.backend.currentData() == "openai"
        if remote:
            model = self._settings.remote_model or "the server's only model"
            self.server_note.setText(f"{self._settings.base_url} · {model}. The local model below is used "
                                     "when you switch back to this computer.")
        self.server_note.setVisible(remote)
        self.server_button.setVisible(remote)
        try:
            changed = self.chosen_settings() != self._settings
        except SettingsError:
            changed = True  # Apply then says what is wrong
        self.apply_button.setEnabled(changed)
        self._update_download_button()
        self._update_recommended()

    @Slot()
    def apply(self) -> None:
        try:
            settings = self.chosen_settings()
        except SettingsError as exc:
            self.show_problem(str(exc))
            return
        self.problem.hide()
        self._settings = settings
        self.settings_chosen.emit(settings)
        self._changed()

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Choose a model folder")
        if folder:
            self.model.setCurrentText(folder)

    @Slot(object)
    def show_capabilities(self, caps: dict) -> None:
        self.capabilities = caps
        if caps.get("cuda"):
            gpu = f"CUDA GPU: {caps.get('cuda_name') or 'yes'}."
            bnb = " 8-/4-bit loading is available." if caps.get("bitsandbytes") else (
                " 8-/4-bit loading needs the bitsandbytes package (pip install bitsandbytes).")
            self.capability_note.setText(gpu + bnb)
        else:
            other = " Apple Metal (MPS) is available." if caps.get("mps") else ""
            self.capability_note.setText(f"No CUDA GPU here: models run on the CPU, and 8-/4-bit loading is unavailable.{other}")
        memory = [f"{gb(caps['ram_bytes'])} RAM"] if caps.get("ram_bytes") else []
        if caps.get("cuda") and caps.get("gpu_bytes"):
            memory.append(f"a GPU with {gb(caps['gpu_bytes'])} ({caps.get('cuda_name') or 'CUDA'})")
        self.machine_label.setText(
            f"This computer has {' and '.join(memory) or 'an unknown amount of memory'}. Sizes are approximate; "
            "memory is for the device and precision chosen below."
        )
        self._update_recommended()

    # -- what is loaded ------------------------------------------------------------------------

    @Slot(object)
    def show_status(self, event: StatusEvent) -> None:
        if event.state in (State.READY, State.THINKING, State.GENERATING):
            memory = f" · takes {human_bytes(event.memory_bytes)}" if event.memory_bytes else ""
            if event.memory_bytes and event.cache_bytes:
                memory += f", and {human_bytes(event.cache_bytes)} for this chat's cache"
            quant = f", {event.quantization}" if event.quantization != "none" else ""
            text = f"{event.model} on {event.device} ({event.dtype or '?'}{quant}){memory}"
            self.unload_button.setEnabled(True)
        elif event.state is State.LOADING:
            text = f"Loading {event.model}…"
            self.unload_button.setEnabled(False)
        elif event.state is State.ERROR:  # after a failed switch the model in use is loaded again next
            text = "Loading failed" + (f" — {event.detail}" if event.detail else ".")
            self.unload_button.setEnabled(False)
        else:
            text = "No model is loaded" + (f" — {event.detail}" if event.detail else ".")
            self.unload_button.setEnabled(False)
        self.loaded_label.setText(text)

    @Slot()
    def unload(self) -> None:
        self.unload_button.setEnabled(False)
        self.bridge.unload()

    # -- downloads -------------------------------------------------------------------------------

    def _update_download_button(self) -> None:
        model = self.model.currentText().strip()
        busy = self.models.downloading is not None
        self.download_button.setEnabled(bool(model) and not looks_like_path(model) and not busy)

    def download(self, model: str | None = None) -> bool:
        """Download ``model`` (None: the one in the Model field); False when one is already running."""
        model = (model if model is not None else self.model.currentText()).strip()
        if self.models.downloading is not None:
            return False
        self.problem.hide()
        self.progress.setRange(0, 1000)
        self.progress.setValue(0)
        self.progress_label.setText(f"Starting the download of {model}…")
        return self.models.download(model, offline=self.offline.isChecked())

    @Slot(bool)
    def _downloading_changed(self, busy: bool) -> None:
        self.cancel_button.setEnabled(busy)
        self._update_download_button()
        self._selection_changed()
        self._update_recommended()

    @Slot(object)
    def show_progress(self, p: Progress) -> None:
        if p.fraction is None:
            self.progress.setRange(0, 0)  # busy: the size is not known yet
        else:
            self.progress.setRange(0, 1000)
            self.progress.setValue(int(p.fraction * 1000))
        self.progress_label.setText(progress_text(p))

    @Slot(str, str)
    def _download_finished(self, model: str, folder: str) -> None:
        self.progress.setRange(0, 1000)
        self.progress.setValue(1000)
        if not self.progress_label.text().endswith("done"):
            self.progress_label.setText(f"{model} is downloaded.")

    @Slot(str, str, bool)
    def _download_failed(self, model: str, message: str, cancelled: bool) -> None:
        self.progress.setRange(0, 1000)
        if cancelled:
            self.progress_label.setText(message)
        else:
            self.progress_label.setText("")
            self.show_problem(message)

    # -- the cache ---------------------------------------------------------------------------------

    @Slot(object)
    def show_listing(self, listing: CacheListing) -> None:
        self.listing = listing
        selected = self.selected_model()
        self.cached.clear()
        for model in listing.models:
            if model.complete:
                state = "ready"
            elif model.partial_bytes:
                state = f"partial download ({human_bytes(model.partial_bytes)}): Download continues it"
            else:
                state = "incomplete"
            item = QTreeWidgetItem([model.repo_id, model.size_text, state])
            item.setData(0, Qt.ItemDataRole.UserRole, model.repo_id)
            item.setToolTip(0, f"{model.path}\nlast changed {time.strftime('%Y-%m-%d %H:%M', time.localtime(model.last_modified))}")
            item.setTextAlignment(1, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            self.cached.addTopLevelItem(item)
            if selected is not None and model.repo_id == selected.repo_id:
                item.setSelected(True)
        count = len(listing.models)
        self.cache_label.setText(
            f"{count} model{'s' if count != 1 else ''}, {human_bytes(listing.size_bytes)} in {listing.folder}"
        )
        if listing.problems:
            self.show_problem("Some cache folders could not be read: " + "; ".join(listing.problems))
        self.model.blockSignals(True)
        self._fill_model_choices()
        self.model.blockSignals(False)
        self._selection_changed()
        self._update_recommended()

    def selected_model(self) -> CachedModel | None:
        items = self.cached.selectedItems()
        if not items or self.listing is None:
            return None
        repo_id = items[0].data(0, Qt.ItemDataRole.UserRole)
        return next((m for m in self.listing.models if m.repo_id == repo_id), None)

    def select(self, repo_id: str) -> bool:
        for i in range(self.cached.topLevelItemCount()):
            item = self.cached.topLevelItem(i)
            if item.data(0, Qt.ItemDataRole.UserRole) == repo_id:
                self.cached.setCurrentItem(item)
                item.setSelected(True)
                return True
        return False

    @Slot()
    def _selection_changed(self) -> None:
        model = self.selected_model()
        self.use_button.setEnabled(model is not None and model.complete)
        self.delete_button.setEnabled(model is not None and model.repo_id != self.models.downloading)

    @Slot()
    def use_selected(self) -> None:
        model = self.selected_model()
        if model is not None:
            self.model.setCurrentText(model.repo_id)

    def delete_selected(self, confirm: bool = True) -> bool:
        model = self.selected_model()
        if model is None or model.repo_id == self.models.downloading:
            return False
        if confirm:
            loaded = " It stays loaded until you switch or unload, and would be downloaded again next time." if (
                self.bridge.status.model == model.repo_id and self.bridge.status.state is not State.UNLOADED) else ""
            answer = QMessageBox.question(
                self,
                "Delete model",
                f"Delete {model.repo_id} ({model.size_text}) from the model folder?{loaded}",
            )
            if answer != QMessageBox.StandardButton.Yes:
                return False
        self.problem.hide()
        self.models.delete(model.repo_id)
        return True

    @Slot(str, int)
    def _deleted(self, repo_id: str, freed: int) -> None:
        self.progress_label.setText(f"Deleted {repo_id}: {human_bytes(freed)} freed.")

    @Slot(str)
    def show_problem(self, message: str) -> None:
        self.problem.setText(message)
        self.problem.show()
