"""``--chat``: a conversation in the terminal.

One question per line from stdin, each answered in the same conversation and
streamed to stdout (saved to the history like the window's turns, unless
``--no-history``).  ``/image PATH`` attaches an image to the next question,
``/new`` starts a new chat; end of input ends the chat.  Ctrl+C stops the reply
being written (it is kept, marked stopped); at the prompt it ends the chat.

``--timings`` writes one line per turn to stderr, exactly
``turn=N ttft=S.SSS tokens=N seconds=S.SSS``: ``ttft`` from the moment the
question is read to its first streamed token, ``seconds`` to its last.  Loading
the model is not part of any turn.  Scripts rely on this format.
"""

from __future__ import annotations

import argparse
import sys
import time

from cli.ask import read_images
from cli.console import ConsoleProgress, answer_interruptibly, fail, open_store, settings_for_run, speaker_from_args, stop_on_sigterm
from cli.options import EXIT_OK, quiet_libraries
from assistant.errors import BadInputError
from assistant.events import ErrorEvent, ErrorKind, ImageInput, ReplyFinished, StatusEvent, TokenChunk, UserTurn
from assistant.settings import SettingsError


class _Turn:
    """What the chat shows of one turn, and when."""

    def __init__(self) -> None:
        self.asked = time.monotonic()
        self.first: float | None = None
        self.last: float | None = None
        self.tokens = 0
        self.text = False  # anything printed


def run_chat(args: argparse.Namespace) -> int:
    from assistant.session import Session

    quiet_libraries(args.verbose)
    try:
        paths, settings = settings_for_run(args)
    except SettingsError as exc:
        return fail(str(exc))
    from assistant.devices.audio import AudioDeviceError

    try:
        speaker = speaker_from_args(args, realtime=True)
    except AudioDeviceError as exc:
        return fail(str(exc))

    out, err = sys.stdout, sys.stderr
    progress = ConsoleProgress()
    load_errors: list[str] = []
    turn: _Turn | None = None

    def show(event) -> None:
        if isinstance(event, TokenChunk):
            now = time.monotonic()
            if turn is not None:
                if turn.first is None:
                    turn.first = now
                turn.last, turn.text = now, True
            out.write(event.text)
            out.flush()
        elif isinstance(event, ReplyFinished):
            if turn is not None:
                turn.tokens = event.tokens
            out.write("\n")
            out.flush()
        elif isinstance(event, ErrorEvent):
            if turn is None:
                load_errors.append(event.message)
            else:
                if turn.text:
                    out.write("\n")
                label = "warning" if event.kind is ErrorKind.HISTORY else "error"
                print(f"{label}: {event.message}", file=err, flush=True)
        elif isinstance(event, StatusEvent):
            progress.show(event)

    store = open_store(args, paths)
    session = Session(settings, paths, show, speaker=speaker, speak=True if args.speaker else None, store=store,
                      on_speech=lambda e: e.kind == "error" and print(f"error: {e.text}", file=err, flush=True))
    interactive = sys.stdin.isatty()
    stop_on_sigterm()
    try:
        ok = session.load()
        progress.done()
        if not ok:
            return fail(load_errors[-1] if load_errors else "the model could not be loaded.")
        if interactive:
            print("Type a question and press Enter; '/image PATH' attaches an image, '/new' starts a new chat, "
                  "Ctrl+D ends.", file=err, flush=True)
        images: tuple[ImageInput, ...] = ()
        number = 0
        while True:
            if interactive:
                print("you> ", end="", file=err, flush=True)
            try:
                line = sys.stdin.readline()
            except KeyboardInterrupt:
                break
            if not line:
                break
            question = line.rstrip("\r\n")
            command = question.strip()
            if command.startswith("/image"):
                try:
                    images += read_images([command[len("/image"):].strip()])
                    print(f"(image attached: {images[-1].name})", file=err, flush=True)
                except BadInputError as exc:
                    print(f"error: {exc}", file=err, flush=True)
                continue
            if command == "/new":
                session.new_chat()
                images = ()
                print("(new chat)", file=err, flush=True)
                continue
            if not command and not images:
                continue
            number += 1
            turn = _Turn()
            answer_interruptibly(session, UserTurn(question, images))
            images = ()
            if args.timings and turn.first is not None:
                print(f"turn={number} ttft={turn.first - turn.asked:.3f} tokens={turn.tokens} "
                      f"seconds={turn.last - turn.asked:.3f}", file=err, flush=True)
            turn = None
        session.wait_spoken()
    finally:
        session.close()
        if store is not None:
            store.close()
    return EXIT_OK

