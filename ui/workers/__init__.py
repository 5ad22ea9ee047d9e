"""One worker per thread: the Qt side of the engine.

* ``pipeline``: ``SessionBridge`` runs the session (models, turns, saved chats) in
  the long-lived pipeline ``QThread`` and turns its events into Qt signals;
* ``history_reader``: the sidebar's list and search, in a thread with its own
  database connection, so they answer while a reply is being written;
* ``models``: the model cache and downloads, in a thread of their own;
* ``tokens``: streamed tokens coalesced for the chat view;
* ``thread_events``: events of plain Python threads (speech, listening) handed
  to the GUI thread on a timer, never by a Qt call from those threads.

Every ``QThread`` made here is registered, so tests can fail when one leaks.
"""

from __future__ import annotations

import weakref

from PySide6.QtCore import QThread

_threads: weakref.WeakSet[QThread] = weakref.WeakSet()


def new_thread(name: str) -> QThread:
    """A named ``QThread`` that ``running_threads`` knows about."""
    thread = QThread()
    thread.setObjectName(name)
    _threads.add(thread)
    return thread


def running_threads() -> list[QThread]:
    """Worker threads still running (tests fail when one leaks)."""
    return [t for t in list(_threads) if t.isRunning()]
