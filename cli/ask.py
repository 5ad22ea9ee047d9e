"""``--ask``: one question answered on the command line.

The answer streams to stdout; progress, the chosen camera frames
(``frame t=1.23 weight=0.456``, a stable format) and errors go to stderr.  A
failure prints one ``error:`` line (no traceback) and exits non-zero.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from cli.console import (ConsoleProgress, answer_interruptibly, fail, open_store, settings_for_run, speaker_from_args,
                         stop_on_sigterm, warn)
from cli.options import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, quiet_libraries
from assistant.errors import BadInputError
from assistant.events import ErrorEvent, ErrorKind, FramesChosen, ImageInput, ReplyFinished, StatusEvent, TokenChunk, UserTurn
from assistant.settings import SettingsError

LIVE_CAPTURE_SECONDS = 3.0  # how long --ask watches a live camera before asking


def capture_frames(spec: str) -> tuple:
    """Recent frames for ``--ask --camera``: a whole video file (decoded as fast as it
    goes), or a few seconds of a live camera or stream."""
    from assistant.devices.camera import CameraSource, parse_source
    from assistant.fusion.frame_buffer import FrameBuffer

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
        how_it_went = camera.status.detail  # before stop(), which says only "… is off"
    finally:
        camera.stop()
    frames = tuple(buffer.frames())
    if not frames:
        raise RuntimeError(f"the camera gave no frames: {how_it_went}")
    if camera.cut_short:
        count = f"{len(frames)} frame" + ("s" if len(frames) != 1 else "")
        warn(f"{camera.name} ended {camera.cut_short}; the question uses what it showed ({count}).")
    return frames


def read_images(paths: list[str]) -> tuple[ImageInput, ...]:
    """Each ``--image`` read and decoded once, before a slow model load (a bad file is said at once)."""
    from assistant.encoders.images import decode_image, read_image_bytes

    images = []
    for path in paths:
        source = ImageInput.from_path(path)
        data = read_image_bytes(source)
        images.append(ImageInput.from_bytes(data, source.name, decoded=decode_image(data, source.name)))
    return tuple(images)


def run_ask(args: argparse.Namespace) -> int:
    from assistant.session import Session

    quiet_libraries(args.verbose)
    question = sys.stdin.read() if args.ask == "-" else args.ask
    try:
        images = read_images(args.image)
        paths, settings = settings_for_run(args)
    except (BadInputError, SettingsError) as exc:
        return fail(str(exc))
    if not question.strip() and not images and args.camera is None:
        return fail("--ask needs a question (or an --image).", EXIT_USAGE)

    frames: tuple = ()
    if args.camera is not None:
        try:
            frames = capture_frames(args.camera)
        except RuntimeError as exc:
            return fail(str(exc))

    from assistant.devices.audio import AudioDeviceError

    try:
        speaker = speaker_from_args(args, realtime=False)
    except AudioDeviceError as exc:
        return fail(str(exc))

    errors: list[str] = []
    replies: list[ReplyFinished] = []
    progress = ConsoleProgress()
    out = sys.stdout

    def show(event) -> None:
        if isinstance(event, TokenChunk):
            out.write(event.text)
            out.flush()
        elif isinstance(event, StatusEvent):
            progress.show(event)
        elif isinstance(event, ErrorEvent) and event.kind is ErrorKind.HISTORY:
            warn(event.message)  # the answer still stands: saving it is what failed
        elif isinstance(event, ErrorEvent):
            errors.append(event.message)
        elif isinstance(event, FramesChosen):
            for choice in event.chosen:  # a stable format: scripts read these lines
                print(f"frame t={choice.frame.t:.2f} weight={choice.weight:.3f}", file=sys.stderr, flush=True)
        elif isinstance(event, ReplyFinished):
            replies.append(event)
            out.write("\n")
            out.flush()

    store = open_store(args, paths)
    session = Session(settings, paths, show, speaker=speaker, speak=True, store=store,
                      on_speech=lambda e: e.kind == "error" and errors.append(e.text))
    stop_on_sigterm()
    try:
        ok = session.load()
        progress.done()
        turn = UserTurn(question, images, frames=frames)
        if not ok:
            reason = errors[-1] if errors else "the model could not be loaded."
            session.engine.save_unanswered(turn, reason)  # the question is kept, marked failed
            return fail(reason)
        if answer_interruptibly(session, turn):
            print("\ninterrupted", file=sys.stderr)
            return EXIT_INTERRUPTED  # the partial answer was saved as stopped
        if replies:
            session.wait_spoken()
    except KeyboardInterrupt:
        session.stop()
        print("\ninterrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        session.close()
        if store is not None:
            store.close()
    if not replies or errors:
        return fail(errors[-1] if errors else "no answer was produced.")
    return EXIT_OK
