"""A model that is not downloaded yet, offered where it is needed (a notice that a model is
missing, the sidebar's image search): its size, Download, progress and Cancel; and the one
way a download's progress is put in words (the Models page uses it too)."""

from __future__ import annotations

from PySide6.QtCore import Signal, Slot
from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QVBoxLayout, QWidget

from assistant.models.hub import human_bytes, human_duration
from assistant.progress import Progress

from ui.workers.models import ModelsBridge


def progress_text(p: Progress) -> str:
    """'12.3 MB of 500.0 MB · 4.1 MB/s · 2 min 01 s left' (the parts that are known)."""
    if p.done_bytes is None:
        return p.detail
    parts = [human_bytes(p.done_bytes) + (f" of {human_bytes(p.total_bytes)}" if p.total_bytes else "")]
    if p.bytes_per_second is not None:
        parts.append(f"{human_bytes(p.bytes_per_second)}/s")
    if p.fraction == 1.0:
        parts.append("done")
    elif p.seconds_left is not None:
        parts.append(f"{human_duration(p.seconds_left)} left")
    return " · ".join(parts)


class DownloadOffer(QWidget):
    """A model that is not downloaded yet, in a notice: what it is, its size, Download, progress, Cancel.

    The download runs in ``ModelsBridge``'s thread (the Models page's flow); ``ready`` is
    emitted once the model is in the cache.
    """

    ready = Signal(str)  # the model, now downloaded

    def __init__(self, models: ModelsBridge, model: str, size_bytes: int, speech: bool = False,
                 offline: bool = False, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("downloadOffer")
        self.models = models
        self.model = model
        self.speech = speech
        self.offline = offline
        column = QVBoxLayout(self)
        column.setContentsMargins(0, 4, 0, 0)
        row = QHBoxLayout()
        size = f" (≈ {human_bytes(size_bytes)})" if size_bytes else ""
        self.download_button = QPushButton(f"Download{size}")
        self.download_button.setObjectName("offerDownload")
        self.download_button.setToolTip(f"Download {model} into the app's model folder")
        self.download_button.clicked.connect(self.start)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setValue(0)
        self.progress.hide()
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop the download; Download again continues where it stopped")
        self.cancel_button.clicked.connect(models.cancel_download)
        self.cancel_button.hide()
        row.addWidget(self.download_button)
        row.addWidget(self.progress, 1)
        row.addWidget(self.cancel_button)
        row.addStretch(0)
        column.addLayout(row)
        self.status = QLabel()
        self.status.setObjectName("offerStatus")
        self.status.setWordWrap(True)
        self.status.hide()
        column.addWidget(self.status)
        models.download_progress.connect(self._progress)
        models.download_finished.connect(self._finished)
        models.download_failed.connect(self._failed)

    @property
    def mine(self) -> bool:
        return self.models.downloading == self.model

    @Slot()
    def start(self) -> bool:
        if not self.models.download(self.model, offline=self.offline, speech=self.speech):
            self._say(f"Another download is running ({self.models.downloading}); try again when it has finished.")
            return False
        self.download_button.setEnabled(False)
        self.progress.setRange(0, 0)
        self.progress.show()
        self.cancel_button.show()
        self._say(f"Starting the download of {self.model}…")
        return True

    def _say(self, text: str) -> None:
        self.status.setText(text)
        self.status.show()

    @Slot(object)
    def _progress(self, p: Progress) -> None:
        if not self.mine:
            return
        if p.fraction is None:
            self.progress.setRange(0, 0)
        else:
            self.progress.setRange(0, 1000)
            self.progress.setValue(int(p.fraction * 1000))
        self._say(progress_text(p))

    @Slot(str, str)
    def _finished(self, model: str, folder: str) -> None:
        if model != self.model:
            return
        self.progress.setRange(0, 1000)
        self.progress.setValue(1000)
        self.cancel_button.hide()
        self.download_button.setText("Downloaded")
        self._say(f"{model} is downloaded.")
        self.ready.emit(model)

    @Slot(str, str, bool)
    def _failed(self, model: str, message: str, cancelled: bool) -> None:
        if model != self.model:
            return
        self.progress.setRange(0, 1000)
        self.cancel_button.hide()
        self.download_button.setEnabled(True)
        self.download_button.setText("Download again" if cancelled else "Try again")
        self._say(message)
