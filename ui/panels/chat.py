"""The conversation view: user turns with thumbnails, assistant replies as markdown."""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QFont, QImage, QPixmap, QTextDocument
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QScrollArea,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

THUMB = 96

_MD = QTextDocument.MarkdownFeature


def markdown_to_html(text: str, font: QFont | None = None) -> str:
    """GitHub-flavoured markdown to Qt rich text; raw HTML in the text stays text.

    Code (inline and blocks) comes out in the monospace family; blocks get a
    shaded background.
    """
    doc = QTextDocument()
    if font is not None:
        doc.setDefaultFont(font)
    doc.setMarkdown(text, _MD(_MD.MarkdownDialectGitHub.value | _MD.MarkdownNoHTML.value))
    return doc.toHtml().replace("<pre style=\"", "<pre style=\" background-color:#eef1f5;")


def thumbnail(image: QImage | None, size: int = THUMB) -> QPixmap:
    if image is None or image.isNull():
        pix = QPixmap(size, size)
        pix.fill(Qt.GlobalColor.lightGray)
        return pix
    return QPixmap.fromImage(image.scaled(size, size, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation))


class MessageWidget(QFrame):
    """One message.  ``text`` is the raw text; ``state`` is streaming/done/stopped/failed."""

    def __init__(self, role: str, turn_id: int, images: list[tuple[str, QImage | None]] | None = None) -> None:
        super().__init__()
        self.role = role
        self.turn_id = turn_id
        self.text = ""
        self.state = "streaming" if role == "assistant" else "done"
        self.image_names = [name for name, _ in images or []]
        self.frame_captions: list[str] = []
        self.setObjectName(f"{role}Message")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 6, 10, 8)
        layout.setSpacing(4)
        self.header = QLabel("You" if role == "user" else "Assistant")
        self.header.setObjectName("messageHeader")
        layout.addWidget(self.header)
        if images:
            strip = QHBoxLayout()
            strip.setSpacing(6)
            for name, image in images:
                thumb = QLabel()
                thumb.setPixmap(thumbnail(image))
                thumb.setToolTip(name)
                thumb.setObjectName("thumbnail")
                strip.addWidget(thumb)
            strip.addStretch(1)
            layout.addLayout(strip)
        self.body = QLabel()
        self.body.setWordWrap(True)
        self.body.setTextInteractionFlags(
            Qt.TextInteractionFlag.TextSelectableByMouse | Qt.TextInteractionFlag.LinksAccessibleByMouse
        )
        self.body.setOpenExternalLinks(True)
        self.body.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Minimum)
        self.body.setTextFormat(Qt.TextFormat.PlainText if role == "user" else Qt.TextFormat.RichText)
        layout.addWidget(self.body)
        self.footer = QLabel()
        self.footer.setObjectName("messageFooter")
        self.footer.setWordWrap(True)
        self.footer.hide()
        layout.addWidget(self.footer)
        if role == "assistant":
            self.body.setText("<i>Thinking…</i>")

    def add_frames(self, frames: list[tuple[QImage, str]]) -> None:
        """The camera frames that went with this question, each with its caption (time, weight)."""
        strip = QHBoxLayout()
        strip.setSpacing(6)
        for image, caption in frames:
            cell = QVBoxLayout()
            thumb = QLabel()
            thumb.setPixmap(thumbnail(image))
            thumb.setObjectName("frameThumbnail")
            label = QLabel(caption)
            label.setObjectName("frameCaption")
            cell.addWidget(thumb)
            cell.addWidget(label)
            strip.addLayout(cell)
        strip.addStretch(1)
        self.layout().insertLayout(self.layout().count() - 2, strip)
        self.frame_captions = [caption for _, caption in frames]

    def set_text(self, text: str) -> None:
        self.text = text
        if self.role == "user":
            self.body.setText(text)
            self.body.setVisible(bool(text))
        else:
            self.body.setText(markdown_to_html(text, self.body.font()) if text else "")

    def append(self, text: str) -> None:
        self.set_text(self.text + text)

    def finish(self, state: str, note: str = "") -> None:
        self.state = state
        if self.role == "assistant" and not self.text:
            self.body.setText("")
            self.body.setVisible(False)
        if note:
            self.footer.setText(note)
            self.footer.setProperty("kind", state)
            self.footer.show()
            self.footer.style().unpolish(self.footer)
            self.footer.style().polish(self.footer)


class ChatView(QScrollArea):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("chatView")
        self.setWidgetResizable(True)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self._inner = QWidget()
        self._inner.setObjectName("chatInner")
        self._layout = QVBoxLayout(self._inner)
        self._layout.setContentsMargins(12, 12, 12, 12)
        self._layout.setSpacing(10)
        self._layout.addStretch(1)
        self.setWidget(self._inner)
        self.messages: list[MessageWidget] = []
        self.notices: list[QLabel] = []
        self._follow = True
        bar = self.verticalScrollBar()
        bar.valueChanged.connect(self._track_follow)
        bar.rangeChanged.connect(self._keep_at_bottom)

    def _track_follow(self, value: int) -> None:
        bar = self.verticalScrollBar()
        self._follow = value >= bar.maximum() - 24

    def _keep_at_bottom(self, _min: int, maximum: int) -> None:
        if self._follow:
            self.verticalScrollBar().setValue(maximum)

    def _add(self, widget: QWidget) -> None:
        self._layout.addWidget(widget)  # the stretch above keeps a short chat at the bottom
        self._follow = True
        QTimer.singleShot(0, lambda: self.verticalScrollBar().setValue(self.verticalScrollBar().maximum()))

    def add_user(self, turn_id: int, text: str, images: list[tuple[str, QImage | None]]) -> MessageWidget:
        widget = MessageWidget("user", turn_id, images)
        widget.set_text(text)
        self.messages.append(widget)
        self._add(widget)
        return widget

    def add_assistant(self, turn_id: int) -> MessageWidget:
        widget = MessageWidget("assistant", turn_id)
        self.messages.append(widget)
        self._add(widget)
        return widget

    def add_notice(self, text: str, kind: str = "error") -> QLabel:
        label = QLabel(text)
        label.setObjectName("notice")
        label.setProperty("kind", kind)
        label.setWordWrap(True)
        label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.notices.append(label)
        self._add(label)
        return label

    def message(self, role: str, turn_id: int) -> MessageWidget | None:
        for widget in reversed(self.messages):
            if widget.role == role and widget.turn_id == turn_id:
                return widget
        return None

    def clear(self) -> None:
        for widget in [*self.messages, *self.notices]:
            self._layout.removeWidget(widget)
            widget.deleteLater()
        self.messages.clear()
        self.notices.clear()
