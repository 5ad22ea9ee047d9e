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

    store = _open_store(args, paths)
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


def _open_store(args: argparse.Namespace, paths):
    """The chat history for a command-line session (None with --no-history or when unusable)."""
    if args.no_history:
        return None
    from assistant.history import HistoryError, open_history

    try:
        store, warning = open_history(paths.data)
        if warning:
            print(f"warning: {warning}", file=sys.stderr)
        return store
    except HistoryError as exc:
        print(f"warning: {exc} This session is not saved.", file=sys.stderr)
        return None


def one_line(text: str) -> str:
    return " ".join(text.split())


def run_headless(args: argparse.Namespace) -> int:
    """``--headless``: a spoken conversation without a window.

    Listens hands-free to ``--mic`` (a WAV file: replayed utterance by utterance,
    none dropped, until it ends; a device: until Ctrl+C), and prints one
    ``you: …`` and one ``assistant: …`` line per utterance.  Replies are spoken
    to ``--speaker`` (and, with a live microphone, to the default sound device).
    """
    import queue
    import threading

    from assistant.camera import CameraSource, FrameBuffer, parse_source
    from assistant.engine import Engine
    from assistant.messages import Transcribed
    from assistant.voice.audio import AudioDeviceError, open_speaker
    from assistant.voice.mic import open_microphone
    from assistant.voice.voice_in import ListenEvent, VoiceIn
    from assistant.voice.voice_out import VoiceOut

    quiet_libraries(args.verbose)
    try:
        paths = paths_from(args)
        loaded = load_settings(paths)
        if loaded.warning:
            print(f"warning: {loaded.warning}", file=sys.stderr)
        settings = settings_from(args, loaded.settings)
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    mic = open_microphone(settings.mic, realtime=False)
    replay = not mic.live
    try:
        mic.start()  # a missing device or a broken recording is reported before any model loads
    except (BadInputError, AudioDeviceError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED

    voice = None
    errors: list[str] = []
    if args.speaker or (not replay and settings.speak_replies):
        try:
            speaker = open_speaker(args.speaker, realtime=not replay)
        except AudioDeviceError as exc:
            if args.speaker:
                print(f"error: {exc}", file=sys.stderr)
                return EXIT_FAILED
            print(f"warning: {exc} Replies are printed, not spoken.", file=sys.stderr)
        else:
            voice = VoiceOut(speaker, lambda e: e.kind == "error" and errors.append(e.text),
                             voice=settings.voice, rate=settings.speech_rate, volume=settings.speech_volume)
            voice.start()

    replies: dict[int, list[str]] = {}
    failed: list[str] = []

    def emit(event) -> None:
        if isinstance(event, Transcribed):
            if event.text:
                print(f"you: {event.text}", flush=True)
            else:
                print(f"(no words recognized in {event.audio_seconds:.1f} s of sound)", file=sys.stderr, flush=True)
        elif isinstance(event, TokenChunk):
            replies.setdefault(event.turn_id, []).append(event.text)
            if voice is not None:
                voice.feed(event.turn_id, event.text)
        elif isinstance(event, ReplyFinished):
            print(f"assistant: {one_line(event.text)}", flush=True)
            if voice is not None:
                voice.end_reply(event.turn_id)
        elif isinstance(event, ErrorEvent):
            failed.append(event.message)
            print(f"error: {event.message}", file=sys.stderr, flush=True)
            if voice is not None and event.turn_id is not None:
                voice.end_reply(event.turn_id)
        elif isinstance(event, StatusEvent):
            progress.show(event)

    progress = _ConsoleProgress()
    store = _open_store(args, paths)
    engine = Engine(settings, paths, emit, history=store)
    # A recording is replayed turn by turn (the listener waits for each answer: nothing is
    # dropped); a live microphone never waits: if answers fall behind, the oldest utterance goes.
    utterances: queue.Queue = queue.Queue(maxsize=4)
    listen_failed: list[str] = []
    ended = threading.Event()

    def on_utterance(utterance) -> None:
        if replay:
            while not ended.is_set():
                try:
                    utterances.put(utterance, timeout=0.2)
                    return
                except queue.Full:
                    continue
        else:
            try:
                utterances.put_nowait(utterance)
            except queue.Full:
                utterances.get_nowait()
                utterances.put_nowait(utterance)
                print("warning: answers fell behind; the oldest utterance was dropped.", file=sys.stderr)

    def on_listen(event: ListenEvent) -> None:
        if event.kind == "error":
            listen_failed.append(event.text)

    muted = (lambda: voice.sounding(0.4)) if voice is not None and settings.half_duplex else (lambda: False)
    listener = VoiceIn(mic, on_utterance, on_listen, settings.vad_config(), hands_free=True, muted=muted)
    camera = buffer = None
    code = EXIT_OK
    try:
        if not engine.load() or not engine.load_recognizer():
            progress.done()
            print(f"error: {failed[-1] if failed else 'the models could not be loaded.'}", file=sys.stderr)
            return EXIT_FAILED
        progress.done()
        if args.camera is not None:
            buffer = FrameBuffer()
            camera = CameraSource(parse_source(args.camera), realtime=True, buffer=buffer)
            camera.start()
        if not replay:
            print(f"Listening on {mic.name} — speak; Ctrl+C ends.", file=sys.stderr, flush=True)
        listener.start()
        while True:
            try:
                utterance = utterances.get(timeout=0.1)
            except queue.Empty:
                if not listener.running:
                    break
                continue
            frames = tuple(buffer.frames()) if buffer is not None else ()
            engine.handle_utterance(utterance.samples, frames)
            if voice is not None:
                voice.wait_idle(timeout=600)  # the reply is heard before the next turn
        if listen_failed:
            print(f"error: {listen_failed[-1]}", file=sys.stderr)
            code = EXIT_FAILED
        elif listener.utterances == 0:
            print(f"warning: no speech was heard in {mic.name}.", file=sys.stderr)
        elif failed or errors:
            code = EXIT_FAILED
    except KeyboardInterrupt:
        engine.cancel()
        print("\nstopped", file=sys.stderr)
        code = EXIT_OK if not replay else EXIT_INTERRUPTED
    finally:
        ended.set()
        listener.close()
        if camera is not None:
            camera.stop()
        if voice is not None:
            voice.close()
        engine.unload()
        engine.unload_recognizer()
        if store is not None:
            store.close()
    return code


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
    if args.headless:
        return run_headless(args)
    from ui.app import run_gui

    return run_gui(args)


if __name__ == "__main__":
    sys.exit(main())
