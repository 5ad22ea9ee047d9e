"""The chat history: every question and reply saved as it goes; conversations opened,
renamed, deleted, exported, imported, searched; versions of edited and regenerated messages."""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from assistant.encoders.images import decode_image, read_image_bytes
from assistant.engine.said import Said, model_context, with_view_labels
from assistant.errors import BadInputError, HistoryError
from assistant.events import (
    ConversationOpened,
    ConversationsListed,
    ErrorEvent,
    ErrorKind,
    MessageVersions,
    SearchResults,
    State,
    UserTurn,
)
from assistant.generators.base import ChatMessage, GeneratorBackend
from assistant.store.records import describe_storage_error

if TYPE_CHECKING:
    from assistant.store.history import HistoryStore

log = logging.getLogger(__name__)
T = TypeVar("T")


class SavedConversations:
    """The engine's side of the history (a part of ``Engine``; runs in the pipeline thread).
    A store that fails is reported once and never stops a turn."""

    store: HistoryStore | None
    conversation_id: int | None
    chat: list[ChatMessage]
    _said: list[Said]
    _store_warned: bool
    backend: GeneratorBackend | None

    def _store_call(self, what: str, write: Callable[[HistoryStore], T]) -> T | None:
        """One call to the store; a failure is reported once and never stops a turn."""
        if self.store is None:
            return None
        try:
            return write(self.store)
        except (HistoryError, sqlite3.Error, OSError) as exc:
            # An expected failure (a full disk): one line in the log, the traceback only when debugging.
            log.warning("history: could not %s: %s", what, exc, exc_info=log.isEnabledFor(logging.DEBUG))
            if not self._store_warned:
                self._store_warned = True
                reason = exc.reason if isinstance(exc, HistoryError) else describe_storage_error(exc)
                self._emit(ErrorEvent(f"Chat history: could not {what}: {reason}. What is on screen stays, "
                                      "but this conversation may not be saved.", ErrorKind.HISTORY))
            return None

    def list_conversations(self) -> None:
        if self.store is not None:
            items = self._store_call("list conversations", lambda s: s.list_conversations()) or []
            self._emit(ConversationsListed(tuple(items), self.conversation_id))

    def open_conversation(self, conversation_id: int) -> bool:
        """Make a saved conversation the current one: the model sees its history from now on."""
        if self.store is None:
            return False
        summary = self._store_call("open a conversation", lambda s: s.get_conversation(conversation_id))
        stored = self._store_call("open a conversation", lambda s: s.messages(conversation_id))
        if summary is None or stored is None:
            self._emit(ErrorEvent("That conversation could not be opened.", ErrorKind.HISTORY))
            return False
        said: list[Said] = []
        for message in stored:
            if message.role not in ("user", "assistant"):
                continue
            images = []
            for image in message.images:
                try:
                    images.append(decode_image(image.path.read_bytes(), image.path.name))
                except (OSError, BadInputError):
                    log.warning("history: image %s of message %s is missing", image.sha256, message.id)
            text = with_view_labels(message.text, message.meta) if message.role == "user" else message.text
            said.append(Said(message.role, message.turn_id, ChatMessage(message.role, text, tuple(images)),
                              message.id, failed=message.role == "assistant" and message.status == "failed"))
        self._said = said
        self.chat = model_context(said)
        self.conversation_id = conversation_id
        self._emit(ConversationOpened(conversation_id, summary.title, tuple(stored)))
        return True

    def rename_conversation(self, conversation_id: int, title: str) -> None:
        self._store_call("rename", lambda s: s.rename_conversation(conversation_id, title))
        self.list_conversations()

    def delete_conversation(self, conversation_id: int) -> None:
        self._store_call("delete", lambda s: s.delete_conversation(conversation_id))
        if conversation_id == self.conversation_id:
            self.new_chat()
            self._emit(ConversationOpened(None, "", ()))
        self.list_conversations()

    def export_conversation(self, conversation_id: int, fmt: str, destination: Path) -> Path | None:
        """Write a conversation as Markdown (a folder: .md plus images/) or JSON (a file)."""
        from assistant.files import atomic_write
        from assistant.store.export import export_json, export_markdown

        def write(store: HistoryStore) -> Path:
            if fmt == "md":
                return export_markdown(store, conversation_id, destination)
            atomic_write(destination, json.dumps(export_json(store, conversation_id), ensure_ascii=False, indent=1).encode())
            return destination

        path = self._store_call("export", write)
        if path is not None:
            self._status(State.READY if self.backend else State.UNLOADED, f"Exported to {path}")
        return path

    def import_conversation(self, source: Path) -> int | None:
        from assistant.store.export import import_json

        try:
            data = json.loads(source.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            self._emit(ErrorEvent(f"'{source.name}' could not be imported: {exc}", ErrorKind.HISTORY))
            return None
        try:
            conversation_id = import_json(self.store, data) if self.store is not None else None
        except HistoryError as exc:
            self._emit(ErrorEvent(f"'{source.name}' could not be imported: {exc}", ErrorKind.HISTORY))
            return None
        if conversation_id is not None:
            self.list_conversations()
            self.open_conversation(conversation_id)
        return conversation_id

    def search(self, query: str) -> None:
        hits = self._store_call("search", lambda s: s.search(query)) if query.strip() else []
        self._emit(SearchResults(query, tuple(hits or ())))

    def show_version(self, role: str, turn_id: int, step: int) -> bool:
        """Show the previous (``step`` -1) or next (+1) version of the message shown under
        ``turn_id``: the conversation is opened again with it (``ConversationOpened``), and
        what followed that version when it was shown follows it again.  The model's context
        is the conversation shown.  False (and an error event) when there is no such version."""
        entry = next((s for s in self._said if s.role == role and s.turn_id == turn_id), None)
        conversation = self.conversation_id
        if entry is None or entry.stored_id is None or conversation is None or self.store is None:
            self._emit(ErrorEvent("That message has no other versions.", ErrorKind.HISTORY))
            return False
        stored_id = entry.stored_id
        versions = self._store_call("read the versions", lambda s: s.versions(stored_id)) or []
        index = versions.index(stored_id) + step if stored_id in versions else -1
        if not 0 <= index < len(versions):
            self._emit(ErrorEvent("That message has no other versions.", ErrorKind.HISTORY))
            return False
        self._store_call("choose the version", lambda s: s.select_version(versions[index]))
        return self.open_conversation(conversation)

    def _announce_versions(self, turn_id: int, role: str, stored_id: int | None) -> None:
        if stored_id is None:
            return
        versions = self._store_call("read the versions", lambda s: s.versions(stored_id)) or []
        if stored_id in versions:
            self._emit(MessageVersions(turn_id, role, versions.index(stored_id) + 1, len(versions)))

    def save_unanswered(self, turn: UserTurn, reason: str) -> None:
        """A question that could not be asked at all (its model or server could not be loaded):
        kept in the history with a failed reply that says why, so asking again is one click away."""
        try:
            encoded = [read_image_bytes(image) for image in turn.images]
        except BadInputError:
            encoded = []
        if self.conversation_id is None:
            self.conversation_id = self._store_call("start a conversation", lambda s: s.create_conversation())
        conversation = self.conversation_id
        if conversation is not None:
            self._store_call("save the question", lambda s: s.add_message(conversation, "user", turn.text, encoded))
            self._save_reply(conversation, "", "failed", reason)

    def _save_reply(
        self, conversation: int | None, text: str, status: str, error: str = "", message_id: int | None = None,
        version_of: int | None = None,
    ) -> int | None:
        """The reply, finished: written over what was saved while it streamed (``message_id``), or
        added (as a new version of the saved reply ``version_of``, when given); returns its id."""
        if conversation is None:
            return None
        meta = {"error": error} if error else {}
        if message_id is not None:
            self._store_call("save the reply", lambda s: s.update_message(message_id, text, status, meta))
        elif version_of is not None:
            message_id = self._store_call("save the reply", lambda s: s.add_version(version_of, text, (), status, meta))
        else:
            message_id = self._store_call(
                "save the reply", lambda s: s.add_message(conversation, "assistant", text, (), status, meta))
        self.list_conversations()  # its "updated" time moved: the sidebar order changes
        return message_id

