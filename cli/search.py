"""``--search "QUERY"``: find saved pictures and messages by what they show, by meaning and by words.

Indexes whatever is not indexed yet (the image search model is downloaded first if it
has to be; progress on stderr), then prints the best matches on stdout, best first:
``score=0.123 chat=ID message=ID kind=image|text title=…``.
"""

from __future__ import annotations

import argparse
import sys

from cli.console import ConsoleProgress, fail, settings_for_run, stop_on_sigterm, warn
from cli.options import EXIT_INTERRUPTED, EXIT_OK, quiet_libraries
from assistant.events import State, StatusEvent
from assistant.progress import CancelFlag

RESULTS = 10


def run_search(args: argparse.Namespace) -> int:
    from assistant.encoders.shared import EncoderChoice, SharedEncoder
    from assistant.errors import AssistantError, Cancelled
    from assistant.search.retrieval import Retriever
    from assistant.settings import SettingsError
    from assistant.store.history import HistoryError, open_history

    stop_on_sigterm()
    quiet_libraries(args.verbose)
    try:
        paths, settings = settings_for_run(args)
    except SettingsError as exc:
        return fail(str(exc))
    if not settings.search_model.strip():
        return fail("the image search model is off in the settings; name one with --search-model "
                    "(for example openai/clip-vit-base-patch32).")
    try:
        store, warning = open_history(paths.data)
    except HistoryError as exc:
        return fail(str(exc))
    if warning:
        warn(warning)
    shared = SharedEncoder(paths.models, EncoderChoice(settings.search_model.strip(), settings.device,
                                                      settings.offline))
    stop = CancelFlag()  # set by Ctrl+C: a download stops at its next chunk
    shown = ConsoleProgress()
    try:
        try:
            encoder = shared.load(
                lambda p: shown.show(StatusEvent(State.LOADING, p.detail, p.fraction)), stop, download=True)
        finally:
            shown.done()
        retriever = Retriever(store, encoder)
        retriever.load()
        lines = _IndexLines()
        retriever.index(progress=lines.show, cancel=stop)
        lines.done()
        for result in retriever.search(args.search, RESULTS):
            sys.stdout.write(result.line + "\n")
        sys.stdout.flush()
        return EXIT_OK
    except KeyboardInterrupt:
        stop.set()
        print("\nStopped (what was indexed is kept).", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Cancelled:
        return EXIT_INTERRUPTED
    except (AssistantError, HistoryError) as exc:
        return fail(str(exc))
    finally:
        shared.close()
        store.close()


class _IndexLines:
    """Indexing progress on stderr: one updating line on a terminal, a line a tenth otherwise."""

    def __init__(self, stream=sys.stderr) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.last_tenth = -1
        self.written = False

    def show(self, progress) -> None:
        if self.tty:
            self.stream.write("\r" + progress.text)
            self.written = True
        else:
            tenth = int(progress.fraction * 10)
            if tenth != self.last_tenth:
                self.last_tenth = tenth
                self.stream.write(progress.text + "\n")
        self.stream.flush()

    def done(self) -> None:
        if self.tty and self.written:
            self.stream.write("\n")
            self.written = False
