"""What an empty chat shows: what you can do, which model answers, and the main shortcuts."""

from __future__ import annotations

import html
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QEvent
from PySide6.QtWidgets import QFrame, QVBoxLayout, QWidget

from ui.panels.text_view import WrappingText

# (keys, what they do): the window's own shortcuts
SHORTCUTS = (
    ("Enter", "send (Shift+Enter: new line)"),
    ("Ctrl+N", "new chat"),
    ("Ctrl+O", "attach an image"),
    ("Esc", "stop the answer and the voice"),
    ("Space", "hold to talk (when not typing)"),
    ("Ctrl+,", "settings"),
    ("F1", "all shortcuts"),
)

ModelInfo = Callable[[], tuple[str, str]]  # () -> (model name, where it runs)


def model_line(name: str, place: str) -> str:
    """"SmolVLM-256M-Instruct on cpu"; a server's model "on http://…"."""
    short = (Path(name).name or name) if name else "no model chosen"
    return f"{short} on {place}" if place else short


def welcome_html(name: str, place: str) -> str:
    rows = "".join(
        f"<tr><td style='padding-right:12px'><b>{html.escape(keys)}</b></td><td>{html.escape(what)}</td></tr>"
        for keys, what in SHORTCUTS
    )
    return (
        "<h3>Ask anything: type it, show it, or say it.</h3>"
        "<ul>"
        "<li><b>Type</b> a question below and press Enter.</li>"
        "<li><b>Show an image</b>: attach it with Ctrl+O, paste it, or drop it on the window.</li>"
        "<li><b>Show the camera</b>: switch it on at the right; the clearest recent frames go with your question.</li>"
        "<li><b>Talk</b>: hold Space or the Talk button (push-to-talk), or switch on Hands-free "
        "and just speak; Esc stops the answer.</li>"
        "</ul>"
        f"<p><b>Model:</b> {html.escape(model_line(name, place))} "
        "<i>(Models… and Settings… change it)</i></p>"
        f"<p><b>Shortcuts</b></p><table>{rows}</table>"
    )


class Welcome(QFrame):
    """Shown while the chat is empty.  ``model_info`` is asked again whenever the window is
    activated or this is shown, so the model line follows the settings."""

    def __init__(self, model_info: ModelInfo | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("welcome")
        self._model_info = model_info
        layout = QVBoxLayout(self)
        layout.setContentsMargins(14, 8, 14, 10)
        self.text = WrappingText()
        self.text.setObjectName("welcomeText")
        self.text.setAccessibleName("Welcome")
        self.text.setAccessibleDescription("What you can do, the model in use, and the main shortcuts")
        layout.addWidget(self.text)
        self._shown: tuple[str, str] | None = None
        self.refresh()

    def set_model_info(self, model_info: ModelInfo | None) -> None:
        self._model_info = model_info
        self.refresh()

    def refresh(self) -> None:
        info = self._model_info() if self._model_info is not None else ("", "")
        if info != self._shown:
            self._shown = info
            self.text.setHtml(welcome_html(*info))

    def showEvent(self, event: QEvent) -> None:  # noqa: N802 - Qt API
        self.refresh()
        super().showEvent(event)

    def changeEvent(self, event: QEvent) -> None:  # noqa: N802
        if event.type() == QEvent.Type.ActivationChange and self.isVisible():
            self.refresh()  # back from the settings or the Models page
        super().changeEvent(event)
