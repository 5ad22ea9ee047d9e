"""The search vectors kept in the history database (schema 3, table ``embeddings``).

Each saved image (by SHA-256) and each message's text gets one vector per image search
model.  ``pending`` says what is not embedded yet (a history indexed bit by bit, across
restarts: what was saved stays saved), ``save`` writes vectors, ``load`` reads a model's
vectors of one kind, and ``image_uses`` / ``message_rows`` say where found items are.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from assistant.store.history import HistoryStore

__all__ = ["ImageUse", "MessageRow", "Pending", "VectorTable"]

KINDS = ("image", "text")


@dataclass(frozen=True)
class Pending:
    images: list[tuple[str, str]]  # (sha256, path of its file)
    texts: list[tuple[int, str]]  # (message id, text)


@dataclass(frozen=True)
class ImageUse:
    sha256: str
    path: str
    conversation_id: int
    message_id: int
    conversation_title: str
    created: float


@dataclass(frozen=True)
class MessageRow:
    conversation_id: int
    message_id: int
    conversation_title: str
    role: str
    text: str
    created: float


class VectorTable:
    """Vectors of one model in a ``HistoryStore`` (its connection and locks)."""

    def __init__(self, store: HistoryStore, model: str) -> None:
        self.store = store
        self.model = model

    # -- what is left to do -------------------------------------------------------------------

    def count_pending(self) -> tuple[int, int]:
        """How many images and message texts have no vector yet."""
        with self.store._read("count what search has not indexed") as conn:
            images = conn.execute(
                """SELECT count(*) FROM images i WHERE i.sha256 IN (SELECT sha256 FROM message_images)
                   AND NOT EXISTS (SELECT 1 FROM embeddings e WHERE e.model = ? AND e.kind = 'image'
                                   AND e.item = i.sha256)""",
                (self.model,),
            ).fetchone()[0]
            texts = conn.execute(
                """SELECT count(*) FROM messages m WHERE trim(m.text) != ''
                   AND NOT EXISTS (SELECT 1 FROM embeddings e WHERE e.model = ? AND e.kind = 'text'
                                   AND e.item = CAST(m.id AS TEXT))""",
                (self.model,),
            ).fetchone()[0]
        return int(images), int(texts)

    def count_indexed(self) -> tuple[int, int]:
        with self.store._read("count what search has indexed") as conn:
            rows = dict(conn.execute(
                "SELECT kind, count(*) FROM embeddings WHERE model = ? AND length(vector) > 0 GROUP BY kind",
                (self.model,),
            ).fetchall())
        return int(rows.get("image", 0)), int(rows.get("text", 0))

    def pending(self, limit: int) -> Pending:
        """Up to ``limit`` images and ``limit`` texts without a vector, newest first (the
        conversations a user is most likely to look for are indexed first)."""
        with self.store._read("find what search has not indexed") as conn:
            images = conn.execute(
                """SELECT i.sha256, i.ext, max(mi.message_id) AS newest FROM images i
                   JOIN message_images mi ON mi.sha256 = i.sha256
                   WHERE NOT EXISTS (SELECT 1 FROM embeddings e WHERE e.model = ? AND e.kind = 'image'
                                     AND e.item = i.sha256)
                   GROUP BY i.sha256 ORDER BY newest DESC LIMIT ?""",
                (self.model, int(limit)),
            ).fetchall()
            texts = conn.execute(
                """SELECT m.id, m.text FROM messages m WHERE trim(m.text) != ''
                   AND NOT EXISTS (SELECT 1 FROM embeddings e WHERE e.model = ? AND e.kind = 'text'
                                   AND e.item = CAST(m.id AS TEXT))
                   ORDER BY m.id DESC LIMIT ?""",
                (self.model, int(limit)),
            ).fetchall()
        return Pending(
            [(sha, str(self.store.image_path(sha, ext))) for sha, ext, _ in images],
            [(int(mid), text) for mid, text in texts],
        )

    # -- vectors ------------------------------------------------------------------------------

    def save(self, kind: str, items: Iterable[tuple[str | int, np.ndarray | None]],
             texts: dict[int, str] | None = None) -> int:
        """Store vectors (None: the item could not be embedded; it is not tried again).

        Only for items that still are as they were embedded: an image whose row is gone (its
        chat deleted meanwhile) or a message deleted meanwhile gets none, and nor does a
        message whose text is no longer ``texts[id]`` (a reply still being written).
        Returns how many were written."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}")
        rows = [
            (self.model, kind, str(item), b"" if vector is None else np.asarray(vector, "<f4").tobytes())
            for item, vector in items
        ]
        if not rows:
            return 0
        marks = ",".join("?" * len(rows))
        with self.store._write("save search vectors") as conn:
            if kind == "text":
                now = dict(conn.execute(f"SELECT id, text FROM messages WHERE id IN ({marks})",
                                        [int(r[2]) for r in rows]))
                rows = [r for r in rows if int(r[2]) in now
                        and (texts is None or texts.get(int(r[2])) == now[int(r[2])])]
            else:
                alive = {sha for (sha,) in conn.execute(f"SELECT sha256 FROM images WHERE sha256 IN ({marks})",
                                                        [r[2] for r in rows])}
                rows = [r for r in rows if r[2] in alive]
            conn.executemany("INSERT OR REPLACE INTO embeddings(model, kind, item, vector) VALUES (?, ?, ?, ?)", rows)
        return len(rows)

    def load(self, kind: str, dim: int) -> tuple[list[str], np.ndarray]:
        """Every stored vector of ``kind`` for this model: (items, matrix n x dim), skipping
        items that could not be embedded and vectors of another size (a folder that now
        holds another model: those are embedded again)."""
        with self.store._read("read search vectors") as conn:
            rows = conn.execute(
                "SELECT item, vector FROM embeddings WHERE kind = ? AND model = ? AND length(vector) > 0",
                (kind, self.model),
            ).fetchall()
        wrong = [item for item, blob in rows if len(blob) != 4 * dim]
        if wrong:
            with self.store._write("drop search vectors of another size") as conn:
                conn.executemany("DELETE FROM embeddings WHERE kind = ? AND item = ? AND model = ?",
                                 [(kind, item, self.model) for item in wrong])
            rows = [(item, blob) for item, blob in rows if len(blob) == 4 * dim]
        if not rows:
            return [], np.zeros((0, dim), np.float32)
        items = [item for item, _ in rows]
        matrix = np.frombuffer(b"".join(blob for _, blob in rows), "<f4").reshape(len(rows), dim)
        return items, matrix

    # -- where found items are ------------------------------------------------------------------

    def image_uses(self, sha256s: Sequence[str]) -> dict[str, ImageUse]:
        """For each image, the newest message that shows it (with its conversation)."""
        if not sha256s:
            return {}
        found: dict[str, ImageUse] = {}
        with self.store._read("find where pictures were shown") as conn:
            for start in range(0, len(sha256s), 500):
                chunk = list(sha256s[start : start + 500])
                rows = conn.execute(
                    f"""SELECT mi.sha256, i.ext, m.conversation_id, m.id, c.title, m.created
                        FROM message_images mi JOIN messages m ON m.id = mi.message_id
                        JOIN images i ON i.sha256 = mi.sha256
                        JOIN conversations c ON c.id = m.conversation_id
                        WHERE mi.sha256 IN ({','.join('?' * len(chunk))})
                        ORDER BY m.id DESC""",
                    chunk,
                ).fetchall()
                for sha, ext, conv_id, mid, title, created in rows:
                    if sha not in found:
                        found[sha] = ImageUse(sha, str(self.store.image_path(sha, ext)), conv_id, mid, title, created)
        return found

    def message_rows(self, message_ids: Sequence[int]) -> dict[int, MessageRow]:
        if not message_ids:
            return {}
        found: dict[int, MessageRow] = {}
        with self.store._read("find messages") as conn:
            for start in range(0, len(message_ids), 500):
                chunk = [int(m) for m in message_ids[start : start + 500]]
                for conv_id, mid, title, role, text, created in conn.execute(
                    f"""SELECT m.conversation_id, m.id, c.title, m.role, m.text, m.created
                        FROM messages m JOIN conversations c ON c.id = m.conversation_id
                        WHERE m.id IN ({','.join('?' * len(chunk))})""",
                    chunk,
                ):
                    found[mid] = MessageRow(conv_id, mid, title, role, text, created)
        return found
