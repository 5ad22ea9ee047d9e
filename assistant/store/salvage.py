"""Salvage: set a damaged history aside and copy what can still be read of it into a new database.

Python's ``sqlite3`` module does not offer SQLite's recovery extension, so this
reads each table in key order and, where a page cannot be read, seeks past the
damaged key range: it jumps ahead by doubling steps until a read succeeds, then
bisects back to the first key that reads again.  Rows that break the schema's
rules are left out.  The full-text index is rebuilt by the schema's triggers and
the image index from the image files on disk (each is named by its content), so
every image a saved message shows resolves to its file.

The damaged file itself is never changed: the salvage reads a scratch copy.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from assistant.errors import HistoryError
from assistant.store.records import ROLES, STATUSES, describe_os_error
from assistant.store.schema import LINK_IN_ORDER, MIGRATIONS, SCHEMA_VERSION

log = logging.getLogger(__name__)

SQLITE_MAGIC = b"SQLite format 3\x00"
RECOVERED_TITLE = "Recovered conversation"  # for messages whose conversation row was lost

_MIN_KEY = -(2**63)
_MAX_KEY = 2**63 - 1
_PAGE_SIZES = (4096, 1024, 2048, 8192, 16384, 32768, 65536, 512)
_IMAGE_NAME = re.compile(r"([0-9a-f]{64})\.([0-9a-z]+)")


@dataclass(frozen=True)
class Salvaged:
    conversations: int
    messages: int


def salvage(damaged: Path, target: Path, images_dir: Path) -> Salvaged:
    """Write into ``target`` (a new database with the current schema) every conversation,
    message and image reference of ``damaged`` that can still be read; returns how many
    were saved.  ``target`` is written only when at least one conversation was saved."""
    scratch = target.with_name(target.name + ".salvage-source")
    building = target.with_name(target.name + ".salvage-new")
    leftovers = [scratch.with_name(scratch.name + s) for s in ("", "-wal", "-shm")]
    leftovers += [building.with_name(building.name + s) for s in ("", "-journal")]
    try:
        for path in leftovers:
            path.unlink(missing_ok=True)
        shutil.copyfile(damaged, scratch)
        damaged_wal = damaged.with_name(damaged.name + "-wal")
        if damaged_wal.exists():
            shutil.copyfile(damaged_wal, scratch.with_name(scratch.name + "-wal"))
        source = _open_readable(scratch)
        if source is None:
            return Salvaged(0, 0)
        try:
            saved = _copy_rows(source, building, images_dir)
        finally:
            source.close()
        if saved.conversations:
            building.replace(target)
        return saved
    except (OSError, sqlite3.Error) as exc:
        log.warning("history: salvage of %s failed: %s", damaged, exc)
        return Salvaged(0, 0)
    finally:
        for path in leftovers:
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)


# -- reading the damaged copy -----------------------------------------------------------------


def _open_readable(path: Path) -> sqlite3.Connection | None:
    """A connection to ``path`` whose table list can be read, repairing a damaged file
    header when needed; None when no header makes the file readable."""
    conn = _connect_if_readable(path)
    if conn is not None:
        return conn
    with open(path, "r+b") as fh:
        first = fh.read(100)
        if len(first) < 100:
            return None
        recorded = int.from_bytes(first[16:18], "big")
        for page_size in dict.fromkeys((recorded, *_PAGE_SIZES)):
            if page_size not in _PAGE_SIZES:
                continue
            fh.seek(0)
            fh.write(_fresh_header(page_size))
            fh.flush()
            conn = _connect_if_readable(path)
            if conn is not None:
                log.info("history: salvage repaired the file header (page size %d)", page_size)
                return conn
    return None


def _fresh_header(page_size: int) -> bytes:
    """The 100-byte file header this store's databases have (UTF-8, WAL, no auto-vacuum),
    with the page count left 0 so SQLite takes the size of the file."""
    header = bytearray(100)
    header[:16] = SQLITE_MAGIC
    header[16:18] = (1 if page_size == 65536 else page_size).to_bytes(2, "big")
    header[18:24] = bytes([2, 2, 0, 64, 32, 32])
    header[44:48] = (4).to_bytes(4, "big")  # schema format
    header[56:60] = (1).to_bytes(4, "big")  # UTF-8
    return bytes(header)


def _connect_if_readable(path: Path) -> sqlite3.Connection | None:
    conn = None
    try:
        conn = sqlite3.connect(str(path), isolation_level=None)
        conn.execute("PRAGMA cell_size_check = ON")  # report damaged cells instead of reading garbage
        conn.execute("PRAGMA writable_schema = ON")  # read on past a wrong page count or a bad schema entry
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_schema WHERE type = 'table'")}
    except sqlite3.Error:
        tables = set()
    if tables & {"conversations", "messages"}:
        return conn
    if conn is not None:
        conn.close()
    return None


def _readable_rows(conn: sqlite3.Connection, table: str, columns: str) -> list[tuple]:
    """``SELECT id, columns FROM table`` in id order, stepping past id ranges that cannot be read."""
    query = f"SELECT id, {columns} FROM {table} WHERE id >= ? ORDER BY id"
    rows: list[tuple] = []
    start: int | None = _MIN_KEY
    while start is not None:
        try:
            for row in conn.execute(query, (start,)):
                rows.append(row)
            return rows
        except sqlite3.Error:
            last_read = rows[-1][0] if rows and rows[-1][0] >= start else start - 1
        # The cursor drops the row it holds when the step after it fails: read that one alone.
        row = _first_row(conn, query, last_read + 1)
        if row is not None:
            rows.append(row)
            start = row[0] + 1
        else:
            start = _first_readable_start(conn, query, last_read)
    return rows


def _first_row(conn: sqlite3.Connection, query: str, start: int) -> tuple | None:
    """The first row ``query`` reads from ``start``; None when there is none or it cannot be read."""
    try:
        return conn.execute(query + " LIMIT 1", (start,)).fetchone()
    except sqlite3.Error:
        return None


def _first_readable_start(conn: sqlite3.Connection, query: str, after: int) -> int | None:
    """The smallest id > ``after`` from which ``query`` reads its first row, or None when
    nothing after ``after`` can be read."""

    def readable_from(start: int) -> bool:
        try:
            conn.execute(query + " LIMIT 1", (start,)).fetchall()
            return True
        except sqlite3.Error:
            return False

    # The store's ids start at 1: probing the negative half of the key space first would
    # jump from -1 straight to the largest key, and miss everything between.
    after = max(after, 0)
    unreadable, step = after, 1
    while True:
        probe = min(after + step, _MAX_KEY)
        if readable_from(probe):
            break
        if probe == _MAX_KEY:
            return None
        unreadable, step = probe, step * 2
    readable = probe
    while readable - unreadable > 1:
        middle = (unreadable + readable) // 2
        if readable_from(middle):
            readable = middle
        else:
            unreadable = middle
    return readable


# -- writing the new database -----------------------------------------------------------------


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _valid_conversation(row: tuple) -> bool:
    _, title, created, updated = row
    return isinstance(title, str) and _is_number(created) and _is_number(updated)


def _valid_message(row: tuple) -> bool:
    _, conv_id, role, text, status, created, meta = row
    return (
        isinstance(conv_id, int)
        and role in ROLES
        and isinstance(text, str)
        and status in STATUSES
        and _is_number(created)
        and isinstance(meta, str)
    )


def _branches(conn: sqlite3.Connection) -> list[tuple[int, int | None, int]] | None:
    """(message id, parent id, chosen) of each readable message; None for a file from before versions."""
    try:
        columns = {row[1] for row in conn.execute("PRAGMA table_info(messages)")}
    except sqlite3.Error:
        return None
    if not {"parent_id", "chosen"} <= columns:
        return None
    rows = _readable_rows(conn, "messages", "parent_id, chosen")
    return [(mid, parent if isinstance(parent, int) else None, chosen) for mid, parent, chosen in rows]


def _images_of(conn: sqlite3.Connection, message_ids: list[int]) -> list[tuple[int, int, str]]:
    """(message id, position, sha256) of each image the messages show that can still be read."""
    found = []
    for message_id in message_ids:
        try:
            rows = conn.execute(
                "SELECT position, sha256 FROM message_images WHERE message_id = ?", (message_id,)
            ).fetchall()
        except sqlite3.Error:
            continue
        found += [(message_id, pos, sha) for pos, sha in rows if isinstance(pos, int) and isinstance(sha, str)]
    return found


def _image_files(images_dir: Path) -> dict[str, tuple[str, int]]:
    """sha256 -> (extension, size) of every image file under ``images_dir``."""
    found: dict[str, tuple[str, int]] = {}
    if not images_dir.is_dir():
        return found
    for sub in images_dir.iterdir():
        if not sub.is_dir():
            continue
        for file in sub.iterdir():
            match = _IMAGE_NAME.fullmatch(file.name)
            if match and file.is_file():
                with contextlib.suppress(OSError):
                    found[match[1]] = (match[2], file.stat().st_size)
    return found


def _rows(conn: sqlite3.Connection, table: str, columns: str, valid: Callable[[tuple], bool]) -> list[tuple]:
    rows = _readable_rows(conn, table, columns)
    kept = [row for row in rows if valid(row)]
    if len(kept) < len(rows):
        log.warning("history: salvage left out %d malformed %s row(s)", len(rows) - len(kept), table)
    return kept


def _copy_rows(source: sqlite3.Connection, target: Path, images_dir: Path) -> Salvaged:
    conversations = _rows(source, "conversations", "title, created, updated", _valid_conversation)
    messages = _rows(source, "messages", "conversation_id, role, text, status, created, meta", _valid_message)
    message_images = _images_of(source, [row[0] for row in messages])
    branches = _branches(source)

    conv_ids = {row[0] for row in conversations}
    lost: dict[int, list[float]] = {}  # conversation id -> when each of its messages was created
    for _, conv_id, _role, _text, _status, created, _meta in messages:
        if conv_id not in conv_ids:
            lost.setdefault(conv_id, []).append(created)
    conversations += [(cid, RECOVERED_TITLE, min(times), max(times)) for cid, times in lost.items()]

    files = _image_files(images_dir)
    message_images = [r for r in message_images if r[2] in files]
    shas = {r[2] for r in message_images}

    conn = sqlite3.connect(str(target), isolation_level=None)
    try:
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("BEGIN")
        for statements in MIGRATIONS:
            for statement in statements:
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.executemany("INSERT INTO conversations (id, title, created, updated) VALUES (?, ?, ?, ?)", conversations)
        conn.executemany(
            "INSERT INTO messages (id, conversation_id, role, text, status, created, meta) VALUES (?, ?, ?, ?, ?, ?, ?)",
            messages,
        )
        if branches is None:  # a file from before versions: its messages are one line
            conn.execute(LINK_IN_ORDER)
        else:
            conn.executemany("UPDATE messages SET parent_id = ?, chosen = ? WHERE id = ?",
                             [(parent, 1 if chosen else 0, mid) for mid, parent, chosen in branches])
            # A message whose parent was lost follows the message saved before it.
            conn.execute(LINK_IN_ORDER + " WHERE parent_id IS NOT NULL AND parent_id NOT IN (SELECT id FROM messages)")
        conn.executemany("INSERT INTO images (sha256, ext, bytes) VALUES (?, ?, ?)", [(s, *files[s]) for s in shas])
        conn.executemany(
            "INSERT INTO message_images (message_id, position, sha256) VALUES (?, ?, ?)", message_images
        )
        conn.execute("COMMIT")
    finally:
        conn.close()
    return Salvaged(len(conversations), len(messages))


# -- setting a damaged file aside, and saying what was saved ----------------------------------


def set_aside_and_salvage(db: Path, images_dir: Path) -> str:
    """Move the damaged ``db`` (with its -wal/-shm) aside as ``<name>.broken-<time>``, copy
    what can be read of it into a new ``db``, and return the sentence that tells the user."""
    backup = _set_aside(db)
    started = time.monotonic()
    saved = salvage(backup, db, images_dir)
    log.info(
        "history: salvaged %d conversation(s), %d message(s) from %s in %.1f s",
        saved.conversations, saved.messages, backup.name, time.monotonic() - started,
    )
    kept = f"The damaged file was kept aside as {backup.name} (in {db.parent})."
    if saved.conversations == 0:
        return (f"The conversation history was damaged and nothing in it could be read. {kept} "
                "A new, empty history was started.")
    return (f"The conversation history was damaged. {_count(saved.conversations, 'conversation')} "
            f"({_count(saved.messages, 'message')}) could be saved; anything else in it is lost. {kept}")


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def _set_aside(db: Path) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    backup = db.with_name(f"{db.name}.broken-{stamp}")
    n = 1
    while backup.exists():
        n += 1
        backup = db.with_name(f"{db.name}.broken-{stamp}-{n}")
    try:
        os.replace(db, backup)
        for suffix in ("-wal", "-shm"):
            side = db.with_name(db.name + suffix)
            if side.exists():
                os.replace(side, backup.with_name(backup.name + suffix))
    except OSError as exc:
        raise HistoryError(
            f"The conversation history {db} is damaged and could not be moved aside: {describe_os_error(exc)}."
        ) from None
    return backup
