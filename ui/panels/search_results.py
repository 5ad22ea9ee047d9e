"""What the sidebar's search shows beyond the list of chats: one line on meaning search
(off, loading, indexing N of M, or its model to download) and a row per result (a small
picture, the chat's title, the match, "Use in this chat" for a picture)."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QImage, QPixmap, QResizeEvent
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

THUMB = 48  # the result's picture, in pixels
_FOUND = ("picture", "meaning", "words")


def matches(matched_by) -> str:
    """'picture · words': how a result matched (the row's short line)."""
    return " · ".join(name for name in matched_by if name in _FOUND)


def found_by(matched_by) -> str:
    """'Found by picture · words': how a result matched, in a sentence."""
    how = matches(matched_by)
    return f"Found by {how}" if how else ""


def result_text(result) -> str:
    """A result in words (what a screen reader says, and the row's tooltip)."""
    title = result.conversation_title or "New chat"
    what = "Picture" if result.kind == "image" else "Message"
    how = found_by(result.matched_by)
    return f"{title}\n{what}: {result.snippet}" + (f"\n{how}" if how else "")


class ElidedLabel(QLabel):
    """One line of text, cut with "…" to the width it gets (the full text is its tooltip)."""

    def __init__(self, text: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.setMinimumWidth(20)
        self.full_text = ""
        self.set_full_text(text)

    def set_full_text(self, text: str) -> None:
        self.full_text = " ".join(str(text).split())
        self.setToolTip(self.full_text)
        self._elide()

    def sizeHint(self):  # noqa: N802 - Qt API: the height of one line, whatever the text's length
        hint = super().sizeHint()
        hint.setWidth(20)
        return hint

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802 - Qt API
        super().resizeEvent(event)
        self._elide()

    def _elide(self) -> None:
        width = max(self.width(), 20)
        self.setText(self.fontMetrics().elidedText(self.full_text, Qt.TextElideMode.ElideRight, width))


class ResultRow(QWidget):
    """One search result in the sidebar's list: picture, title, match; "Use in this chat" for a picture."""

    use_requested = Signal(object)  # the SearchResult

    def __init__(self, result, image: QImage | None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("searchResult")
        self.result = result
        self.setToolTip(result_text(result))
        row = QHBoxLayout(self)
        row.setContentsMargins(4, 3, 4, 3)
        row.setSpacing(6)
        self.picture = QLabel()
        self.picture.setObjectName("searchResultPicture")
        self.picture.setFixedSize(THUMB, THUMB)
        self.picture.setAlignment(Qt.AlignmentFlag.AlignCenter)
        if image is not None and not image.isNull():
            self.picture.setPixmap(QPixmap.fromImage(image))
        elif result.kind == "image":  # a picture that could not be read: a grey square holds its place
            blank = QPixmap(THUMB, THUMB)
            blank.fill(Qt.GlobalColor.lightGray)
            self.picture.setPixmap(blank)
        row.addWidget(self.picture, 0, Qt.AlignmentFlag.AlignTop)
        column = QVBoxLayout()
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(1)
        self.title = ElidedLabel(result.conversation_title or "New chat")
        font = self.title.font()
        font.setBold(True)
        self.title.setFont(font)
        self.snippet = ElidedLabel(result.snippet)
        self.snippet.setObjectName("searchResultSnippet")
        column.addWidget(self.title)
        column.addWidget(self.snippet)
        bottom = QHBoxLayout()
        bottom.setContentsMargins(0, 0, 0, 0)
        self.how = ElidedLabel(matches(result.matched_by))
        self.how.setObjectName("searchResultMatch")
        self.how.setToolTip(found_by(result.matched_by))
        self.how.setEnabled(False)  # drawn quieter
        bottom.addWidget(self.how, 1)
        self.use_button: QToolButton | None = None
        if result.kind == "image" and result.image_path:
            self.use_button = QToolButton()
            self.use_button.setObjectName("usePictureButton")
            self.use_button.setText("Use in this chat")
            self.use_button.setAccessibleName("Use this picture in this chat")
            self.use_button.setAccessibleDescription(
                f"Attach the picture from “{result.conversation_title or 'New chat'}” to your next question")
            self.use_button.setToolTip("Attach this picture to your next question in the chat open now")
            self.use_button.setAutoRaise(True)
            self.use_button.clicked.connect(lambda: self.use_requested.emit(self.result))
            bottom.addWidget(self.use_button, 0)
        column.addLayout(bottom)
        row.addLayout(column, 1)


class SearchLine(QWidget):
    """The one quiet line under the search box: meaning search is off / loading / indexing N of M,
    or its model is not downloaded (with a Download offer placed here by the window)."""

    retry_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("searchLine")
        self.setAccessibleName("Search by meaning")
        column = QVBoxLayout(self)
        column.setContentsMargins(0, 0, 6, 0)
        column.setSpacing(2)
        self.label = QLabel()
        self.label.setObjectName("searchStatus")
        self.label.setAccessibleName("Search status")
        self.label.setWordWrap(True)
        self.label.setTextFormat(Qt.TextFormat.PlainText)
        font = self.label.font()
        font.setPointSizeF(max(6.0, font.pointSizeF() * 0.9))
        self.label.setFont(font)
        column.addWidget(self.label)
        self.progress = QProgressBar()
        self.progress.setObjectName("searchProgress")
        self.progress.setAccessibleName("Search indexing progress")
        self.progress.setToolTip("Pictures and messages indexed for search by meaning")
        self.progress.setTextVisible(False)
        self.progress.setMaximumHeight(6)
        self.progress.hide()
        column.addWidget(self.progress)
        self.retry_button = QPushButton("Try again")
        self.retry_button.setObjectName("searchRetryButton")
        self.retry_button.setAccessibleName("Try loading the search model again")
        self.retry_button.setToolTip("Load the image search model again")
        self.retry_button.clicked.connect(self.retry_requested)
        self.retry_button.hide()
        column.addWidget(self.retry_button, 0, Qt.AlignmentFlag.AlignLeft)
        self.offer: QWidget | None = None  # the model's Download offer, while it is not downloaded
        self.hide()

    def set_offer(self, offer: QWidget | None) -> None:
        if self.offer is not None and self.offer is not offer:
            self.offer.hide()
            self.offer.deleteLater()
        self.offer = offer
        if offer is not None:
            self.layout().addWidget(offer)
            offer.show()

    def show_state(self, text: str, tooltip: str = "", progress: tuple[int, int] | None = None,
                   retry: bool = False) -> None:
        """Say ``text`` (empty: hide the line); ``progress``: (done, total), (0, 0) busy."""
        self.label.setText(text)
        self.label.setToolTip(tooltip or text)
        self.label.setVisible(bool(text))
        if progress is None:
            self.progress.hide()
        else:
            done, total = progress
            self.progress.setRange(0, max(total, 0))
            self.progress.setValue(min(done, total) if total else 0)
            self.progress.show()
        self.retry_button.setVisible(retry)
        self.setVisible(bool(text) or self.offer is not None)
