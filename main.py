"""Multimodal Assistant: ``python main.py`` opens the window; ``--ask`` answers once on the command line.

``--ask`` uses the same engine as the window, without Qt: the answer streams to
stdout; progress and errors go to stderr.  A failure prints one clear line to
stderr (no traceback) and exits non-zero.
"""

from __future__ import annotations

import argparse
import sys

from assistant.errors import BadInputError
from assistant.messages import (
    ErrorEvent,
    FramesChosen,
    ImageInput,
    ReplyFinished,
    State,
    StatusEvent,
    TokenChunk,
    UserTurn,
)
from assistant.options import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    build_parser,
    check_args,
    paths_from,
    quiet_libraries,
    settings_from,
)
from assistant.settings import SettingsError, load_settings


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


LIVE_CAPTURE_SECONDS = 3.0  # how long --ask watches a live camera before asking


def capture_frames(spec: str) -> tuple:
    """Recent frames for ``--ask --camera``: a whole video file (decoded as fast as it
    goes), or a few seconds of a live camera or stream."""
    import os
    import time

    from assistant.camera import CameraSource, FrameBuffer, parse_source

    source = parse_source(spec)
    is_file = isinstance(source, str) and os.path.isfile(source)
    buffer = FrameBuffer()
    camera = CameraSource(source, realtime=not is_file, buffer=buffer, reconnect=False)
    camera.start()
    try:
        if is_file:
            camera.wait_until_ended(timeout=600)
        else:
            deadline = time.monotonic() + LIVE_CAPTURE_SECONDS
            while time.monotonic() < deadline and camera.status.state not in ("failed", "ended"):
                time.sleep(0.05)
    finally:
        camera.stop()
    frames = tuple(buffer.frames())
    if not frames:
        raise RuntimeError(f"the camera '{spec}' gave no frames ({camera.status.detail})")
    return frames


def run_ask(args: argparse.Namespace) -> int:
    from assistant.engine import Engine
    from assistant.images import decode_image, read_image_bytes

    quiet_libraries(args.verbose)
    question = sys.stdin.read() if args.ask == "-" else args.ask
    try:
        images = []
        for path in args.image:  # read once, and checked before a slow model load
            source = ImageInput.from_path(path)
            data = read_image_bytes(source)
            decode_image(data, source.name)
            images.append(ImageInput.from_bytes(data, source.name))
        images = tuple(images)
        paths = paths_from(args)
        loaded = load_settings(paths)
        if loaded.warning:
            print(f"warning: {loaded.warning}", file=sys.stderr)
        settings = settings_from(args, loaded.settings)
    except (BadInputError, SettingsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if not question.strip() and not images and args.camera is None:
        print("error: --ask needs a question (or an --image).", file=sys.stderr)
        return EXIT_USAGE

    frames: tuple = ()
    if args.camera is not None:
        try:
            frames = capture_frames(args.camera)
        except RuntimeError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_FAILED

    errors: list[str] = []
    progress = _ConsoleProgress()
    out = sys.stdout
    voice = None
    if args.speaker:
        from assistant.voice.audio import AudioDeviceError, open_speaker
        from assistant.voice.voice_out import VoiceOut

        try:
            speaker = open_speaker(args.speaker, realtime=False)
        except AudioDeviceError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_FAILED
        voice = VoiceOut(
            speaker,
            lambda e: e.kind == "error" and errors.append(e.text),
            voice=settings.voice,
            rate=settings.speech_rate,
            volume=settings.speech_volume,
        )
        voice.start()

    def emit(event) -> None:
        if isinstance(event, TokenChunk):
            out.write(event.text)
            out.flush()
            if voice is not None:
                voice.feed(event.turn_id, event.text)
        elif isinstance(event, StatusEvent):
            progress.show(event)
        elif isinstance(event, ErrorEvent):
            errors.append(event.message)
        elif isinstance(event, FramesChosen):
            for choice in event.chosen:  # a stable format: scripts read these lines
                print(f"frame t={choice.frame.t:.2f} weight={choice.weight:.3f}", file=sys.stderr, flush=True)
        elif isinstance(event, ReplyFinished):
            out.write("\n")
            out.flush()
            if voice is not None:
                voice.end_reply(event.turn_id)

    store = None
    if not args.no_history:
        from assistant.history import HistoryError, open_history

        try:
            store, warning = open_history(paths.data)
            if warning:
                print(f"warning: {warning}", file=sys.stderr)
        except HistoryError as exc:
            print(f"warning: {exc} This answer is not saved.", file=sys.stderr)
    engine = Engine(settings, paths, emit, history=store)
    try:
        ok = engine.load()
        progress.done()
        if not ok:
            print(f"error: {errors[-1] if errors else 'the model could not be loaded.'}", file=sys.stderr)
            return EXIT_FAILED
        reply = engine.handle_turn(UserTurn(question, images, frames=frames))
        if voice is not None and reply is not None:
            voice.wait_idle(timeout=600)
    except KeyboardInterrupt:
        engine.cancel()
        print("\ninterrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        engine.unload()
        if voice is not None:
            voice.close()
        if store is not None:
            store.close()
    if reply is None or errors:
        print(f"error: {errors[-1] if errors else 'no answer was produced.'}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def markdown_to_stdout(store, conversation_id: int) -> str:
    """A conversation as Markdown, with its images linked where the history keeps them."""
    summary = store.get_conversation(conversation_id)
    lines = [f"# {summary.title or 'Chat'}", ""]
    for message in store.messages(conversation_id):
        heading = {"user": "You", "assistant": "Assistant"}.get(message.role, message.role.title())
        mark = {"stopped": " (stopped)", "failed": " (failed)"}.get(message.status, "")
        lines += [f"## {heading}{mark}", ""]
        lines += [f"![image]({image.path.as_uri()})" for image in message.images]
        lines += [message.text, ""]
    return "\n".join(lines)


def run_export(args: argparse.Namespace) -> int:
    """``--export-chat last|ID --format json|md``: a saved conversation on stdout."""
    import json

    from assistant.history import HistoryError, open_history

    paths = paths_from(args)
    try:
        store, warning = open_history(paths.data)
    except HistoryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    try:
        if warning:
            print(f"warning: {warning}", file=sys.stderr)
        conversation_id = store.last_conversation_id() if args.export_chat == "last" else int(args.export_chat)
        if conversation_id is None or store.get_conversation(conversation_id) is None:
            print(f"error: there is no saved conversation '{args.export_chat}'.", file=sys.stderr)
            return EXIT_FAILED
        if args.format == "json":
            sys.stdout.write(json.dumps(store.export_json(conversation_id), ensure_ascii=False, indent=1) + "\n")
        else:
            sys.stdout.write(markdown_to_stdout(store, conversation_id) + "\n")
        return EXIT_OK
    finally:
        store.close()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    problem = check_args(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    if args.export_chat is not None:
        return run_export(args)
    if args.ask is not None:
        return run_ask(args)
    from ui.app import run_gui

    return run_gui(args)


if __name__ == "__main__":
    sys.exit(main())
