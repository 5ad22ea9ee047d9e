"""Text widgets for the conversation that never ask for more width than they are given.

``WrappingText`` is a read-only ``QTextBrowser`` whose height follows its document
at whatever width the layout hands it: long words break anywhere, and a table too
wide to fit scrolls sideways inside it.  ``CodeBlock`` shows a fenced code block
unwrapped, scrolling sideways, with a Copy button.  ``ReplyBody`` is a reply as a
column of those (tables get a piece of their own, so that one too wide scrolls
alone), updated piece by piece while it streams (only the piece that
changed is laid out again).
"""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt, QTimer, QUrl
from PySide6.QtGui import QDesktopServices, QFont, QFontDatabase, QPalette, QTextCursor, QTextOption, QWheelEvent
from PySide6.QtWidgets import (
    QAbstractScrollArea,
    QApplication,
    QFrame,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QSizePolicy,
    QTextBrowser,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ui.panels.markdown import Segment, set_markdown, split_markdown

COPIED_MS = 1500  # how long a Copy button says "Copied"
_EXTERNAL_SCHEMES = ("http", "https", "mailto")


def _see_through(view: QAbstractScrollArea) -> None:
    """No frame and no background of its own: the bubble behind it shows."""
    view.setFrameShape(QFrame.Shape.NoFrame)
    palette = view.palette()
    palette.setColor(QPalette.ColorRole.Base, Qt.GlobalColor.transparent)
    view.setPalette(palette)
    view.viewport().setAutoFillBackground(False)


def _scroll_sideways_only(view: QAbstractScrollArea, event: QWheelEvent) -> bool:
    """Let the chat scroll on an up/down wheel; keep a sideways one.  True when handled here."""
    delta = event.angleDelta()
    if abs(delta.x()) > abs(delta.y()) and view.horizontalScrollBar().maximum() > 0:
        return False
    event.ignore()
    return True


class WrappingText(QTextBrowser):
    """Read-only rich or plain text, as tall as its content at the width it gets; never wider.

    It has no vertical scroll bar of its own (the chat scrolls); a horizontal one
    appears only when something cannot wrap (a wide table).
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        _see_through(self)
        self.setOpenLinks(False)  # links open in the browser, never inside the chat
        self.anchorClicked.connect(_open_link)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self.setLineWrapMode(QTextBrowser.LineWrapMode.WidgetWidth)
        self.setWordWrapMode(QTextOption.WrapMode.WrapAtWordBoundaryOrAnywhere)
        self.setTextInteractionFlags(
            Qt.TextInteractionFlag.TextSelectableByMouse
            | Qt.TextInteractionFlag.TextSelectableByKeyboard
            | Qt.TextInteractionFlag.LinksAccessibleByMouse
        )
        self.setFocusPolicy(Qt.FocusPolicy.ClickFocus)  # Tab goes message to message, not into every paragraph
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.document().setDocumentMargin(1)
        self.document().documentLayout().documentSizeChanged.connect(self._fit)
        self.horizontalScrollBar().rangeChanged.connect(self._fit)
        self._fit()

    def text(self) -> str:
        return self.toPlainText()

    def set_plain(self, text: str) -> None:
        if text != self.toPlainText():
            self.setPlainText(text)

    def set_markdown(self, text: str, break_words: bool = True) -> None:
        set_markdown(self.document(), text, break_words)
        if not break_words:  # a table too wide shows its first columns, not where the cursor ended
            self.moveCursor(QTextCursor.MoveOperation.Start)

    def minimumSizeHint(self) -> QSize:  # noqa: N802 - Qt API
        return QSize(24, self.height())

    def sizeHint(self) -> QSize:  # noqa: N802
        return QSize(120, self.height())

    def _fit(self, *_args: object) -> None:
        _fit_height(self, int(self.document().size().height() + 0.999) + 2 * self.frameWidth())

    def wheelEvent(self, event: QWheelEvent) -> None:  # noqa: N802
        if not _scroll_sideways_only(self, event):
            super().wheelEvent(event)


def _open_link(url: QUrl) -> None:
    if url.scheme() in _EXTERNAL_SCHEMES:
        QDesktopServices.openUrl(url)


def copy_to_clipboard(text: str) -> None:
    QApplication.clipboard().setText(text)


class CopyButton(QToolButton):
    """A small "Copy" button: puts what ``source`` returns on the clipboard and says so for a moment."""

    def __init__(self, source, name: str, description: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._source = source
        self.setText("Copy")
        self.setObjectName("copyButton")
        self.setAutoRaise(True)
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setToolTip(description)
        self.setAccessibleName(name)
        self.setAccessibleDescription(description)
        self._restore = QTimer(self)
        self._restore.setSingleShot(True)
        self._restore.setInterval(COPIED_MS)
        self._restore.timeout.connect(lambda: self.setText("Copy"))
        self.clicked.connect(self.copy)

    def copy(self) -> None:
        copy_to_clipboard(self._source())
        self.setText("Copied")
        self._restore.start()


class _CodeText(QPlainTextEdit):
    """The code itself: unwrapped, monospace, as tall as its lines, scrolling sideways."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        _see_through(self)
        self.setReadOnly(True)
        self.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self.setTextInteractionFlags(
            Qt.TextInteractionFlag.TextSelectableByMouse | Qt.TextInteractionFlag.TextSelectableByKeyboard
        )
        self.setFocusPolicy(Qt.FocusPolicy.ClickFocus)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        font = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
        font.setStyleHint(QFont.StyleHint.Monospace)
        self.setFont(font)
        self.document().setDocumentMargin(4)
        self.horizontalScrollBar().rangeChanged.connect(self._fit)
        self.document().blockCountChanged.connect(self._fit)
        self._fit()

    def minimumSizeHint(self) -> QSize:  # noqa: N802 - Qt API
        return QSize(24, self.height())

    def sizeHint(self) -> QSize:  # noqa: N802
        return QSize(120, self.height())

    def set_code(self, code: str) -> None:
        old = self.toPlainText()
        if code == old:
            return
        if old and code.startswith(old):  # streaming: add the new end without moving the view
            cursor = QTextCursor(self.document())
            cursor.movePosition(QTextCursor.MoveOperation.End)
            cursor.insertText(code[len(old):])
        else:
            self.setPlainText(code)
        self._fit()

    def _fit(self, *_args: object) -> None:
        lines = max(1, self.document().blockCount())
        _fit_height(self, lines * self.fontMetrics().lineSpacing() + int(2 * self.document().documentMargin()) + 2)

    def wheelEvent(self, event: QWheelEvent) -> None:  # noqa: N802
        if not _scroll_sideways_only(self, event):
            super().wheelEvent(event)


class CodeBlock(QFrame):
    """A fenced code block: its language, a Copy button for the code alone, and the code."""

    def __init__(self, language: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("codeBlock")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 2, 4, 4)
        layout.setSpacing(0)
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        self.language = QLabel()
        self.language.setObjectName("codeLanguage")
        row.addWidget(self.language)
        row.addStretch(1)
        self.copy_button = CopyButton(lambda: self.code, "Copy code", "Copy this code block to the clipboard")
        row.addWidget(self.copy_button)
        layout.addLayout(row)
        self.view = _CodeText()
        layout.addWidget(self.view)
        self.set_language(language)

    @property
    def code(self) -> str:
        return self.view.toPlainText()

    def set_language(self, language: str) -> None:
        self.language.setText(language or "code")
        self.view.setAccessibleName(f"{language} code" if language else "Code")
        self.copy_button.setAccessibleName(f"Copy {language} code" if language else "Copy code")

    def set_code(self, code: str) -> None:
        self.view.set_code(code)


class ReplyBody(QWidget):
    """An assistant reply as prose and code blocks; ``set_markdown`` updates only what changed."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self._layout.setSpacing(6)
        self.pieces: list[tuple[Segment, QWidget]] = []
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Minimum)

    def set_markdown(self, text: str) -> None:
        segments = split_markdown(text)
        for index, segment in enumerate(segments):
            if index < len(self.pieces):
                old, widget = self.pieces[index]
                if old == segment:
                    continue
                if old.kind == segment.kind:
                    self._update(widget, segment)
                    self.pieces[index] = (segment, widget)
                    continue
                self._drop_from(index)
            widget = self._make(segment)
            self._layout.addWidget(widget)
            self.pieces.append((segment, widget))
        self._drop_from(len(segments))

    def text(self) -> str:
        """What is shown, as plain text."""
        parts = []
        for _, widget in self.pieces:
            parts.append(widget.code if isinstance(widget, CodeBlock) else widget.toPlainText())
        return "\n\n".join(parts)

    def code_blocks(self) -> list[CodeBlock]:
        return [widget for _, widget in self.pieces if isinstance(widget, CodeBlock)]

    def restyle(self) -> None:
        """Render the prose again (the look changed: code shading in the text follows it)."""
        for segment, widget in self.pieces:
            if not isinstance(widget, CodeBlock):
                self._update(widget, segment)

    def _make(self, segment: Segment) -> QWidget:
        widget: QWidget = CodeBlock(segment.language) if segment.kind == "code" else WrappingText()
        self._update(widget, segment)
        return widget

    @staticmethod
    def _update(widget: QWidget, segment: Segment) -> None:
        if isinstance(widget, CodeBlock):
            widget.set_language(segment.language)
            widget.set_code(segment.text)
        else:
            widget.set_markdown(segment.text, break_words=segment.kind != "table")
            widget.setAccessibleName("Table" if segment.kind == "table" else "Reply text")

    def _drop_from(self, index: int) -> None:
        for _, widget in self.pieces[index:]:
            self._layout.removeWidget(widget)
            widget.deleteLater()
        del self.pieces[index:]


def _fit_height(view, height: int) -> None:
    """Fix ``view``'s height to ``height`` of content plus its sideways scroll bar, if it has
    one, and keep it scrolled to the top (it never scrolls vertically)."""
    bar = view.horizontalScrollBar()
    if bar.maximum() > 0:
        height += bar.sizeHint().height()
    if height != view.height() or view.minimumHeight() != height:
        view.setFixedHeight(height)
    if view.verticalScrollBar().value():
        view.verticalScrollBar().setValue(0)
