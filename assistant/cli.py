"""Command-line front end: the window's flags, and the one-shot ``--ask`` mode.

``--ask`` uses the same engine as the window, without Qt: the answer streams to
stdout; progress and errors go to stderr.  A failure prints one clear line to
stderr (no traceback) and exits non-zero.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from .errors import BadInputError
from .messages import ErrorEvent, ImageInput, ReplyFinished, State, StatusEvent, TokenChunk, UserTurn
from .settings import DEVICES, DTYPES, APP_TITLE, AppPaths, Settings, SettingsError, load_settings

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="main.py",
        description=f"{APP_TITLE}: chat with a local vision-language model. Without --ask, opens the window.",
    )
    p.add_argument("--ask", metavar="TEXT", help="ask one question, stream the answer to stdout and exit ('-' reads stdin)")
    p.add_argument("--image", metavar="PATH", action="append", default=[], help="attach an image to --ask (repeatable)")
    p.add_argument("--model", metavar="HUB_ID_OR_DIR", help="Hugging Face hub id or local model folder")
    p.add_argument("--device", choices=DEVICES, help="compute device (default: auto = CUDA, then MPS, then CPU)")
    p.add_argument("--dtype", choices=DTYPES, help="weight precision (default: auto for the device)")
    p.add_argument("--max-new-tokens", type=int, metavar="N", help="longest reply, in tokens")
    p.add_argument("--temperature", type=float, metavar="T", help="sampling temperature; 0 = greedy")
    p.add_argument("--system-prompt", metavar="TEXT", help="instructions given to the model before the chat")
    p.add_argument("--data-dir", metavar="DIR", help="keep all of the app's files (settings, models) in DIR")
    p.add_argument("--verbose", action="store_true", help="log details to stderr")
    return p


def paths_from(args: argparse.Namespace) -> AppPaths:
    return AppPaths.under(args.data_dir) if args.data_dir else AppPaths.default()


def settings_from(args: argparse.Namespace, base: Settings) -> Settings:
    """The loaded settings with this run's command-line overrides (not saved)."""
    return base.replace(
        model=args.model,
        device=args.device,
        dtype=args.dtype,
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        system_prompt=args.system_prompt,
    )


def quiet_libraries(verbose: bool) -> None:
    """Keep library chatter (warnings, progress bars) off the user's terminal."""
    logging.basicConfig(level=logging.INFO if verbose else logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    if not verbose:
        warnings.filterwarnings("ignore")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    try:
        import transformers

        transformers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
    except ImportError:
        pass


class _ConsoleProgress:
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


def run_ask(args: argparse.Namespace) -> int:
    from .engine import Engine
    from .images import load_image

    quiet_libraries(args.verbose)
    question = sys.stdin.read() if args.ask == "-" else args.ask
    images = tuple(ImageInput.from_path(p) for p in args.image)
    try:
        for image in images:  # fail before a slow model load
            load_image(image)
        paths = paths_from(args)
        loaded = load_settings(paths)
        if loaded.warning:
            print(f"warning: {loaded.warning}", file=sys.stderr)
        settings = settings_from(args, loaded.settings)
    except (BadInputError, SettingsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if not question.strip() and not images:
        print("error: --ask needs a question (or an --image).", file=sys.stderr)
        return EXIT_USAGE

    errors: list[str] = []
    progress = _ConsoleProgress()
    out = sys.stdout

    def emit(event) -> None:
        if isinstance(event, TokenChunk):
            out.write(event.text)
            out.flush()
        elif isinstance(event, StatusEvent):
            progress.show(event)
        elif isinstance(event, ErrorEvent):
            errors.append(event.message)
        elif isinstance(event, ReplyFinished):
            out.write("\n")
            out.flush()

    engine = Engine(settings, paths, emit)
    try:
        ok = engine.load()
        progress.done()
        if not ok:
            print(f"error: {errors[-1] if errors else 'the model could not be loaded.'}", file=sys.stderr)
            return EXIT_FAILED
        reply = engine.handle_turn(UserTurn(question, images))
    except KeyboardInterrupt:
        engine.cancel()
        print("\ninterrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        engine.unload()
    if reply is None:
        print(f"error: {errors[-1] if errors else 'no answer was produced.'}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def check_args(args: argparse.Namespace) -> str | None:
    """A usage problem with the flags, as one line, or None."""
    if args.data_dir and Path(args.data_dir).exists() and not Path(args.data_dir).is_dir():
        return f"--data-dir {args.data_dir} is not a folder."
    if args.image and args.ask is None:
        return "--image needs --ask (in the window, attach images with the paperclip button)."
    return None
