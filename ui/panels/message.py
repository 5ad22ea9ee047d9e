"""One message of the conversation: who said it, its images or camera frames, its text, and notes.

Also the words these show, as plain functions: a reply's figures ("first word 0.82 s ·
14.1 tokens/s · 120 tokens") and camera frame captions ("0.4 s before the newest ·
weight 27 %", the weights of the frames sent, summing to 100 %).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from PySide6.QtCore import QEvent, QSize, Qt, Signal
from PySide6.QtGui import QFocusEvent, QImage, QKeyEvent, QKeySequence, QPixmap, QTextCursor
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ui.panels.flow_layout import FlowLayout
from ui.panels.text_view import CopyButton, ReplyBody, WrappingText, copy_to_clipboard

THUMB = 96
DESCRIPTION_CHARS = 400  # of a message's text, for screen readers


def plural(count: int, word: str, words: str | None = None) -> str:
    """"1 token", "2 tokens"."""
    return f"{count} {word if count == 1 else (words or word + 's')}"


def figures_text(tokens: int, seconds: float, first_token_seconds: float | None) -> str:
    """A finished reply's figures, or "" when they are unknown.

    The speed is the writing after the first word (the first word's wait is its own figure).
    """
    if not tokens or tokens <= 0 or not _finite(seconds) or seconds <= 0:
        return ""
    parts = []
    first = first_token_seconds if _finite(first_token_seconds) and first_token_seconds >= 0 else None
    if first is not None:
        parts.append(f"first word {first:.2f} s")
    if first is not None and tokens > 1 and seconds > first:
        rate = (tokens - 1) / (seconds - first)
    else:
        rate = tokens / seconds
    parts.append(f"{rate:.1f} tokens/s")
    parts.append(plural(tokens, "token"))
    return " · ".join(parts)


def _finite(value: float | None) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def percent_shares(weights: Sequence[float]) -> list[int]:
    """Whole percentages in proportion to ``weights`` that add up to exactly 100 (largest remainders)."""
    if not weights:
        return []
    clean = [w if _finite(w) and w > 0 else 0.0 for w in weights]
    total = sum(clean)
    if total <= 0:
        clean, total = [1.0] * len(weights), float(len(weights))
    exact = [100.0 * w / total for w in clean]
    shares = [math.floor(x) for x in exact]
    by_remainder = sorted(range(len(exact)), key=lambda i: (-(exact[i] - shares[i]), i))
    for i in by_remainder[: 100 - sum(shares)]:
        shares[i] += 1
    return shares


def frame_captions(times: Sequence[float], weights: Sequence[float], asked_at: float | None = None) -> list[str]:
    """A caption per camera frame sent: when it was taken and its share of the attention.

    Times are on the camera's clock.  With ``asked_at`` (the newest frame when the
    question was asked) the time reads "0.4 s before you asked"; without it, relative
    to the newest frame sent.  The weights shown are of the frames sent, summing to 100 %.
    """
    if not times:
        return []
    reference = asked_at if asked_at is not None else max(times)
    captions = []
    for t, share in zip(times, percent_shares(weights)):
        ago = max(0.0, reference - t)
        if asked_at is not None:
            when = "as you asked" if ago < 0.05 else f"{ago:.1f} s before you asked"
        else:
            when = "the newest" if ago < 0.05 else f"{ago:.1f} s before the newest"
        captions.append(f"{when} · weight {share} %")
    return captions


def thumbnail(image: QImage | None, size: int = THUMB) -> QPixmap:
    if image is None or image.isNull():
        pix = QPixmap(size, size)
        pix.fill(Qt.GlobalColor.lightGray)
        return pix
    return QPixmap.fromImage(image.scaled(size, size, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation))


def _show(widget: QWidget, on: bool) -> None:
    if widget.isHidden() == on:  # only when it changes: this runs for every streamed update
        widget.setVisible(on)


class Thumbnail(QToolButton):
    """A small picture that opens the image full size when clicked (or Enter/Space on it)."""

    def __init__(self, image: QImage | None, name: str, what: str = "Image", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.image = image
        self.name = name
        pixmap = thumbnail(image)
        self.setIcon(pixmap)
        self.setIconSize(pixmap.size())
        self.setAutoRaise(True)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        usable = image is not None and not image.isNull()
        self.setEnabled(usable)
        label = f"{what} {name}".strip()
        self.setToolTip(f"{label} — click to see it full size" if usable else f"{label} could not be read")
        self.setAccessibleName(label)
        self.setAccessibleDescription("Opens the image full size" if usable else "The image could not be read")
        if usable:
            self.setCursor(Qt.CursorShape.PointingHandCursor)

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt API
        return self.iconSize() + QSize(6, 6)


def action_button(text: str, name: str, description: str) -> QToolButton:
    """A small text button on a message (Edit, Regenerate, ‹ ›), named for screen readers."""
    button = QToolButton()
    button.setText(text)
    button.setObjectName("messageAction")
    button.setAutoRaise(True)
    button.setCursor(Qt.CursorShape.PointingHandCursor)
    button.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
    button.setToolTip(description)
    button.setAccessibleName(name)
    button.setAccessibleDescription(description)
    return button


class QuestionEditor(QPlainTextEdit):
    """A question's text being edited in place: Ctrl+Enter sends it, Esc cancels."""

    submitted = Signal()
    cancelled = Signal()

    def event(self, event: QEvent) -> bool:  # noqa: A003 - Qt API
        # Esc and Ctrl+Enter are the window's shortcuts elsewhere (Stop…): here they are the editor's.
        if event.type() == QEvent.Type.ShortcutOverride and self._ours(event):
            event.accept()
            return True
        return super().event(event)

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802 - Qt API
        if event.key() == Qt.Key.Key_Escape:
            self.cancelled.emit()
        elif self._ours(event):
            self.submitted.emit()
        else:
            super().keyPressEvent(event)

    @staticmethod
    def _ours(event: QKeyEvent) -> bool:
        key, mods = event.key(), event.modifiers()
        enter = key in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and bool(mods & Qt.KeyboardModifier.ControlModifier)
        return key == Qt.Key.Key_Escape or enter


class MessageWidget(QFrame):
    """One message.  ``text`` is the raw text (markdown for a reply); ``state`` is streaming/done/stopped/failed."""

    image_requested = Signal(QImage, str)  # a thumbnail was clicked: show this image full size
    navigate = Signal(int)  # Up (-1) or Down (+1) pressed on this message
    regenerate_requested = Signal()  # Regenerate on a reply
    edit_submitted = Signal(str)  # a question edited in place was sent: its new text
    version_requested = Signal(int)  # ‹ (-1) or › (+1): another version of this message

    def __init__(self, role: str, turn_id: int, images: list[tuple[str, QImage | None]] | None = None) -> None:
        super().__init__()
        self.role = role
        self.turn_id = turn_id
        self.text = ""
        self.state = "streaming" if role == "assistant" else "done"
        self.image_names = [name for name, _ in images or []]
        self.frame_captions: list[str] = []
        self.thumbnails: list[Thumbnail] = []
        self.figures_wanted = False
        self.setObjectName(f"{role}Message")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setAccessibleName("Your message" if role == "user" else "Assistant's reply")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 6, 10, 8)
        layout.setSpacing(4)
        top = QHBoxLayout()
        top.setContentsMargins(0, 0, 0, 0)
        self.header = QLabel("You" if role == "user" else "Assistant")
        self.header.setObjectName("messageHeader")
        top.addWidget(self.header)
        # ‹ 1/2 ›: an edited question's or a regenerated reply's versions (shown when there are several).
        what = "question" if role == "user" else "reply"
        self.versions = (1, 1)
        self.actions_enabled = True  # off while a reply is being written
        self.previous_version = action_button("‹", "Previous version", f"Show the previous version of this {what}")
        self.version_label = QLabel()
        self.version_label.setObjectName("versionLabel")
        self.next_version = action_button("›", "Next version", f"Show the next version of this {what}")
        self.previous_version.clicked.connect(lambda: self.version_requested.emit(-1))
        self.next_version.clicked.connect(lambda: self.version_requested.emit(1))
        for widget in (self.previous_version, self.version_label, self.next_version):
            widget.hide()
            top.addWidget(widget)
        top.addStretch(1)
        self.edit_button: QToolButton | None = None
        self.regenerate_button: QToolButton | None = None
        self.editor: QuestionEditor | None = None
        self._edit_row: QWidget | None = None
        self.copy_button: CopyButton | None = None
        if role == "user":
            self.edit_button = action_button(
                "Edit", "Edit question", "Change this question and send it again: everything after it is replaced")
            self.edit_button.clicked.connect(self.begin_edit)
            top.addWidget(self.edit_button)
        else:
            self.regenerate_button = action_button(
                "Regenerate", "Regenerate reply", "Answer the question again (the reply shown now stays, with ‹ ›)")
            self.regenerate_button.clicked.connect(self.regenerate_requested)
            self.regenerate_button.hide()  # only on the last reply (the conversation view decides)
            top.addWidget(self.regenerate_button)
            self.copy_button = CopyButton(lambda: self.text, "Copy reply", "Copy this reply (as markdown) to the clipboard")
            self.copy_button.hide()
            top.addWidget(self.copy_button)
        layout.addLayout(top)
        if images:
            strip = FlowLayout()
            for name, image in images:
                strip.addWidget(self._thumbnail(image, name, "Image"))
            layout.addLayout(strip)
        self.thinking: QLabel | None = None
        self.body: WrappingText | ReplyBody
        if role == "user":
            self.body = WrappingText()
            self.body.setAccessibleName("Your message text")
        else:
            self.body = ReplyBody()
            self.thinking = QLabel("<i>Thinking…</i>")
            self.thinking.setObjectName("thinking")
            layout.addWidget(self.thinking)
        layout.addWidget(self.body)
        self.footer = WrappingText()
        self.footer.setObjectName("messageFooter")
        self.footer.setAccessibleName("Note")
        self.footer.hide()
        layout.addWidget(self.footer)
        self.figures = QLabel()
        self.figures.setObjectName("messageFigures")
        self.figures.setWordWrap(True)
        self.figures.setAccessibleName("Reply figures")
        self.figures.hide()
        layout.addWidget(self.figures)
        self._describe()

    def _thumbnail(self, image: QImage | None, name: str, what: str) -> Thumbnail:
        button = Thumbnail(image, name, what)
        button.setObjectName("thumbnail" if what == "Image" else "frameThumbnail")
        button.clicked.connect(lambda: self.image_requested.emit(button.image, button.name))
        self.thumbnails.append(button)
        return button

    def add_frames(
        self, frames: Sequence[tuple[QImage, float, float]], candidates: int = 0, asked_at: float | None = None
    ) -> None:
        """The camera frames that went with this question: (image, time on the camera's clock, weight).

        Captions say when each was taken and its weight among the frames sent (summing to 100 %).
        """
        if not frames:
            return
        captions = frame_captions([t for _, t, _ in frames], [w for _, _, w in frames], asked_at)
        what = plural(len(frames), "camera frame")
        title = QLabel(f"{what} sent with this question, chosen from {candidates} recent"
                       if candidates > len(frames) else f"{what} sent with this question")
        title.setObjectName("frameCaption")
        title.setWordWrap(True)
        strip = FlowLayout(spacing=8)
        for index, ((image, t, weight), caption) in enumerate(zip(frames, captions)):
            cell = QWidget()
            column = QVBoxLayout(cell)
            column.setContentsMargins(0, 0, 0, 0)
            column.setSpacing(2)
            button = self._thumbnail(image, f"{index + 1} of {len(frames)}", "Camera frame")
            button.setAccessibleDescription(f"{caption}. Opens the frame full size.")
            button.setToolTip(
                f"Taken at {t:.1f} s on the camera's clock.\n"
                f"Attention weight: {caption.rsplit('weight ', 1)[-1]} of the frames sent"
                f" ({weight:.1%} of all frames scored)."
            )
            label = QLabel(caption.replace(" · ", "\n"))
            label.setObjectName("frameCaption")
            label.setWordWrap(True)
            label.setFixedWidth(THUMB + 6)
            column.addWidget(button)
            column.addWidget(label)
            strip.addWidget(cell)
        layout = self.layout()
        at = layout.indexOf(self.body)
        layout.insertWidget(at, title)
        layout.insertLayout(at + 1, strip)
        self.frame_captions = captions

    def set_text(self, text: str) -> None:
        self.text = text
        if isinstance(self.body, WrappingText):
            self.body.set_plain(text)
            _show(self.body, bool(text))
        else:
            self.body.set_markdown(text)
            if self.thinking is not None:
                _show(self.thinking, not text and self.state == "streaming")
            if self.copy_button is not None:
                _show(self.copy_button, bool(text))
        if self.state != "streaming":  # a reply being written is described when it ends
            self._describe()

    def append(self, text: str) -> None:
        self.set_text(self.text + text)

    def restyle(self) -> None:
        """The look changed (light/dark): colours painted into the text follow it."""
        if not isinstance(self.body, WrappingText):
            self.body.restyle()

    def finish(self, state: str, note: str = "") -> None:
        self.state = state
        if self.thinking is not None:
            self.thinking.hide()
        if self.role == "assistant" and not self.text:
            self.body.setVisible(False)
        if note:
            self.footer.set_plain(note)
            self.footer.setProperty("kind", state)
            self.footer.show()
            self.footer.style().unpolish(self.footer)
            self.footer.style().polish(self.footer)
        self._describe()

    def set_figures(self, tokens: int, seconds: float, first_token_seconds: float | None) -> None:
        """The reply's figures (shown when ``show_figures`` is on and they are known)."""
        self.figures.setText(figures_text(tokens, seconds, first_token_seconds))
        self.show_figures(self.figures_wanted)

    def show_figures(self, on: bool) -> None:
        self.figures_wanted = on
        self.figures.setVisible(on and bool(self.figures.text()))

    # -- versions, regenerate, edit ------------------------------------------------------------

    def set_versions(self, version: int, versions: int) -> None:
        """Which version of this message is shown (``version`` of ``versions``, 1-based)."""
        self.versions = (version, versions)
        several = versions > 1
        for widget in (self.previous_version, self.version_label, self.next_version):
            _show(widget, several)
        self.version_label.setText(f"{version}/{versions}")
        self.version_label.setAccessibleName(f"Version {version} of {versions}")
        self._enable_actions()

    def set_actions_enabled(self, on: bool) -> None:
        """Edit, Regenerate and ‹ › are off while a reply is being written."""
        self.actions_enabled = on
        self._enable_actions()

    def show_regenerate(self, on: bool) -> None:
        if self.regenerate_button is not None:
            _show(self.regenerate_button, on)

    def _enable_actions(self) -> None:
        on = self.actions_enabled
        version, versions = self.versions
        self.previous_version.setEnabled(on and version > 1)
        self.next_version.setEnabled(on and version < versions)
        for button in (self.edit_button, self.regenerate_button):
            if button is not None:
                button.setEnabled(on)
        if self._edit_row is not None:
            self._edit_row.findChild(QPushButton, "sendEditButton").setEnabled(on)

    @property
    def editing(self) -> bool:
        return self.editor is not None and not self.editor.isHidden()

    def begin_edit(self) -> None:
        """Make the question's text editable in place (Send, or Ctrl+Enter; Cancel, or Esc)."""
        if self.role != "user":
            return
        if self.editor is None:
            self.editor = QuestionEditor()
            self.editor.setObjectName("questionEditor")
            self.editor.setAccessibleName("Edit your question")
            self.editor.setAccessibleDescription("Ctrl+Enter sends it; Esc cancels. Everything after it is replaced.")
            self.editor.setTabChangesFocus(True)
            self.editor.submitted.connect(self.submit_edit)
            self.editor.cancelled.connect(self.cancel_edit)
            self._edit_row = QWidget()
            row = QHBoxLayout(self._edit_row)
            row.setContentsMargins(0, 0, 0, 0)
            row.addStretch(1)
            cancel = QPushButton("Cancel")
            cancel.setObjectName("cancelEditButton")
            cancel.setAccessibleName("Cancel editing")
            cancel.clicked.connect(self.cancel_edit)
            send = QPushButton("Send")
            send.setObjectName("sendEditButton")
            send.setAccessibleName("Send edited question")
            send.setToolTip("Send the edited question (Ctrl+Enter); everything after it is replaced")
            send.clicked.connect(self.submit_edit)
            row.addWidget(cancel)
            row.addWidget(send)
            layout = self.layout()
            at = layout.indexOf(self.body) + 1
            layout.insertWidget(at, self.editor)
            layout.insertWidget(at + 1, self._edit_row)
            self._enable_actions()
        self.editor.setPlainText(self.text)
        self.editor.setFixedHeight(max(60, min(200, self.body.sizeHint().height() + 24)))
        self.body.hide()
        self.editor.show()
        self._edit_row.show()
        if self.edit_button is not None:
            self.edit_button.hide()
        self.editor.setFocus(Qt.FocusReason.OtherFocusReason)
        self.editor.moveCursor(QTextCursor.MoveOperation.End)

    def submit_edit(self) -> None:
        if self.editor is None or not self.actions_enabled:
            return
        text = self.editor.toPlainText().strip()
        if not text and not self.image_names and not self.frame_captions:
            return  # nothing to send: the editor stays open
        self.edit_submitted.emit(text)

    def cancel_edit(self) -> None:
        self.end_edit()
        self.setFocus(Qt.FocusReason.OtherFocusReason)

    def end_edit(self) -> None:
        if self.editor is None:
            return
        self.editor.hide()
        self._edit_row.hide()
        _show(self.body, bool(self.text))
        if self.edit_button is not None:
            self.edit_button.show()

    def code_blocks(self):
        return self.body.code_blocks() if isinstance(self.body, ReplyBody) else []

    def _describe(self) -> None:
        text = self.text if len(self.text) <= DESCRIPTION_CHARS else self.text[:DESCRIPTION_CHARS] + "…"
        notes = {"streaming": "being written", "stopped": "stopped", "failed": "failed"}
        state = notes.get(self.state, "") if self.role == "assistant" else ""
        self.setAccessibleDescription(" — ".join(filter(None, [state, text])))

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802 - Qt API
        if event.matches(QKeySequence.StandardKey.Copy):
            copy_to_clipboard(self.text)
        elif event.key() in (Qt.Key.Key_Up, Qt.Key.Key_Down) and not event.modifiers():
            self.navigate.emit(-1 if event.key() == Qt.Key.Key_Up else 1)
        else:
            super().keyPressEvent(event)

    def focusInEvent(self, event: QFocusEvent) -> None:  # noqa: N802
        super().focusInEvent(event)
        self.update()

    def focusOutEvent(self, event: QFocusEvent) -> None:  # noqa: N802
        super().focusOutEvent(event)
        self.update()
