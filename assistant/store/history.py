"""The conversation store: every chat, message and image, kept in SQLite.

Layout under the app's data folder (see :func:`open_history`)::

    history.sqlite3            conversations, messages, image index, full-text index
    images/ab/<sha256>.<ext>   each distinct image once, named by its content

Durability: the database runs in WAL mode with ``synchronous=NORMAL`` and every
write method is one transaction, committed before it returns.  A crash or a
``kill -9`` of the app loses nothing that a write method had returned from (a
power cut may lose the last moment of writes, never corrupt the file).  An
image file is written (temp file + ``os.replace``) inside the transaction that
references it, so a committed message never points at a missing file; one
left behind by a crash or a failed save is removed by :meth:`HistoryStore.prune_images`
once it is an hour old (the window does this at start, in its reader thread).
A damaged file is set aside and what can still be read of it is salvaged into
a new history (:func:`open_history`, ``salvage.py``).

Threads: a ``HistoryStore`` may be used from any thread; its methods are
serialised by a lock, so one object shared by several threads is safe but they
take turns.  For reads that must not wait behind the pipeline's writes (the
GUI's sidebar), open a second ``HistoryStore`` on the same file: WAL lets its
readers run while the other connection writes, and writers wait for each other
(``busy_timeout``) instead of failing.

Search by words: ``word_search.py``.

Every failure is a :class:`HistoryError` whose message can be shown to a user.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import stat
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from assistant.errors import HistoryError
from assistant.files import atomic_write
from assistant.store.records import (
    ROLES,
    STATUSES,
    ConversationSummary,
    SearchHit,
    StoredImage,
    StoredMessage,
    check_role,
    check_status,
    check_text,
    derive_title,
    describe_os_error,
    describe_sqlite_error,
    dump_meta,
    load_meta,
    PreparedImage,
    prepare_image,
)
from assistant.store import word_search
from assistant.store.salvage import SQLITE_MAGIC, set_aside_and_salvage
from assistant.store.schema import MIGRATIONS, SCHEMA_VERSION

log = logging.getLogger(__name__)

__all__ = [
    "ConversationSummary",
    "HistoryCorruptError",
    "HistoryError",
    "HistoryStore",
    "ROLES",
    "SCHEMA_VERSION",
    "STATUSES",
    "SearchHit",
    "StoredImage",
    "StoredMessage",
    "derive_title",
    "open_history",
]

DB_NAME = "history.sqlite3"
IMAGES_DIR_NAME = "images"
BUSY_TIMEOUT_S = 10.0
IMAGE_GRACE_S = 3600.0  # prune_images spares image files younger than this
PRUNE_LIMIT = 1000  # image files prune_images removes at most per call

# SQLite's primary result codes that mean "this file is damaged or not ours".
_SQLITE_CORRUPT = 11
_SQLITE_NOTADB = 26


class HistoryCorruptError(HistoryError):
    """The database file is damaged or is not a database (``open_history`` sets it aside)."""


def _is_corruption(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (_SQLITE_CORRUPT, _SQLITE_NOTADB)
    text = str(exc).lower()
    return "not a database" in text or "malformed" in text


def current_branch(rows: Sequence[tuple[int, int | None, int]]) -> list[tuple[int, int, int]]:
    """Of a conversation's message tree, given as (id, parent id, chosen) rows in id order,
    the branch shown: from the first message, the chosen one of each set of siblings (the
    newest when none is marked), as (id, version, versions) with version 1-based."""
    ids = {row[0] for row in rows}
    children: dict[int | None, list[tuple[int, int]]] = {}
    for mid, parent, chosen in rows:
        children.setdefault(parent if parent in ids else None, []).append((mid, chosen))
    branch: list[tuple[int, int, int]] = []
    seen: set[int] = set()
    parent: int | None = None
    while parent in children:
        siblings = children[parent]
        index = next((i for i in range(len(siblings) - 1, -1, -1) if siblings[i][1]), len(siblings) - 1)
        mid = siblings[index][0]
        if mid in seen:  # a damaged file's loop
            break
        seen.add(mid)
        branch.append((mid, index + 1, len(siblings)))
        parent = mid
    return branch


# -- the store --------------------------------------------------------------------------------


class HistoryStore:
    """Conversations, messages and images in one SQLite file plus an image folder."""

    def __init__(self, path: Path, images_dir: Path, *, busy_timeout: float = BUSY_TIMEOUT_S) -> None:
        self.path = Path(path)
        self.images_dir = Path(images_dir)
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "rb") as fh:
                header = fh.read(len(SQLITE_MAGIC))
        except FileNotFoundError:
            header = b""
        except OSError as exc:
            raise HistoryError(f"The conversation history {self.path} could not be opened: {describe_os_error(exc)}.") from None
        if header and header != SQLITE_MAGIC:
            # Decided before SQLite opens it: SQLite would delete the -wal/-shm files on close.
            raise HistoryCorruptError(f"The conversation history {self.path.name} is not a database.")
        try:
            conn = sqlite3.connect(
                str(self.path), timeout=busy_timeout, isolation_level=None, check_same_thread=False
            )
        except (OSError, sqlite3.Error) as exc:
            raise HistoryError(f"The conversation history {self.path} could not be opened: {describe_os_error(exc)}.") from None
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            # Read the version before changing anything: a newer app's file is left as it is.
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise HistoryError(
                    f"The conversation history {self.path.name} was written by a newer version of this app "
                    f"(schema {version}, this version knows up to {SCHEMA_VERSION}); it was left untouched. "
                    "Update the app, or use another data folder."
                )
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                log.warning("history: journal mode is %s, not WAL", mode)
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
            word_search.register(conn)
            self._migrate(conn)
        except HistoryError:
            conn.close()
            raise
        except sqlite3.Error as exc:
            conn.close()
            if _is_corruption(exc):
                raise HistoryCorruptError(
                    f"The conversation history {self.path.name} is damaged or is not a database ({exc})."
                ) from None
            raise HistoryError(f"The conversation history {self.path} could not be opened: {describe_sqlite_error(exc)}.") from None
        self._conn = conn

    # -- plumbing ----------------------------------------------------------------------------

    @staticmethod
    def _migrate(conn: sqlite3.Connection) -> None:
        for target, statements in enumerate(MIGRATIONS, start=1):
            if conn.execute("PRAGMA user_version").fetchone()[0] >= target:
                continue
            conn.execute("BEGIN IMMEDIATE")
            try:
                # Another process may have migrated while we waited for the lock.
                if conn.execute("PRAGMA user_version").fetchone()[0] < target:
                    for statement in statements:
                        conn.execute(statement)
                    conn.execute(f"PRAGMA user_version = {target}")
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            log.info("history: schema migrated to version %d", target)

    @contextlib.contextmanager
    def _guard(self, action: str) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if self._conn is None:
                raise HistoryError("The conversation history is closed.")
            try:
                yield self._conn
            except sqlite3.Error as exc:
                if _is_corruption(exc):
                    raise HistoryCorruptError(f"Could not {action}: the history database is damaged ({exc}).") from exc
                reason = describe_sqlite_error(exc)
                raise HistoryError(f"Could not {action}: {reason}.", reason) from exc
            except OSError as exc:
                reason = describe_os_error(exc)
                raise HistoryError(f"Could not {action}: {reason}.", reason) from exc

    @contextlib.contextmanager
    def _transaction(self, action: str, write: bool) -> Iterator[sqlite3.Connection]:
        with self._guard(action) as conn:
            conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                raise

    def _write(self, action: str):
        return self._transaction(action, write=True)

    def _read(self, action: str):
        return self._transaction(action, write=False)

    def image_path(self, sha256: str, ext: str) -> Path:
        return self.images_dir / sha256[:2] / f"{sha256}.{ext}"

    def _put_image(self, conn: sqlite3.Connection, image: PreparedImage) -> None:
        """Store ``image`` once (inside the caller's write transaction)."""
        row = conn.execute("SELECT ext FROM images WHERE sha256 = ?", (image.sha256,)).fetchone()
        ext = row[0] if row else image.ext
        path = self.image_path(image.sha256, ext)
        try:
            present = path.stat().st_size == len(image.data)
        except FileNotFoundError:
            present = False
        if not present:  # new, or repair a file that went missing
            atomic_write(path, image.data)
        if row is None:
            conn.execute(
                "INSERT INTO images (sha256, ext, bytes) VALUES (?, ?, ?)", (image.sha256, ext, len(image.data))
            )

    def _insert_message(
        self,
        conn: sqlite3.Connection,
        conv_id: int,
        role: str,
        text: str,
        status: str,
        created: float,
        meta_json: str,
        images: Sequence[PreparedImage],
        parent_id: int | None = None,
    ) -> int:
        for image in images:
            self._put_image(conn, image)
        cur = conn.execute(
            "INSERT INTO messages (conversation_id, role, text, status, created, meta, parent_id)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (conv_id, role, text, status, created, meta_json, parent_id),
        )
        message_id = int(cur.lastrowid)
        conn.executemany(
            "INSERT INTO message_images (message_id, position, sha256) VALUES (?, ?, ?)",
            [(message_id, i, image.sha256) for i, image in enumerate(images)],
        )
        return message_id

    @staticmethod
    def _branch(conn: sqlite3.Connection, conv_id: int) -> list[tuple[int, int, int]]:
        """The conversation as shown: (id, version, versions) of each chosen message, in order."""
        rows = conn.execute(
            "SELECT id, parent_id, chosen FROM messages WHERE conversation_id = ? ORDER BY id", (conv_id,)
        ).fetchall()
        return current_branch(rows)

    def _quick_check(self) -> str:
        with self._guard("check the history database") as conn:
            rows = conn.execute("PRAGMA quick_check").fetchall()
        result = "; ".join(str(r[0]) for r in rows[:5])
        return result

    # -- conversations -----------------------------------------------------------------------

    def create_conversation(self, title: str = "") -> int:
        title = " ".join(check_text(title).split())
        now = time.time()
        with self._write("create a conversation") as conn:
            cur = conn.execute(
                "INSERT INTO conversations (title, created, updated) VALUES (?, ?, ?)", (title, now, now)
            )
            return int(cur.lastrowid)

    def list_conversations(self) -> list[ConversationSummary]:
        """Every conversation, the most recently updated first (the sidebar)."""
        with self._read("list conversations") as conn:
            rows = conn.execute(
                """SELECT c.id, c.title, c.created, c.updated,
                          (SELECT count(*) FROM messages m WHERE m.conversation_id = c.id)
                   FROM conversations c ORDER BY c.updated DESC, c.id DESC"""
            ).fetchall()
        return [ConversationSummary(*row) for row in rows]

    def get_conversation(self, conv_id: int) -> ConversationSummary | None:
        with self._read("read a conversation") as conn:
            row = conn.execute(
                """SELECT c.id, c.title, c.created, c.updated,
                          (SELECT count(*) FROM messages m WHERE m.conversation_id = c.id)
                   FROM conversations c WHERE c.id = ?""",
                (conv_id,),
            ).fetchone()
        return ConversationSummary(*row) if row else None

    def last_conversation_id(self) -> int | None:
        """The most recently updated conversation, or None when there is none."""
        with self._read("find the last conversation") as conn:
            row = conn.execute("SELECT id FROM conversations ORDER BY updated DESC, id DESC LIMIT 1").fetchone()
        return int(row[0]) if row else None

    def rename_conversation(self, conv_id: int, title: str) -> None:
        title = " ".join(check_text(title).split())
        with self._write("rename the conversation") as conn:
            cur = conn.execute("UPDATE conversations SET title = ? WHERE id = ?", (title, conv_id))
            if cur.rowcount == 0:
                raise HistoryError(f"Conversation {conv_id} does not exist.")

    def delete_conversation(self, conv_id: int) -> bool:
        """Delete a conversation and its messages; image files nothing else uses are removed.

        Returns False when there was no such conversation.
        """
        moved: list[tuple[Path, Path]] = []  # (aside, original): put back if the transaction fails
        try:
            with self._write("delete the conversation") as conn:
                shas = [
                    r[0]
                    for r in conn.execute(
                        """SELECT DISTINCT mi.sha256 FROM message_images mi
                           JOIN messages m ON m.id = mi.message_id WHERE m.conversation_id = ?""",
                        (conv_id,),
                    )
                ]
                if conn.execute("DELETE FROM conversations WHERE id = ?", (conv_id,)).rowcount == 0:
                    return False
                for sha in shas:
                    if conn.execute("SELECT 1 FROM message_images WHERE sha256 = ? LIMIT 1", (sha,)).fetchone():
                        continue  # another conversation still shows it
                    row = conn.execute("SELECT ext FROM images WHERE sha256 = ?", (sha,)).fetchone()
                    if row is None:
                        continue
                    conn.execute("DELETE FROM images WHERE sha256 = ?", (sha,))
                    path = self.image_path(sha, row[0])
                    aside = path.with_name(path.name + ".deleting")
                    try:
                        os.replace(path, aside)
                    except FileNotFoundError:
                        continue
                    moved.append((aside, path))
        except BaseException:
            for aside, path in moved:
                with contextlib.suppress(OSError):
                    os.replace(aside, path)
            raise
        for aside, _ in moved:
            with contextlib.suppress(OSError):
                aside.unlink()
        return True

    # -- messages ----------------------------------------------------------------------------

    def add_message(
        self,
        conv_id: int,
        role: str,
        text: str,
        images: Sequence[bytes] = (),
        status: str = "complete",
        meta: dict[str, Any] | None = None,
    ) -> int:
        """Save one message (committed when this returns) and return its id.

        ``images`` are encoded image files (PNG, JPEG, WebP...); each distinct one is
        stored once.  The first user message gives an untitled conversation its title.
        """
        check_role(role)
        check_status(status)
        text = check_text(text)
        meta_json = dump_meta(meta)
        if isinstance(images, (bytes, bytearray, memoryview)):
            raise HistoryError("add_message takes a sequence of images, not one bytes object.")
        prepared = [prepare_image(data) for data in images]
        now = time.time()
        with self._write("save the message") as conn:
            row = conn.execute("SELECT title FROM conversations WHERE id = ?", (conv_id,)).fetchone()
            if row is None:
                raise HistoryError(f"Conversation {conv_id} does not exist.")
            branch = self._branch(conn, conv_id)
            parent = branch[-1][0] if branch else None  # after the last message shown
            message_id = self._insert_message(conn, conv_id, role, text, status, now, meta_json, prepared, parent)
            title = row[0]
            if not title and role == "user":
                title = derive_title(text, has_images=bool(prepared))
            conn.execute(
                "UPDATE conversations SET updated = max(updated, ?), title = ? WHERE id = ?", (now, title, conv_id)
            )
        return message_id

    def add_version(
        self,
        message_id: int,
        text: str,
        images: Sequence[bytes] | None = None,
        status: str = "complete",
        meta: dict[str, Any] | None = None,
    ) -> int:
        """Save a new version of a message (an edited question, a regenerated reply) and return its id.

        It takes the old one's place in the conversation and is shown from now on; the old
        one, and everything that followed it, stay as they were, shown again by
        ``select_version``.  ``images`` None: the old version's images stay attached;
        ``meta`` None: the old version's meta (the camera frames a question was sent with).
        """
        check_status(status)
        text = check_text(text)
        meta_json = dump_meta(meta) if meta is not None else None
        if isinstance(images, (bytes, bytearray, memoryview)):
            raise HistoryError("add_version takes a sequence of images, not one bytes object.")
        prepared = [prepare_image(data) for data in images] if images is not None else []
        now = time.time()
        with self._write("save the new version") as conn:
            row = conn.execute(
                "SELECT conversation_id, role, parent_id, meta FROM messages WHERE id = ?", (message_id,)
            ).fetchone()
            if row is None:
                raise HistoryError(f"Message {message_id} does not exist.")
            conv_id, role, parent, old_meta = row
            conn.execute(
                "UPDATE messages SET chosen = 0 WHERE conversation_id = ? AND parent_id IS ?", (conv_id, parent)
            )
            new_id = self._insert_message(
                conn, conv_id, role, text, status, now, old_meta if meta_json is None else meta_json, prepared, parent
            )
            if images is None:
                conn.execute(
                    "INSERT INTO message_images (message_id, position, sha256)"
                    " SELECT ?, position, sha256 FROM message_images WHERE message_id = ?",
                    (new_id, message_id),
                )
            conn.execute("UPDATE conversations SET updated = max(updated, ?) WHERE id = ?", (now, conv_id))
        return new_id

    def versions(self, message_id: int) -> list[int]:
        """The ids of a message's versions, itself included, oldest first ([] for an unknown id)."""
        with self._read("read the versions") as conn:
            row = conn.execute("SELECT conversation_id, parent_id FROM messages WHERE id = ?", (message_id,)).fetchone()
            if row is None:
                return []
            rows = conn.execute(
                "SELECT id FROM messages WHERE conversation_id = ? AND parent_id IS ? ORDER BY id", row
            ).fetchall()
        return [r[0] for r in rows]

    def select_version(self, message_id: int) -> None:
        """Show this version of a message from now on (with what followed it when it was shown)."""
        with self._write("choose the version") as conn:
            row = conn.execute("SELECT conversation_id, parent_id FROM messages WHERE id = ?", (message_id,)).fetchone()
            if row is None:
                raise HistoryError(f"Message {message_id} does not exist.")
            conn.execute(
                "UPDATE messages SET chosen = (id = ?) WHERE conversation_id = ? AND parent_id IS ?",
                (message_id, *row),
            )

    def update_message(
        self, message_id: int, text: str | None = None, status: str | None = None, meta: dict[str, Any] | None = None
    ) -> None:
        """Change a saved message's text, status and/or meta (a reply that grew, stopped or failed)."""
        if text is not None:
            text = check_text(text)
        if status is not None:
            check_status(status)
        meta_json = dump_meta(meta) if meta is not None else None
        with self._write("update the message") as conn:
            row = conn.execute("SELECT conversation_id FROM messages WHERE id = ?", (message_id,)).fetchone()
            if row is None:
                raise HistoryError(f"Message {message_id} does not exist.")
            if text is None and status is None and meta_json is None:
                return
            conn.execute(
                "UPDATE messages SET text = coalesce(?, text), status = coalesce(?, status), meta = coalesce(?, meta) "
                "WHERE id = ?",
                (text, status, meta_json, message_id),
            )
            conn.execute(
                "UPDATE conversations SET updated = max(updated, ?) WHERE id = ?", (time.time(), row[0])
            )

    def mark_interrupted(self) -> int:
        """Replies left being written when the app ended (killed, crashed, powered off) are
        marked interrupted: kept as stopped, with ``meta["interrupted"]``.  Returns how many."""
        with self._write("recover interrupted replies") as conn:
            rows = conn.execute(
                "SELECT id, meta FROM messages WHERE meta LIKE '%\"in_progress\":true%'"
            ).fetchall()
            for message_id, raw in rows:
                meta = load_meta(raw, message_id)
                meta.pop("in_progress", None)
                meta["interrupted"] = True
                conn.execute("UPDATE messages SET status = 'stopped', meta = ? WHERE id = ?", (dump_meta(meta), message_id))
        return len(rows)

    def messages(self, conv_id: int) -> list[StoredMessage]:
        """A conversation's messages in the order they were said, as shown: of each message
        with versions, the one chosen ([] for an unknown id)."""
        with self._read("load the conversation") as conn:
            branch = {mid: (version, versions) for mid, version, versions in self._branch(conn, conv_id)}
            rows = [
                row
                for row in conn.execute(
                    "SELECT id, role, text, status, created, meta FROM messages WHERE conversation_id = ? ORDER BY id",
                    (conv_id,),
                )
                if row[0] in branch
            ]
            image_rows = conn.execute(
                """SELECT mi.message_id, mi.sha256, i.ext FROM message_images mi
                   JOIN messages m ON m.id = mi.message_id
                   JOIN images i ON i.sha256 = mi.sha256
                   WHERE m.conversation_id = ? ORDER BY mi.message_id, mi.position""",
                (conv_id,),
            ).fetchall()
        images: dict[int, list[StoredImage]] = {}
        for message_id, sha, ext in image_rows:
            images.setdefault(message_id, []).append(StoredImage(sha, self.image_path(sha, ext)))
        return [
            StoredMessage(
                id=mid,
                role=role,
                text=text,
                status=status,
                created=created,
                meta=load_meta(meta, mid),
                images=tuple(images.get(mid, ())),
                version=branch[mid][0],
                versions=branch[mid][1],
            )
            for mid, role, text, status, created, meta in rows
        ]

    # -- search ------------------------------------------------------------------------------

    def search(self, query: str, limit: int = 50) -> list[SearchHit]:
        """Messages containing every word of ``query`` (case-insensitive), newest first."""
        terms = check_text(query).split()
        if not terms or limit <= 0:
            return []
        sql, params = word_search.query(terms, limit)
        with self._read("search the history") as conn:
            rows = conn.execute(sql, params).fetchall()
        return word_search.hits(rows, terms)

    def insert_conversation(self, title: str, created: float | None, messages: Sequence[Mapping[str, Any]]) -> int:
        """Add a whole conversation in one transaction (an import); returns its id.

        ``messages`` are checked records: ``role``, ``text``, ``status``, ``created``,
        ``meta`` (as JSON text) and ``images`` (prepared with ``prepare_image``).
        """
        now = time.time()
        with self._write("import the conversation") as conn:
            cur = conn.execute(
                "INSERT INTO conversations (title, created, updated) VALUES (?, ?, ?)",
                (title, created if created is not None else now, now),
            )
            conv_id = int(cur.lastrowid)
            parent = None
            for m in messages:
                parent = self._insert_message(
                    conn, conv_id, m["role"], m["text"], m["status"], m["created"], m["meta"], m["images"], parent
                )
        return conv_id

    # -- upkeep ------------------------------------------------------------------------------

    def prune_images(self, older_than: float = IMAGE_GRACE_S, limit: int = PRUNE_LIMIT) -> int:
        """Remove image files no message uses (left by crashes and failed saves), with their
        index rows; returns how many files.  Files changed in the last ``older_than`` seconds
        are spared (a save in progress, here or in another instance of the app), and at most
        ``limit`` are removed per call.  The folder is listed outside any transaction, so
        writers wait only while the candidates are checked again and removed; still, call
        this from a background thread."""
        cutoff = time.time() - older_than
        with self._read("list the saved images") as conn:
            used = {
                f"{sha}.{ext}"
                for sha, ext in conn.execute(
                    "SELECT sha256, ext FROM images WHERE sha256 IN (SELECT sha256 FROM message_images)"
                )
            }
        candidates = [file for file in self._old_image_files(cutoff) if file.name not in used][:limit]
        if not candidates:
            return 0
        removed = 0
        with self._write("clean up images") as conn:
            conn.execute("DELETE FROM images WHERE sha256 NOT IN (SELECT sha256 FROM message_images)")
            # Checked again under the write lock: no other store is half-way through saving an image.
            for file in candidates:
                sha, _, ext = file.name.partition(".")
                if conn.execute("SELECT 1 FROM images WHERE sha256 = ? AND ext = ?", (sha, ext)).fetchone():
                    continue
                with contextlib.suppress(OSError):
                    file.unlink()
                    removed += 1
        return removed

    def _old_image_files(self, cutoff: float) -> Iterator[Path]:
        """Every file in the image folders last changed before ``cutoff`` (seconds since the epoch)."""
        if not self.images_dir.is_dir():
            return
        for sub in self.images_dir.iterdir():
            if not sub.is_dir():
                continue
            for file in sub.iterdir():
                try:
                    info = file.lstat()
                except OSError:
                    continue  # removed meanwhile
                if stat.S_ISREG(info.st_mode) and info.st_mtime < cutoff:
                    yield file

    def close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("PRAGMA optimize")
            conn.close()

    @property
    def closed(self) -> bool:
        return self._conn is None

    def __enter__(self) -> HistoryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"HistoryStore({str(self.path)!r}{', closed' if self.closed else ''})"


# -- opening, with recovery -------------------------------------------------------------------


def open_history(data_dir: Path) -> tuple[HistoryStore, str | None]:
    """Open (or create) ``data_dir/history.sqlite3`` with images in ``data_dir/images/``.

    Returns ``(store, warning)``.  A damaged database (not a database, or failing
    ``PRAGMA quick_check``) is renamed to ``history.sqlite3.broken-<timestamp>``
    with its -wal/-shm files and kept there untouched; what can still be read of it
    is salvaged into a new history, and ``warning`` says how many conversations and
    messages were saved.  Otherwise ``warning`` is None.  A database from a newer
    version of the app is left untouched and ``HistoryError`` is raised.
    """
    data_dir = Path(data_dir)
    db = data_dir / DB_NAME
    images = data_dir / IMAGES_DIR_NAME
    try:
        store = HistoryStore(db, images)
    except HistoryCorruptError as exc:
        problem = str(exc)
    else:
        try:
            result = store._quick_check()
        except HistoryCorruptError as exc:
            result = str(exc)
        if result == "ok":
            _recover_interrupted(store)
            return store, None
        store.close()
        problem = f"quick_check: {result}"
    log.warning("history: %s is damaged (%s); setting it aside", db, problem)
    warning = set_aside_and_salvage(db, images)
    store = HistoryStore(db, images)
    _recover_interrupted(store)
    return store, warning


def _recover_interrupted(store: HistoryStore) -> None:
    recovered = store.mark_interrupted()
    if recovered:
        log.info("history: %d reply(s) left being written are marked interrupted", recovered)
