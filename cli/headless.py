"""``--headless``: a spoken conversation without a window.

Listens hands-free to ``--mic`` and prints one ``you: …`` and one
``assistant: …`` line per utterance.  Replies are spoken to ``--speaker`` (and,
with a live microphone, to the default sound device).

* A recording (``--mic FILE``) is replayed utterance by utterance: the listener
  waits for each answer to be spoken, none is dropped, and the command ends with
  the recording.
* ``--realtime`` plays the recording at wall-clock speed and never waits, like a
  person who keeps talking; a live microphone is the same.  Utterances are
  handled as in the window: a new one interrupts the spoken answer, and at most
  one waits behind the reply in progress (a newer one replaces it:
  ``Session.offer_utterance``).  A recording ends once it has ended and the last
  reply has been spoken; a device listens until Ctrl+C.  The microphone and a
  ``--speaker`` WAV share one ``Timeline`` (it starts when listening starts), so
  the WAV holds silence while nothing plays and second *t* of it is second *t*
  of the recording.
* ``--mic room:USER.wav`` (the simulated echo room) is ``--realtime``, and the
  room hears the replies: the speaker (``--speaker``, or without one a silent
  loudspeaker that only the room hears) is tapped on the microphone's timeline.
"""

from __future__ import annotations

import argparse
import queue
import sys
import threading
from collections import deque

import numpy as np

from cli.console import ConsoleProgress, fail, open_store, settings_for_run, warn
from cli.options import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, quiet_libraries
from assistant.errors import BadInputError
from assistant.events import ErrorEvent, ReplyFinished, StatusEvent, Transcribed, next_turn_id
from assistant.settings import SettingsError


NO_AUDIO = np.zeros(0, np.int16)  # an utterance replaced by a newer one before it was answered


def one_line(text: str) -> str:
    return " ".join(text.split())


def run_headless(args: argparse.Namespace) -> int:
    from assistant.devices.audio import AudioDeviceError
    from assistant.devices.camera import CameraSource, parse_source
    from assistant.devices.echo_room import EchoRoomMicrophone, RoomSpeaker, is_room_spec
    from assistant.devices.microphone import open_microphone
    from assistant.devices.speaker import open_speaker
    from assistant.devices.timeline import Timeline
    from assistant.encoders.listener import ListenEvent
    from assistant.fusion.frame_buffer import FrameBuffer
    from assistant.session import Session

    quiet_libraries(args.verbose)
    try:
        paths, settings = settings_for_run(args)
    except SettingsError as exc:
        return fail(str(exc))
    room = is_room_spec(settings.mic)  # the simulated echo room: a recording heard in real time, with our echo
    realtime = args.realtime or room
    timeline = Timeline() if realtime else None  # shared by the microphone and a --speaker WAV
    mic = open_microphone(settings.mic, realtime=realtime, timeline=timeline)
    device = mic.live and not room  # a sound card: it never ends, and nothing else speaks for it
    turn_by_turn = not mic.live and not realtime  # a recording replayed, waiting for each answer
    try:
        mic.start()  # a missing device or a broken recording is reported before any model loads
    except (BadInputError, AudioDeviceError) as exc:
        return fail(str(exc))

    speaker = None
    if args.speaker or (device and settings.speak_replies):
        try:
            speaker = open_speaker(args.speaker, realtime=not turn_by_turn, timeline=timeline)
        except AudioDeviceError as exc:
            if args.speaker:
                return fail(str(exc))
            warn(f"{exc} Replies are printed, not spoken.")
    if isinstance(mic, EchoRoomMicrophone):
        # The room hears what the app plays: --speaker (a WAV or a device), else only the room.
        speaker = speaker if speaker is not None else RoomSpeaker()  # the session taps it on mic.tap

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
                      on_speech=lambda e: e.kind == "error" and speech_failed.append(e.text),
                      tap=mic.tap if isinstance(mic, EchoRoomMicrophone) else None)
    # A recording replayed turn by turn: the listener waits for each answer (nothing is dropped).
    utterances: queue.Queue = queue.Queue(maxsize=4)
    ended = threading.Event()
    # Real time (a live microphone, or --realtime): nobody waits.  As in the window, a new
    # utterance interrupts the spoken answer and at most one waits behind the reply in
    # progress; the ones it replaced keep only their turn id (the session skips them).
    waiting: deque[tuple[int, np.ndarray]] = deque()
    arrived = threading.Condition()
    listen_failed: list[str] = []

    def on_utterance(utterance) -> None:  # the listening thread
        if turn_by_turn:
            while not ended.is_set():
                try:
                    utterances.put(utterance, timeout=0.2)
                    return
                except queue.Full:
                    continue
            return
        turn_id = next_turn_id()
        replaced = session.offer_utterance(turn_id)
        session.begin_turn(turn_id)  # it interrupts the answer being spoken
        with arrived:
            if replaced:
                for i, (older, _) in enumerate(waiting):
                    waiting[i] = (older, NO_AUDIO)
                warn("you spoke again before the last thing you said was answered: the newest is answered next.")
            waiting.append((turn_id, utterance.samples))
            arrived.notify()

    def on_listen(event: ListenEvent) -> None:
        if event.kind == "error":
            listen_failed.append(event.text)
        elif event.kind == "ignored":
            print(f"(not answered: {event.text})", file=sys.stderr, flush=True)
        elif event.kind == "wake":
            print(f"(heard '{event.text}')", file=sys.stderr, flush=True)

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
        if device:
            print(f"Listening on {mic.name} — speak; Ctrl+C ends.", file=sys.stderr, flush=True)
        if settings.wake_word:
            from assistant.encoders.wake_word import wake_phrase

            print(f"Answering only what follows '{wake_phrase(settings.wake_word)}'.", file=sys.stderr, flush=True)
        listener = session.listen(mic, on_utterance, on_listen, hands_free=True, turn_by_turn=turn_by_turn)
        while turn_by_turn:
            try:
                utterance = utterances.get(timeout=0.1)
            except queue.Empty:
                if not listener.running:
                    break
                continue
            frames = tuple(buffer.frames()) if buffer is not None else ()
            session.answer_utterance(utterance.samples, frames)
            session.wait_spoken()  # the reply is heard before the next turn
        while not turn_by_turn:
            over = not listener.running  # then every utterance has been handed over
            with arrived:
                if not waiting and not over:
                    arrived.wait(0.1)
                item = waiting.popleft() if waiting else None
            if item is None:
                if over:
                    break
                continue
            turn_id, samples = item
            try:
                frames = tuple(buffer.frames()) if buffer is not None else ()
                session.answer_utterance(samples, frames, turn_id)  # a replaced one is skipped
            finally:
                session.end_turn(turn_id)
        session.wait_spoken()  # the last reply is heard before the end
        if listen_failed:
            code = fail(listen_failed[-1])
        elif listener.utterances == 0 and listener.ignored:
            warn(f"the wake word was not heard in {mic.name}: {listener.ignored} utterance(s) were not answered.")
        elif listener.utterances == 0:
            warn(f"no speech was heard in {mic.name}.")
        elif failed or speech_failed:
            code = EXIT_FAILED
    except KeyboardInterrupt:
        session.stop()
        print("\nstopped", file=sys.stderr)
        code = EXIT_OK if device else EXIT_INTERRUPTED
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
