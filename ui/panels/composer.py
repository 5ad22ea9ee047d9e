"""The input area: a multi-line prompt (Enter sends) and the images attached to it."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QBuffer, QByteArray, QIODevice, Qt, QMimeData, Signal
from PySide6.QtGui import QImage, QImageReader, QKeyEvent
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPlainTextEdit, QToolButton, QVBoxLayout, QWidget

from assistant.events import ImageInput

from ui.panels.chat import thumbnail

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}


def image_paths(mime: QMimeData) -> list[str]:
    """Local image files among a drop's or paste's URLs."""
    if not mime.hasUrls():
        return []
    return [u.toLocalFile() for u in mime.urls() if u.isLocalFile() and Path(u.toLocalFile()).suffix.lower() in IMAGE_SUFFIXES]


def png_bytes(image: QImage) -> bytes:
    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    image.save(buffer, "PNG")
    buffer.close()
    return bytes(data.data())


class PromptEdit(QPlainTextEdit):
    """Enter sends, Shift+Enter starts a new line; pasted images become attachments."""

    submitted = Signal()
    image_pasted = Signal(QImage)
    files_pasted = Signal(list)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("prompt")
        self.setAccessibleName("Message")
        self.setAccessibleDescription("Enter sends, Shift+Enter starts a new line; paste or drop images to attach them")
        self.setPlaceholderText("Ask anything — Enter to send, Shift+Enter for a new line, paste or drop images")
        self.setTabChangesFocus(True)

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802 - Qt API
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and not (
            event.modifiers() & (Qt.KeyboardModifier.ShiftModifier | Qt.KeyboardModifier.AltModifier)
        ):
            self.submitted.emit()
            return
        super().keyPressEvent(event)

    def canInsertFromMimeData(self, source: QMimeData) -> bool:  # noqa: N802
        return source.hasImage() or bool(image_paths(source)) or super().canInsertFromMimeData(source)

    def insertFromMimeData(self, source: QMimeData) -> None:  # noqa: N802
        files = image_paths(source)
        if files:
            self.files_pasted.emit(files)
        elif source.hasImage():
            image = QImage(source.imageData())
            if not image.isNull():
                self.image_pasted.emit(image)
        elif source.hasText():
            self.insertPlainText(source.text())  # always plain text, never markup


class Attachments(QWidget):
    """The images waiting to go with the next message, each with a remove button."""

    changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("attachments")
        self.setAccessibleName("Attached images")
        self.items: list[tuple[ImageInput, QImage | None]] = []
        self._row = QHBoxLayout(self)
        self._row.setContentsMargins(0, 0, 0, 0)
        self._row.addStretch(1)
        self.hide()

    def add(self, image: ImageInput, preview: QImage | None) -> None:
        self.items.append((image, preview))
        self._rebuild()

    def remove(self, index: int) -> None:
        del self.items[index]
        self._rebuild()

    def take(self) -> list[tuple[ImageInput, QImage | None]]:
        items, self.items = self.items, []
        self._rebuild()
        return items

    def _rebuild(self) -> None:
        while self._row.count() > 1:
            item = self._row.takeAt(0)
            if item.widget():
                item.widget().deleteLater()
        for index, (image, preview) in enumerate(self.items):
            cell = QWidget()
            box = QVBoxLayout(cell)
            box.setContentsMargins(0, 0, 0, 0)
            pic = QLabel()
            pic.setPixmap(thumbnail(preview, 56))
            pic.setToolTip(image.name)
            pic.setAccessibleName(f"Attached image {image.name}")
            remove = QToolButton()
            remove.setText("✕")
            remove.setToolTip(f"Remove {image.name}")
            remove.setAccessibleName(f"Remove {image.name}")
            remove.setAutoRaise(True)
            remove.clicked.connect(lambda _=False, i=index: self.remove(i))
            box.addWidget(pic)
            box.addWidget(remove, alignment=Qt.AlignmentFlag.AlignHCenter)
            self._row.insertWidget(index, cell)
        self.setVisible(bool(self.items))
        self.changed.emit()


def readable_image(path: str) -> str | None:
    """None when Qt recognises ``path`` as an image, else the reason it does not."""
    reader = QImageReader(path)
    if not Path(path).is_file():
        return f"'{Path(path).name}' was not found."
    if not reader.canRead():
        return f"'{Path(path).name}' is not an image file this app can read."
    return None
