"""Saving a reply while it streams, so that a crash or a kill loses at most a moment of it."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from assistant.engine.turns import Engine


class StreamingSave:
    """A reply saved while it streams, so a crash or a kill loses at most a moment of it.

    The first piece adds the message (``in_progress`` in its meta, status "stopped"); then
    the text is rewritten at most once a second or every few hundred characters, each a
    transaction of its own.  The finished reply is written over it (``Engine._save_reply``);
    one left in progress is marked interrupted when the history is next opened.
    """

    EVERY_SECONDS = 1.0
    EVERY_CHARS = 300

    def __init__(self, engine: Engine, conversation: int | None, version_of: int | None = None) -> None:
        """``version_of``: the saved reply this one answers the question again in place of
        (a regenerated reply: saved as its new version), or None (a new reply)."""
        self.engine = engine
        self.conversation = conversation
        self.version_of = version_of
        self.message_id: int | None = None
        self._saved_at = 0.0
        self._saved_chars = 0
        self._chars = 0

    def grew(self, parts: list[str]) -> None:
        if self.conversation is None or self.engine.store is None:
            return
        self._chars += len(parts[-1])
        now = time.monotonic()
        if self.message_id is not None and (
            now - self._saved_at < self.EVERY_SECONDS and self._chars - self._saved_chars < self.EVERY_CHARS
        ):
            return
        text, conversation, version_of = "".join(parts), self.conversation, self.version_of
        if self.message_id is None:
            self.message_id = self.engine._store_call(
                "save the reply",
                lambda s: s.add_version(version_of, text, (), "stopped", {"in_progress": True})
                if version_of is not None
                else s.add_message(conversation, "assistant", text, (), "stopped", {"in_progress": True}),
            )
            if self.message_id is None:
                self.conversation = None  # the store failed (said once): no more tries this turn
        else:
            message_id = self.message_id
            self.engine._store_call("save the reply", lambda s: s.update_message(message_id, text))
        self._saved_at, self._saved_chars = now, self._chars
