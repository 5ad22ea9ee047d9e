"""The conversation view: user turns with thumbnails, assistant replies as markdown, notices.

Nothing in it is ever wider than the view: text wraps (anywhere, when a word is
longer than a line), code blocks and too-wide tables scroll sideways inside their
message, thumbnails wrap onto more rows.  An empty chat shows a welcome.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QFrame, QScrollArea, QVBoxLayout, QWidget

from ui.panels.image_viewer import ImageViewer
from ui import theme
from ui.panels.markdown import markdown_to_html
from ui.panels.message import THUMB, MessageWidget, plural, thumbnail
from ui.panels.text_view import WrappingText
from ui.panels.welcome import ModelInfo, Welcome

__all__ = ["THUMB", "ChatView", "MessageWidget", "Notice", "markdown_to_html", "plural", "thumbnail"]



class Notice(QFrame):
    """A note in the conversation (an error, a warning); its text wraps like a message's."""

    def __init__(self, text: str, kind: str = "error") -> None:
        super().__init__()
        self.setObjectName("notice")
        self.setProperty("kind", kind)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setAccessibleName("Warning" if kind == "warning" else "Error" if kind == "error" else "Notice")
        self.setAccessibleDescription(text)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.label = WrappingText()
        self.label.setObjectName("noticeText")
        self.label.set_plain(text)
        layout.addWidget(self.label)

    def text(self) -> str:
        return self.label.text()


class ChatView(QScrollArea):
    regenerate_requested = Signal(object)  # MessageWidget: the last reply, to answer again
    edit_submitted = Signal(object, str)  # MessageWidget (a question) and its new text
    version_requested = Signal(object, int)  # MessageWidget and -1 / +1: show another version

    def __init__(self, parent: QWidget | None = None, model_info: ModelInfo | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("chatView")
        self.setAccessibleName("Conversation")
        self.setWidgetResizable(True)
        # Nothing inside is ever wider than the view; should that ever fail, scrolling beats clipping.
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self._inner = QWidget()
        self._inner.setObjectName("chatInner")
        self._layout = QVBoxLayout(self._inner)
        self._layout.setContentsMargins(12, 12, 12, 12)
        self._layout.setSpacing(10)
        self._layout.addStretch(1)
        self.welcome = Welcome(model_info)
        self._layout.addWidget(self.welcome)
        self.setWidget(self._inner)
        self.messages: list[MessageWidget] = []
        self.notices: list[Notice] = []
        self.viewer: ImageViewer | None = None
        self.show_figures = False
        self.busy = False  # a reply is being written: Edit, Regenerate and ‹ › wait
        self._follow = True
        bar = self.verticalScrollBar()
        bar.valueChanged.connect(self._track_follow)
        bar.rangeChanged.connect(self._keep_at_bottom)
        looks = theme.manager()
        if looks is not None:
            looks.changed.connect(self._restyle)

    def _restyle(self, _mode: str = "") -> None:
        for message in self.messages:
            message.restyle()

    @property
    def content(self) -> QWidget:
        """The widget that holds the conversation (never wider than the viewport)."""
        return self._inner

    def set_model_info(self, model_info: ModelInfo | None) -> None:
        """Where the welcome reads the model in use: () -> (name, where it runs)."""
        self.welcome.set_model_info(model_info)

    def set_show_figures(self, on: bool) -> None:
        """Show or hide every reply's figures line (first word, speed, tokens)."""
        self.show_figures = on
        for message in self.messages:
            message.show_figures(on)

    def _track_follow(self, value: int) -> None:
        bar = self.verticalScrollBar()
        self._follow = value >= bar.maximum() - 24

    def _keep_at_bottom(self, _min: int, maximum: int) -> None:
        if self._follow:
            self.verticalScrollBar().setValue(maximum)

    def _add(self, widget: QWidget) -> None:
        self.welcome.hide()
        self._layout.addWidget(widget)  # the stretch above keeps a short chat at the bottom
        self._follow = True
        QTimer.singleShot(0, self, lambda: self.verticalScrollBar().setValue(self.verticalScrollBar().maximum()))

    def _add_message(self, widget: MessageWidget) -> MessageWidget:
        widget.show_figures(self.show_figures)
        widget.image_requested.connect(self.show_image)
        widget.navigate.connect(lambda step, w=widget: self._navigate(w, step))
        widget.regenerate_requested.connect(lambda w=widget: self.regenerate_requested.emit(w))
        widget.edit_submitted.connect(lambda text, w=widget: self.edit_submitted.emit(w, text))
        widget.version_requested.connect(lambda step, w=widget: self.version_requested.emit(w, step))
        widget.set_actions_enabled(not self.busy)
        self.messages.append(widget)
        self._add(widget)
        self.refresh_actions()
        return widget

    def set_busy(self, busy: bool) -> None:
        """While a reply is being written, Edit, Regenerate and ‹ › are off."""
        self.busy = busy
        for message in self.messages:
            message.set_actions_enabled(not busy)
        self.refresh_actions()

    def refresh_actions(self) -> None:
        """Regenerate is on the last reply only, once it is written."""
        last = self.messages[-1] if self.messages else None
        for message in self.messages:
            message.show_regenerate(message is last and message.role == "assistant" and message.state != "streaming")

    def remove_after(self, widget: QWidget) -> None:
        """Take away every message and notice shown after ``widget`` (a question edited)."""
        at = self._layout.indexOf(widget)
        if at < 0:
            return
        later = [self._layout.itemAt(i).widget() for i in range(at + 1, self._layout.count())]
        for item in later:
            if item in self.messages or item in self.notices:
                self.remove(item)

    def remove(self, widget: QWidget) -> None:
        """Take one message or notice away (a reply regenerated)."""
        if widget in self.messages:
            self.messages.remove(widget)
        elif widget in self.notices:
            self.notices.remove(widget)
        else:
            return
        self._layout.removeWidget(widget)
        widget.hide()
        widget.deleteLater()
        self.refresh_actions()

    def add_user(self, turn_id: int, text: str, images: list[tuple[str, QImage | None]]) -> MessageWidget:
        widget = MessageWidget("user", turn_id, images)
        widget.set_text(text)
        return self._add_message(widget)

    def add_assistant(self, turn_id: int) -> MessageWidget:
        return self._add_message(MessageWidget("assistant", turn_id))

    def add_notice(self, text: str, kind: str = "error") -> Notice:
        notice = Notice(text, kind)
        self.notices.append(notice)
        self._add(notice)
        return notice

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
        self.welcome.show()

    def show_image(self, image: QImage, name: str = "") -> ImageViewer | None:
        """Open ``image`` full size (one viewer at a time)."""
        if image is None or image.isNull():
            return None
        if self.viewer is not None:
            self.viewer.close()
        self.viewer = viewer = ImageViewer(image, name, self.window())
        viewer.finished.connect(lambda _result: self._viewer_gone(viewer))
        viewer.destroyed.connect(lambda _obj=None: self._viewer_gone(viewer))
        self.viewer.show()
        self.viewer.raise_()
        self.viewer.activateWindow()
        return self.viewer

    def _viewer_gone(self, viewer: ImageViewer) -> None:
        if self.viewer is viewer:
            self.viewer = None

    def _navigate(self, widget: MessageWidget, step: int) -> None:
        """Up/Down on a message moves to the one before or after it."""
        if widget not in self.messages:
            return
        index = self.messages.index(widget) + step
        if 0 <= index < len(self.messages):
            target = self.messages[index]
            target.setFocus(Qt.FocusReason.OtherFocusReason)
            self.ensureWidgetVisible(target, 0, 0)
