"""What the command-line front ends share: settings and history for one run, progress and errors on stderr."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import TYPE_CHECKING

from cli.options import EXIT_FAILED, paths_from, settings_from
from assistant.events import State, StatusEvent
from assistant.settings import AppPaths, Settings, load_settings

if TYPE_CHECKING:
    from assistant.devices.speaker import Speaker
    from assistant.devices.timeline import Timeline
    from assistant.store.history import HistoryStore


def fail(message: str, code: int = EXIT_FAILED) -> int:
    """One ``error:`` line on stderr (no traceback); returns the exit code."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    return code


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


def settings_for_run(args: argparse.Namespace) -> tuple[AppPaths, Settings]:
    """The saved settings with this run's flags on top (a damaged file is reported and set aside).

    Raises ``SettingsError`` for a flag that makes no valid setting."""
    paths = paths_from(args)
    loaded = load_settings(paths)
    if loaded.warning:
        warn(loaded.warning)
    return paths, settings_from(args, loaded.settings)


def speaker_from_args(args: argparse.Namespace, realtime: bool, timeline: Timeline | None = None) -> Speaker | None:
    """The ``--speaker`` named on the command line (None without one); raises
    ``AudioDeviceError`` with a clear message when it cannot be opened.  With a
    ``timeline``, a ``.wav`` is recorded time-aligned (silence while nothing plays)."""
    if not args.speaker:
        return None
    from assistant.devices.speaker import open_speaker

    return open_speaker(args.speaker, realtime=realtime, timeline=timeline)


def open_store(args: argparse.Namespace, paths: AppPaths) -> HistoryStore | None:
    """The chat history for a command-line session (None with --no-history or when unusable)."""
    if args.no_history:
        return None
    from assistant.store.history import HistoryError, open_history

    try:
        store, warning = open_history(paths.data)
        if warning:
            warn(warning)
        return store
    except HistoryError as exc:
        warn(f"{exc} This session is not saved.")
        return None


class ConsoleProgress:
    """Download progress on stderr: one updating line on a terminal, sparse lines otherwise."""

    def __init__(self, stream=sys.stderr) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.last_line = ""
        self.last_decile = -1

    def show(self, event: StatusEvent) -> None:
        if event.state is not State.LOADING or not event.detail.startswith("Downloading"):
            return
        if self.tty:
            self.stream.write("\r" + event.detail[:120].ljust(len(self.last_line)))
            self.last_line = event.detail[:120]
        else:
            decile = int((event.progress or 0) * 10)
            if decile != self.last_decile:
                self.last_decile = decile
                self.stream.write(event.detail + "\n")
        self.stream.flush()

    def done(self) -> None:
        if self.tty and self.last_line:
            self.stream.write("\n")
            self.last_line = ""


def stop_on_sigterm() -> None:
    """SIGTERM ends a command-line session the way Ctrl+C does (a reply being written is
    stopped and kept, then everything closes)."""

    def interrupt(signum, frame):  # noqa: ARG001 - the signal module's signature
        raise KeyboardInterrupt

    try:
        signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread (tests that call a front end from a thread)
        pass


def answer_interruptibly(session, turn) -> bool:
    """Answer in a worker thread, so that Ctrl+C (or SIGTERM) here stops the reply like Stop
    does: it ends, is saved as stopped, and this returns.  True when it was interrupted."""
    done = threading.Event()

    def answer() -> None:
        try:
            session.answer(turn)
        finally:
            done.set()

    worker = threading.Thread(target=answer, name="turn")
    worker.start()
    interrupted = False
    # Wait on an event, not on join(): a KeyboardInterrupt inside Thread.join can leave
    # is_alive() false while the thread still runs (CPython gh-90882).
    while not done.is_set():
        try:
            done.wait(0.1)
        except KeyboardInterrupt:
            interrupted = True
            session.stop()
    worker.join()
    return interrupted
