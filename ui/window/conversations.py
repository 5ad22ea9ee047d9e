"""Saved conversations: reopening one from the sidebar, search, export and import;
and the versions of a message: regenerate a reply, edit a question, ‹ n/m ›.

A part of ``MainWindow`` (``ui/main_window.py``), which it is mixed into: it uses the
window's widgets and bridges as attributes."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Slot
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QFileDialog

from assistant.events import (
    ConversationOpened,
    MessageVersions,
    UserTurn,
    next_turn_id,
)
from assistant.settings import APP_TITLE


class ConversationActions:
    @Slot(object)
    def on_conversation_opened(self, event: ConversationOpened) -> None:
        """Show a saved conversation; the engine already gave the model its history."""
        self.chat.clear()
        for message in event.messages:
            turn_id = message.turn_id  # restored messages never collide with live turns
            if message.role == "user":
                frames = message.meta.get("frames", [])  # camera frames are the last images
                split = len(message.images) - len(frames)
                images = [(image.path.name, QImage(str(image.path))) for image in message.images[:split]]
                widget = self.chat.add_user(turn_id, message.text, images)
                if frames:
                    widget.add_frames([
                        (QImage(str(image.path)), float(f["t"]), float(f["weight"]))
                        for image, f in zip(message.images[split:], frames)
                    ])
            elif message.role == "assistant":
                widget = self.chat.add_assistant(turn_id)
                widget.set_text(message.text)
                if message.status == "stopped" and message.meta.get("interrupted"):
                    widget.finish("stopped", "Interrupted — the app closed while this was being written; "
                                             "the part written is kept.")
                elif message.status == "stopped":
                    widget.finish("stopped", "Stopped — the partial reply is kept.")
                elif message.status == "failed":
                    widget.finish("failed", message.meta.get("error", "This reply failed."))
                else:
                    widget.finish("done")
            if message.role in ("user", "assistant"):
                widget.set_versions(message.version, message.versions)
        self.chat.refresh_actions()
        self.setWindowTitle(f"{event.title} — {APP_TITLE}" if event.title else APP_TITLE)
        at, self._version_focus = self._version_focus, None
        if at is not None and at < len(self.chat.messages):  # ‹ › opened it: the keyboard stays there
            message = self.chat.messages[at]
            self.chat.ensureWidgetVisible(message, 0, 0)
            message.setFocus(Qt.FocusReason.OtherFocusReason)
        else:
            self.prompt.setFocus()

    @Slot(str)
    def search(self, query: str) -> None:
        if query:
            self.bridge.search(query)
        else:
            self.bridge.list_conversations()

    @Slot(int, str)
    def export_conversation(self, conversation_id: int, fmt: str) -> None:
        if fmt == "md":
            folder = QFileDialog.getExistingDirectory(self, "Export chat as Markdown into folder")
            if folder:
                self.bridge.export_conversation(conversation_id, "md", Path(folder))
        else:
            path, _ = QFileDialog.getSaveFileName(self, "Export chat as JSON", "chat.json", "JSON (*.json)")
            if path:
                self.bridge.export_conversation(conversation_id, "json", Path(path))

    @Slot()
    def import_conversation(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Import a chat", "", "JSON (*.json)")
        if path:
            self.bridge.import_conversation(Path(path))

    @Slot(object)
    def on_versions(self, event: MessageVersions) -> None:
        message = self.chat.message(event.role, event.turn_id)
        if message is not None:
            message.set_versions(event.version, event.versions)

    @Slot(object)
    def regenerate(self, reply) -> None:
        """Answer the last question again; the reply shown now stays in the history (‹ ›)."""
        if self.bridge.busy or not self.chat.messages or reply is not self.chat.messages[-1]:
            return  # one reply at a time, and only the last one
        turn_id = next_turn_id()
        self.chat.remove(reply)
        self.chat.add_assistant(turn_id).setFocus(Qt.FocusReason.OtherFocusReason)  # the button went with it
        self.bridge.regenerate(reply.turn_id, turn_id)

    @Slot(object, str)
    def edit_question(self, question, text: str) -> None:
        """Send an edited question: everything after it is replaced by the new answer."""
        if self.bridge.busy or question not in self.chat.messages:
            return
        turn = UserTurn(text)
        old_turn_id = question.turn_id
        self.chat.remove_after(question)
        question.turn_id = turn.id  # the same widget (its images and frames stay) under the new turn
        question.set_text(turn.text)
        question.end_edit()
        self.chat.add_assistant(turn.id)
        self.prompt.setFocus()
        self.bridge.edit(old_turn_id, turn)

    @Slot(object, int)
    def show_version(self, message, step: int) -> None:
        """‹ or ›: show another version of an edited question or a regenerated reply."""
        if self.bridge.busy or message not in self.chat.messages:
            return
        self._version_focus = self.chat.messages.index(message)
        self.bridge.show_version(message.role, message.turn_id, step)
