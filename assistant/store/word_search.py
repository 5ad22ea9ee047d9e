"""Search by words: messages that contain every word of a query, newest first.

An FTS5 index with the ``trigram`` tokenizer (``schema.py``) finds any substring of
three or more characters, case-insensitively, in any script (Chinese has no spaces
between words; ``天气很`` is found inside ``今天天气很好``).  Query words shorter than
three characters fall back to a substring scan: ``LIKE`` for ASCII, ``instr`` for
scripts without case, and ``history_contains`` (case-folded, registered on each
connection) for the rest.  A hit's snippet marks the words found with «».
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Sequence
from typing import Any

from assistant.store.records import SearchHit


def register(conn: sqlite3.Connection) -> None:
    """The SQL function the short-word scan needs, on this connection."""
    conn.create_function("history_contains", 2, _contains_folded, deterministic=True)


def query(terms: Sequence[str], limit: int) -> tuple[str, list[Any]]:
    """The SQL and its parameters for messages containing every one of ``terms``; rows are
    (conversation id, message id, title, text, created, role)."""
    long_terms = [t for t in terms if len(t) >= 3]
    short_terms = [t for t in terms if len(t) < 3]  # the trigram index cannot match these
    where: list[str] = []
    params: list[Any] = []
    if long_terms:
        where.append("m.id IN (SELECT rowid FROM messages_fts WHERE messages_fts MATCH ?)")
        params.append(" ".join('"' + t.replace('"', '""') + '"' for t in long_terms))
    for term in short_terms:
        if term.isascii():  # LIKE is case-insensitive for ASCII, and runs in C
            where.append("m.text LIKE ? ESCAPE '\\'")
            params.append("%" + re.sub(r"([%_\\])", r"\\\1", term) + "%")
        elif term.lower() == term.upper():  # no case (CJK...): a plain substring test
            where.append("instr(m.text, ?) > 0")
            params.append(term)
        else:
            where.append("history_contains(m.text, ?)")
            params.append(term.casefold())
    params.append(int(limit))
    sql = f"""SELECT m.conversation_id, m.id, c.title, m.text, m.created, m.role
              FROM messages m JOIN conversations c ON c.id = m.conversation_id
              WHERE {' AND '.join(where)}
              ORDER BY m.created DESC, m.id DESC LIMIT ?"""
    return sql, params


def hits(rows: Sequence[tuple], terms: Sequence[str]) -> list[SearchHit]:
    """The rows ``query`` found, as hits with a snippet around the first word found."""
    return [
        SearchHit(conv_id, mid, title, snippet(text, terms), created, role)
        for conv_id, mid, title, text, created, role in rows
    ]


def _contains_folded(text: str | None, needle: str) -> int:
    return int(needle in (text or "").casefold())


def snippet(text: str, terms: Sequence[str], width: int = 90) -> str:
    flat = " ".join(text.split())
    pattern = re.compile("|".join(re.escape(t) for t in sorted(set(terms), key=len, reverse=True)), re.IGNORECASE)
    first = pattern.search(flat)
    if first is None or len(flat) <= width:
        start = 0
    else:
        start = max(0, min(first.start() - width // 3, len(flat) - width))
        space = flat.rfind(" ", max(0, start - 15), start)
        if space != -1:
            start = space + 1
    end = min(len(flat), start + width)
    if end < len(flat):
        space = flat.find(" ", end, end + 15)
        if space != -1:
            end = space
    window = flat[start:end]
    marked = pattern.sub(lambda m: f"«{m.group(0)}»", window)
    return ("…" if start > 0 else "") + marked + ("…" if end < len(flat) else "")
