"""An image full size: a plain dialog that fits the picture on the screen; Esc closes it."""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QGuiApplication, QImage, QKeySequence, QPixmap, QResizeEvent, QShortcut
from PySide6.QtWidgets import QDialog, QLabel, QSizePolicy, QVBoxLayout, QWidget

SCREEN_SHARE = 0.9  # of the screen's free area the dialog may take


class ImageViewer(QDialog):
    """Shows ``image`` as large as fits the screen (never enlarged past its own size)."""

    def __init__(self, image: QImage, name: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("imageViewer")
        self.setWindowTitle(name or "Image")
        self.setAccessibleName(f"Image {name}" if name else "Image")
        self.setAccessibleDescription("The image full size. Esc closes it.")
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.setStyleSheet("#imageViewer { background: #1d2129; } #imageViewerHint { color: #aab2c0; }")
        self._pixmap = QPixmap.fromImage(image)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 6)
        layout.setSpacing(4)
        self.picture = QLabel()
        self.picture.setObjectName("imageViewerPicture")
        self.picture.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.picture.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Ignored)
        self.picture.setAccessibleName(self.accessibleName())
        self.picture.setMinimumSize(64, 64)
        layout.addWidget(self.picture, 1)
        size = f"{image.width()} × {image.height()}"
        hint = QLabel(f"{name} · {size} · Esc closes" if name else f"{size} · Esc closes")
        hint.setObjectName("imageViewerHint")
        hint.setWordWrap(True)
        hint.setAlignment(Qt.AlignmentFlag.AlignCenter)
        layout.addWidget(hint)
        QShortcut(QKeySequence(Qt.Key.Key_Escape), self, self.close)  # also when the picture has focus
        self.resize(self._fitting_size())

    def _fitting_size(self) -> QSize:
        screen = self.screen() or QGuiApplication.primaryScreen()
        free = screen.availableGeometry().size() * SCREEN_SHARE if screen is not None else QSize(1024, 768)
        extra = QSize(16, 40)  # margins and the hint line
        picture = self._pixmap.size()
        if picture.isEmpty():
            return QSize(320, 240)
        room = free - extra
        if picture.width() > room.width() or picture.height() > room.height():
            picture = picture.scaled(room, Qt.AspectRatioMode.KeepAspectRatio)
        return (picture + extra).expandedTo(QSize(240, 160))

    def shown_size(self) -> QSize:
        """The size the picture is drawn at now."""
        pixmap = self.picture.pixmap()
        return pixmap.size() if pixmap is not None and not pixmap.isNull() else QSize()

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802 - Qt API
        super().resizeEvent(event)
        if self._pixmap.isNull():
            return
        room = self.picture.size()
        picture = self._pixmap
        if picture.width() > room.width() or picture.height() > room.height():
            picture = picture.scaled(room, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation)
        self.picture.setPixmap(picture)
