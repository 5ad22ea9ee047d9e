"""The session: what every front end does with engine events (view, voice, stop, listening)."""

from __future__ import annotations

import threading
import time

import pytest

from assistant.devices.speaker import WavRecorderSpeaker
from assistant.events import ErrorEvent, ReplyFinished, TokenChunk, UserTurn
from assistant.session import Session
from assistant.settings import Settings
from tests.conftest import scripted_factory

LONG_REPLY = "This reply goes on for a long while, sentence after sentence, so it can be cut. " * 20


@pytest.fixture
def spoken(tmp_path):
    return WavRecorderSpeaker(tmp_path / "spoken.wav", realtime=True)


def make_session(paths, speaker, reply=LONG_REPLY, chunk_delay=0.01, **settings):
    events, speech = [], []
    session = Session(Settings(model="scripted", **settings), paths, events.append, speaker=speaker,
                      on_speech=speech.append, backend_factory=scripted_factory(reply, chunk_delay))
    return session, events, speech


def wait_for(predicate, timeout=20.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_reply_text_reaches_the_view_and_the_voice(paths, spoken):
    session, events, speech = make_session(paths, spoken, "First sentence here. And a second one.")
    try:
        assert session.load()
        reply = session.answer(UserTurn("say two things"))
        assert reply is not None and not reply.stopped
        assert "".join(e.text for e in events if isinstance(e, TokenChunk)) == reply.text
        assert session.wait_spoken(30)
        # The last sentence had no following text: it is spoken because the reply ended.
        assert [e.text for e in speech if e.kind == "sentence"] == ["First sentence here.", "And a second one."]
        assert spoken.samples_written > 0
    finally:
        session.close()


def test_stop_ends_generation_and_speech_at_once(paths, spoken):
    session, events, speech = make_session(paths, spoken, chunk_delay=0.02)
    try:
        assert session.load()
        replies = []
        worker = threading.Thread(target=lambda: replies.append(session.answer(UserTurn("talk"))))
        worker.start()
        assert wait_for(lambda: any(e.kind == "speaking" for e in speech))
        session.stop()
        worker.join(10)
        assert replies and replies[0].stopped and len(replies[0].text) < len(LONG_REPLY)
        assert wait_for(lambda: not session.voice.speaking, timeout=2)
        written = spoken.samples_written
        time.sleep(0.4)
        assert spoken.samples_written == written  # nothing more is said after Stop
    finally:
        session.close()


def test_a_new_question_silences_the_answer_being_spoken(paths, spoken):
    session, events, speech = make_session(paths, spoken, LONG_REPLY, chunk_delay=0.0)
    try:
        assert session.load()
        first = session.answer(UserTurn("first"))  # the whole reply is written, and queued for speech
        assert wait_for(lambda: any(e.kind == "speaking" for e in speech))
        session.begin_turn(first.turn_id + 1000)  # the user asks again
        assert session.busy
        assert wait_for(lambda: not session.voice.speaking, timeout=2)
        written = spoken.samples_written
        time.sleep(0.4)
        assert spoken.samples_written == written
        session.end_turn(first.turn_id + 1000)
        assert not session.busy
    finally:
        session.close()


def test_a_failed_reply_speaks_what_it_had_and_reports_once(paths, spoken):
    def failing(settings, paths):
        backend = scripted_factory("Half a sentence. Then", 0.0)(settings, paths)
        generate = backend.generate

        def generate_then_fail(messages, params, on_text, cancel):
            generate(messages, params, on_text, cancel)
            from assistant.errors import GenerationError

            raise GenerationError("The server went away.")

        backend.generate = generate_then_fail
        return backend

    events, speech = [], []
    session = Session(Settings(model="scripted"), paths, events.append, speaker=spoken,
                      on_speech=speech.append, backend_factory=failing)
    try:
        assert session.load()
        assert session.answer(UserTurn("go")) is None
        errors = [e for e in events if isinstance(e, ErrorEvent)]
        assert len(errors) == 1 and errors[0].partial_text == "Half a sentence. Then"
        assert not any(isinstance(e, ReplyFinished) for e in events)
        assert session.wait_spoken(30)
        assert [e.text for e in speech if e.kind == "sentence"] == ["Half a sentence.", "Then"]
    finally:
        session.close()


def test_half_duplex_follows_the_voice_and_the_setting(paths, spoken):
    session, events, speech = make_session(paths, spoken, "Listen to me speak for a little while now.")
    try:
        assert session.load()
        assert not session.microphone_muted()
        session.answer(UserTurn("speak"))
        assert wait_for(lambda: session.voice.speaking)
        assert session.microphone_muted()  # the assistant must not hear itself
        session.follow_settings(session.settings.replace(half_duplex=False))  # headphones
        assert not session.microphone_muted()
        session.follow_settings(session.settings.replace(half_duplex=True))
        assert session.wait_spoken(30)
        time.sleep(0.5)  # past the tail
        assert not session.microphone_muted()
    finally:
        session.close()


def test_without_a_speaker_nothing_is_spoken_and_all_else_works(paths):
    session, events, _ = make_session(paths, None, "Only text.")
    try:
        assert session.voice is None and session.load()
        assert session.answer(UserTurn("hi")).text == "Only text."
        assert session.wait_spoken(0.1) and not session.microphone_muted()
        session.stop()  # nothing to silence: no error
    finally:
        session.close()


def test_hands_free_utterances_never_pile_up(paths, tiny_whisper):
    """Three utterances arrive while a reply is being written: only the newest waits; the
    older ones are dropped before they start (nothing emitted for them), and the newest is answered."""
    import numpy as np

    from assistant.events import Transcribed

    events = []
    session = Session(Settings(model="scripted", asr_model=str(tiny_whisper)), paths, events.append,
                      backend_factory=scripted_factory("An answer."))
    try:
        assert session.load()
        events.clear()
        speech = (np.sin(np.arange(16000) * 0.05) * 8000).astype(np.int16)
        assert session.offer_utterance(101) is False  # nothing was waiting
        assert session.offer_utterance(102) is True   # 101 is dropped for it
        assert session.offer_utterance(103) is True   # and 102 for this one
        for turn_id in (101, 102):
            assert session.answer_utterance(speech, turn_id=turn_id) is None
        assert events == []
        session.answer_utterance(speech, turn_id=103)
        assert [e.turn_id for e in events if isinstance(e, Transcribed)] == [103]
        assert session.offer_utterance(104) is False  # 103 started: it no longer waits
    finally:
        session.close()


def test_listening_through_the_session_answers_with_the_speculative_transcript(paths, tmp_path, real_whisper):
    """What every front end does: utterances heard by ``Session.listen`` are answered with the
    transcript recognized during their pause (no second recognition), and the text is the same."""
    from assistant.devices.microphone import AudioFileMicrophone
    from assistant.events import Transcribed
    from tests.speech import make_conversation

    sentences = ["Please describe what you see on my desk.", "What is the weather like today?"]
    conversation = make_conversation(tmp_path / "talk.wav", sentences)
    events = []
    session = Session(Settings(model="scripted", asr_model=str(real_whisper), hands_free=True), paths,
                      events.append, backend_factory=scripted_factory("An answer."))
    try:
        assert session.load() and session.load_recognizer()
        heard = []
        listener = session.listen(AudioFileMicrophone(conversation.path, realtime=False), heard.append, lambda e: None)
        assert listener.wait_ended(60)
        for utterance in heard:
            session.answer_utterance(utterance.samples)
        assert session._speculation is not None and session._speculation.used == len(sentences) == len(heard)
        said = [e.text for e in events if isinstance(e, Transcribed)]
        assert said == [session.engine.recognizer.transcribe(u.samples).text for u in heard]
    finally:
        session.close()
