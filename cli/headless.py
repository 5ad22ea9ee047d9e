"""``--headless``: a spoken conversation without a window.

Listens hands-free to ``--mic`` (a WAV file: replayed utterance by utterance,
none dropped, until it ends; a device: until Ctrl+C), and prints one
``you: …`` and one ``assistant: …`` line per utterance.  Replies are spoken
to ``--speaker`` (and, with a live microphone, to the default sound device).
"""

from __future__ import annotations

import argparse
import queue
import sys
import threading

from cli.console import ConsoleProgress, fail, open_store, settings_for_run, warn
from cli.options import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, quiet_libraries
from assistant.errors import BadInputError
from assistant.events import ErrorEvent, ReplyFinished, StatusEvent, Transcribed
from assistant.settings import SettingsError


def one_line(text: str) -> str:
    return " ".join(text.split())


def run_headless(args: argparse.Namespace) -> int:
    from assistant.devices.audio import AudioDeviceError
    from assistant.devices.camera import CameraSource, parse_source
    from assistant.devices.microphone import open_microphone
    from assistant.devices.speaker import open_speaker
    from assistant.encoders.listener import ListenEvent
    from assistant.fusion.frame_buffer import FrameBuffer
    from assistant.session import Session

    quiet_libraries(args.verbose)
    try:
        paths, settings = settings_for_run(args)
    except SettingsError as exc:
        return fail(str(exc))
    mic = open_microphone(settings.mic, realtime=False)
    replay = not mic.live
    try:
        mic.start()  # a missing device or a broken recording is reported before any model loads
    except (BadInputError, AudioDeviceError) as exc:
        return fail(str(exc))

    speaker = None
    if args.speaker or (not replay and settings.speak_replies):
        try:
            speaker = open_speaker(args.speaker, realtime=not replay)
        except AudioDeviceError as exc:
            if args.speaker:
                return fail(str(exc))
            warn(f"{exc} Replies are printed, not spoken.")

    failed: list[str] = []  # turns and model loads
    speech_failed: list[str] = []  # the voice (reported by the speech thread, any time)
    progress = ConsoleProgress()

    def show(event) -> None:
        if isinstance(event, Transcribed):
            if event.text:
                print(f"you: {event.text}", flush=True)
            else:
                print(f"(no words recognized in {event.audio_seconds:.1f} s of sound)", file=sys.stderr, flush=True)
        elif isinstance(event, ReplyFinished):
            print(f"assistant: {one_line(event.text)}", flush=True)
        elif isinstance(event, ErrorEvent):
            failed.append(event.message)
            print(f"error: {event.message}", file=sys.stderr, flush=True)
        elif isinstance(event, StatusEvent):
            progress.show(event)

    store = open_store(args, paths)
    session = Session(settings, paths, show, speaker=speaker, speak=True if args.speaker else None, store=store,
                      on_speech=lambda e: e.kind == "error" and speech_failed.append(e.text))
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
                warn("answers fell behind; the oldest utterance was dropped.")

    def on_listen(event: ListenEvent) -> None:
        if event.kind == "error":
            listen_failed.append(event.text)

    camera = buffer = None
    code = EXIT_OK
    try:
        if not session.load() or not session.load_recognizer():
            progress.done()
            return fail(failed[-1] if failed else "the models could not be loaded.")
        progress.done()
        if args.camera is not None:
            buffer = FrameBuffer()
            camera = CameraSource(parse_source(args.camera), realtime=True, buffer=buffer)
            camera.start()
        if not replay:
            print(f"Listening on {mic.name} — speak; Ctrl+C ends.", file=sys.stderr, flush=True)
        listener = session.listen(mic, on_utterance, on_listen, hands_free=True)
        while True:
            try:
                utterance = utterances.get(timeout=0.1)
            except queue.Empty:
                if not listener.running:
                    break
                continue
            frames = tuple(buffer.frames()) if buffer is not None else ()
            session.answer_utterance(utterance.samples, frames)
            session.wait_spoken()  # the reply is heard before the next turn
        if listen_failed:
            code = fail(listen_failed[-1])
        elif listener.utterances == 0:
            warn(f"no speech was heard in {mic.name}.")
        elif failed or speech_failed:
            code = EXIT_FAILED
    except KeyboardInterrupt:
        session.stop()
        print("\nstopped", file=sys.stderr)
        code = EXIT_OK if not replay else EXIT_INTERRUPTED
    finally:
        ended.set()
        session.close_devices()
        mic.stop()  # already stopped when it was listened to; not when a model failed to load
        if camera is not None:
            camera.stop()
        session.release_models()
        if store is not None:
            store.close()
    return code
