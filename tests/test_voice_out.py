"""Spoken replies: the sentence splitter, espeak-ng through pyttsx3, the WAV recorder, stopping."""

from __future__ import annotations

import threading
import time
import wave

import numpy as np
import pytest

from assistant.events import ReplyFinished, TokenChunk, UserTurn
from assistant.settings import Settings
from assistant.devices.audio import Audio, read_audio, resample
from assistant.devices.speaker import WavRecorderSpeaker
from assistant.speech.sentences import CODE_BLOCK_PHRASE, SentenceSplitter, speakable
from assistant.session import Session
from assistant.speech.voice_out import VoiceOut
from tests.conftest import scripted_factory


def split_streamed(text: str, step: int = 3) -> list[str]:
    splitter = SentenceSplitter()
    out: list[str] = []
    for i in range(0, len(text), step):
        out += splitter.feed(text[i : i + step])
    return out + splitter.flush()


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Dr. Smith met Mr. Jones at 5 p.m. yesterday. They talked.",
         ["Dr. Smith met Mr. Jones at 5 p.m. yesterday.", "They talked."]),
        ("It costs $3.50, i.e. cheap. Version 2.0 is out! Is it? Yes.",
         ["It costs $3.50, i.e. cheap.", "Version 2.0 is out!", "Is it?", "Yes."]),
        ("Steps:\n1. Open the lid\n2. Add 2.5 cups of water\n- Wait\n\nDone.",
         ["Steps:", "Open the lid", "Add 2.5 cups of water", "Wait", "Done."]),
        ("Run this:\n```python\nprint('hi. there')\nx = 1.5\n```\nThat prints a greeting.",
         ["Run this:", CODE_BLOCK_PHRASE, "That prints a greeting."]),
        ("Great job 🎉🙂! See https://example.com/a?b=1 for **more** `info`.",
         ["Great job!", "See link for more info."]),
        ("今天天气很好。我们去公园吧！你呢？", ["今天天气很好。", "我们去公园吧！", "你呢？"]),
        ("| Name | Price |\n|---|---|\n| Tea | 2.50 |", ["Name, Price", "Tea, 2.50"]),
        ("# Summary\n> Quoted *words* here.", ["Summary", "Quoted words here."]),
    ],
)
def test_splitter_cases(text, expected):
    assert split_streamed(text) == expected
    assert split_streamed(text, step=1) == expected  # however the text is cut up


def test_a_sentence_is_released_as_soon_as_the_next_begins():
    splitter = SentenceSplitter()
    assert splitter.feed("The answer is 3.") == []  # could still be 3.5
    assert splitter.feed("5 today") == []
    assert splitter.feed(". Next") == ["The answer is 3.5 today."]
    assert splitter.flush() == ["Next"]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Well, the red mug on your desk, next to the keyboard, looks empty. It is.",
         ["Well, the red mug on your desk,", "next to the keyboard, looks empty.", "It is."]),
        ("The quick brown fox jumps: over the lazy dog. Done.", ["The quick brown fox jumps:", "over the lazy dog.", "Done."]),
        ("Yes. Then, after that, more words come, and more.", ["Yes.", "Then, after that, more words come, and more."]),
        ("It costs $3.50, i.e. cheap. Version 2.0 is out!", ["It costs $3.50, i.e. cheap.", "Version 2.0 is out!"]),
        ("**Bold words here, more** text, and then. End.", ["Bold words here, more text,", "and then.", "End."]),
        ("1,000 or 2,000 items in the list, roughly. Fine.", ["1,000 or 2,000 items in the list,", "roughly.", "Fine."]),
    ],
)
def test_the_first_phrase_goes_at_a_clause_boundary_after_a_few_words(text, expected):
    """Only a reply's first phrase goes early; every word is said once, whatever the streaming."""
    for step in (1, 3, 7):
        splitter = SentenceSplitter(first_phrase_words=4)
        out = []
        for i in range(0, len(text), step):
            out += splitter.feed(text[i : i + step])
        assert out + splitter.flush() == expected


def test_the_first_phrase_is_out_before_its_sentence_ends():
    splitter = SentenceSplitter(first_phrase_words=4)
    assert splitter.feed("Well, the red mug on your desk,") == []  # the comma could still be "1,5"
    assert splitter.feed(" next") == ["Well, the red mug on your desk,"]


def test_speakable_drops_markup_but_keeps_words():
    assert speakable("**Bold** and _it_ and ~~old~~ [docs](http://x.y) <b>tag</b>") == "Bold and it and old docs tag"
    assert speakable("snake_case_name stays") == "snake_case_name stays"


def test_resample_and_wav_round_trip(tmp_path):
    tone = (np.sin(np.linspace(0, 2 * np.pi * 440, 22050)) * 8000).astype(np.int16)
    assert len(resample(tone, 22050, 16000)) == 16000
    speaker = WavRecorderSpeaker(tmp_path / "out.wav", realtime=False)
    speaker.play(tone, 22050)
    speaker.play(resample(tone, 22050, 44100), 44100)  # a different rate is converted
    speaker.close()
    audio = read_audio(tmp_path / "out.wav")
    assert audio.rate == 22050 and abs(audio.seconds - 2.0) < 0.01


def rms(audio: Audio) -> float:
    return float(np.sqrt(np.mean(audio.samples.astype(np.float64) ** 2))) if len(audio.samples) else 0.0


@pytest.fixture
def voice_rig(tmp_path):
    """VoiceOut with espeak-ng (pyttsx3) speaking into a real-time WAV recorder."""
    events = []
    speaker = WavRecorderSpeaker(tmp_path / "spoken.wav", realtime=True)
    voice = VoiceOut(speaker, events.append)
    voice.start()
    yield voice, speaker, events
    assert voice.close()


def kinds(events):
    return [e.kind for e in events]


REPLY = (
    "Sure. The red house has a steep roof. There is a tall green tree beside it. "
    "The sun is shining in a clear blue sky, and the grass is freshly cut."
)


def test_first_sentence_is_spoken_before_the_reply_is_finished(tmp_path, paths):
    events, speech = [], []
    speaker = WavRecorderSpeaker(tmp_path / "spoken.wav", realtime=True)
    session = Session(Settings(model="scripted"), paths, lambda e: events.append((time.monotonic(), e)),
                      speaker=speaker, on_speech=speech.append,
                      backend_factory=scripted_factory(REPLY, chunk_delay=0.03))
    try:
        assert session.load()
        reply = session.answer(UserTurn("describe it"))
        finished_at = next(t for t, e in events if isinstance(e, ReplyFinished))
        first_token_at = next(t for t, e in events if isinstance(e, TokenChunk))
        assert session.wait_spoken(30)
    finally:
        session.close()
    started = [e for e in speech if e.kind == "speaking"]
    assert started and started[0].time < finished_at  # speech began while the model was still writing
    assert started[0].time - first_token_at < 1.0
    assert [e.text for e in speech if e.kind == "sentence"] == [
        "Sure.", "The red house has a steep roof.", "There is a tall green tree beside it.",
        "The sun is shining in a clear blue sky, and the grass is freshly cut.",
    ]
    audio = read_audio(speaker.path)
    words = len(reply.text.split())
    expected = words / 175 * 60  # espeak's default rate, in words per minute
    assert 0.5 * expected < audio.seconds < 2.5 * expected
    assert rms(audio) > 500  # real speech, not silence


def test_stop_mid_speech_truncates_promptly(voice_rig):
    voice, speaker, events = voice_rig
    voice.say("This is a long sentence that goes on and on for quite a while, so that we can interrupt it. " * 3)
    deadline = time.monotonic() + 10
    while "speaking" not in kinds(events) and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.5)
    stopped_at = time.monotonic()
    voice.stop()
    deadline = time.monotonic() + 2
    while "idle" not in kinds(events) and time.monotonic() < deadline:
        time.sleep(0.005)
    idle = next(e for e in events if e.kind == "idle")
    assert idle.time - stopped_at < 0.1  # silent within 100 ms
    written = speaker.samples_written / speaker.rate
    time.sleep(0.3)
    assert speaker.samples_written / speaker.rate == written  # nothing more after the stop
    spoken_for = stopped_at - next(e for e in events if e.kind == "speaking").time
    assert written < spoken_for + 0.15  # the recording ends where the stop came


def test_muted_voice_makes_no_sound(voice_rig):
    voice, speaker, events = voice_rig
    voice.set_enabled(False)
    voice.say("Nobody should hear this. Not a word.")
    assert voice.wait_idle(5)
    time.sleep(0.2)
    assert speaker.samples_written == 0 and "speaking" not in kinds(events)
    voice.set_enabled(True)
    voice.say("Now you hear me.")
    assert voice.wait_idle(10) and speaker.samples_written > 0


def test_a_stopped_reply_stays_silent_when_more_text_arrives(voice_rig):
    voice, speaker, events = voice_rig
    voice.feed(7, "First sentence here. Second")
    voice.stop(silence=[7])
    voice.feed(7, " sentence. Third one.")
    voice.end_reply(7)
    assert voice.wait_idle(5)
    spoken = [e.text for e in events if e.kind == "sentence"]
    assert "Second sentence." not in spoken and "Third one." not in spoken


def test_voice_rate_and_unknown_voice(voice_rig):
    voice, speaker, events = voice_rig
    deadline = time.monotonic() + 5
    while not voice.voices and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(voice.voices) > 1 and any("english" in v.name.lower() for v in voice.voices)
    voice.set_voice("no such voice at all")
    voice.say("Hello.")
    assert voice.wait_idle(10)
    assert any(e.kind == "error" and "no voice called" in e.text for e in events)
    # A faster rate gives shorter audio for the same words.
    durations = []
    for rate in (120, 300):
        voice.set_rate(rate)
        before = speaker.samples_written
        voice.say("The quick brown fox jumps over the lazy dog near the river bank.")
        assert voice.wait_idle(20)
        durations.append(speaker.samples_written - before)
    assert durations[1] < 0.7 * durations[0]


def test_close_while_speaking_joins_the_speech_thread(tmp_path):
    voice = VoiceOut(WavRecorderSpeaker(tmp_path / "x.wav", realtime=True))
    voice.start()
    voice.say("A sentence that takes a few seconds to say out loud, slowly and clearly. " * 2)
    time.sleep(0.3)
    started = time.monotonic()
    assert voice.close(timeout=2)
    assert time.monotonic() - started < 0.5
    assert not any(t.name == "speech" and t.is_alive() for t in threading.enumerate())


def test_pyttsx3_synthesizer_from_a_worker_thread():
    """The engine used on Windows and macOS; here it drives espeak-ng too."""
    from assistant.speech.tts import Pyttsx3Synthesizer

    result = {}

    def work():
        synth = Pyttsx3Synthesizer()
        result["audio"] = synth.synthesize("Hello from a worker thread.")
        synth.close()

    thread = threading.Thread(target=work)
    thread.start()
    thread.join(30)
    audio = result["audio"]
    assert audio.rate > 8000 and 0.8 < audio.seconds < 4 and rms(audio) > 500


def test_ask_speaks_into_a_wav_file(tiny_models, data_dir, tmp_path):
    from tests.test_cli import run

    out = tmp_path / "reply.wav"
    done = run("--ask", "Say something", "--model", tiny_models["idefics3"], "--max-new-tokens", "20",
               "--data-dir", data_dir, "--speaker", out, "--rate", "250")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() and done.stderr == ""
    audio = read_audio(out)
    assert audio.seconds > 0.3 and rms(audio) > 500
    bad = run("--ask", "hi", "--model", tiny_models["idefics3"], "--data-dir", data_dir,
              "--speaker", out, "--voice", "no-such-voice")
    assert bad.returncode == 1 and "no voice called" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_sound_device_output_through_alsa(tiny_models, data_dir, tmp_path, monkeypatch):
    """The real PyAudio speaker, on an ALSA default device that writes to a file (no sound card here)."""
    from tests.test_cli import run

    raw = tmp_path / "alsa-out.raw"
    (tmp_path / ".asoundrc").write_text(
        'pcm.!default {\n type file\n slave.pcm "null"\n file "%s"\n format "raw"\n}\n' % raw
    )
    monkeypatch.setenv("HOME", str(tmp_path))  # ALSA reads ~/.asoundrc
    done = run("--ask", "Say something", "--model", tiny_models["idefics3"], "--max-new-tokens", "12",
               "--data-dir", data_dir, "--speaker", "default")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # PortAudio's device probing does not leak onto the terminal
    samples = np.frombuffer(raw.read_bytes(), dtype="<i2")
    assert len(samples) > 22050 * 0.3 and np.sqrt(np.mean(samples.astype(np.float64) ** 2)) > 500


def test_a_failing_sound_device_turns_speech_off_with_one_message(tmp_path):
    class BrokenSpeaker(WavRecorderSpeaker):
        def play(self, chunk, rate):
            raise OSError("device unplugged")

    events = []
    voice = VoiceOut(BrokenSpeaker(tmp_path / "x.wav"), events.append)
    voice.start()
    voice.say("One. Two. Three.")
    assert voice.wait_idle(10)
    voice.say("Four.")
    assert voice.wait_idle(10)
    assert voice.close()
    problems = [e for e in events if e.kind in ("error", "disabled")]
    assert len(problems) == 1 and "device unplugged" in problems[0].text and not voice.enabled


def test_stopped_turns_are_remembered_within_bounds(tmp_path):
    from assistant.speech.voice_out import MAX_SILENCED

    voice = VoiceOut(WavRecorderSpeaker(tmp_path / "x.wav", realtime=False))
    for turn_id in range(1, 5001):
        voice.stop(silence=[turn_id])
    assert len(voice._silenced) <= MAX_SILENCED and 5000 in voice._silenced  # the newest stay silent
    voice.feed(5000, "Not a word of this. Nor this.")
    voice.end_reply(5000)
    assert voice._queue.empty()


# -- the speech thread survives failures; nothing waits for it ---------------------------------


class ToneSynth:
    """A synthesizer without espeak: a short tone per sentence; texts with "broken" fail with ``failure``."""

    voices = []

    def __init__(self, failure: BaseException | None = None, rate_failure: BaseException | None = None,
                 gate: threading.Event | None = None) -> None:
        self.failure, self.rate_failure, self.gate = failure, rate_failure, gate

    def synthesize(self, text):
        if self.gate is not None:
            self.gate.wait()  # a synthesizer that hangs until the test lets it go
        if "broken" in text.lower():
            raise self.failure
        return Audio(np.full(2205, 3000, np.int16), 22050)  # 0.1 s

    def set_rate(self, rate):
        if self.rate_failure is not None:
            raise self.rate_failure

    def set_voice(self, voice):
        pass

    def close(self):
        pass


def tone_voice(tmp_path, synth, **kwargs):
    events = []
    voice = VoiceOut(WavRecorderSpeaker(tmp_path / "x.wav", realtime=False), events.append,
                     synth_factory=lambda voice, rate: synth, **kwargs)
    voice.start()
    return voice, events


@pytest.mark.parametrize("failure", [
    OSError(28, "No space left on device"),
    wave.Error("file does not start with RIFF id"),
    RuntimeError("run loop already started"),
])
def test_a_sentence_that_cannot_be_synthesized_is_reported_once_and_speech_goes_on(tmp_path, failure):
    voice, events = tone_voice(tmp_path, ToneSynth(failure))
    try:
        voice.say("Broken one. Broken two. Fine three.")
        assert voice.wait_idle(20)
        errors = [e for e in events if e.kind == "error"]
        assert len(errors) == 1 and str(failure) in errors[0].text  # the same failure twice: one message
        assert [e.text for e in events if e.kind == "sentence"] == ["Fine three."]
        voice.say("Broken four. Fine five.")  # speech worked in between: a new failure is worth a message
        assert voice.wait_idle(20)
        assert len([e for e in events if e.kind == "error"]) == 2
        assert [e.text for e in events if e.kind == "sentence"] == ["Fine three.", "Fine five."]
        assert voice.enabled and "disabled" not in kinds(events)
    finally:
        assert voice.close()


def test_a_rate_change_that_fails_is_reported_and_speech_goes_on(tmp_path):
    voice, events = tone_voice(tmp_path, ToneSynth(rate_failure=ValueError("rate out of range")))
    try:
        voice.set_rate(9000)
        voice.say("Still spoken.")
        assert voice.wait_idle(20)
        errors = [e for e in events if e.kind == "error"]
        assert len(errors) == 1 and "rate out of range" in errors[0].text
        assert [e.text for e in events if e.kind == "sentence"] == ["Still spoken."]
    finally:
        assert voice.close()


def test_espeak_output_that_is_not_a_wav_is_a_clear_tts_error(monkeypatch):
    import subprocess

    from assistant.speech.tts import EspeakNgSynthesizer, TtsError

    synth = EspeakNgSynthesizer()
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 0, b"RIFF\x00", b""))
    with pytest.raises(TtsError, match="no usable audio"):
        synth.synthesize("Hello.")


class SpeechThreadCrash(BaseException):
    """Something no handler catches: the speech thread dies of it."""


@pytest.mark.parametrize("thread_state", ["stalled", "dead"])
def test_no_call_waits_for_a_stalled_or_dead_speech_thread(tmp_path, monkeypatch, thread_state):
    """The GUI thread feeds, stops, changes settings and closes: none of it may wait on the queue."""
    gate = threading.Event()
    if thread_state == "stalled":
        synth = ToneSynth(gate=gate)  # hangs in synthesis until the test ends
    else:
        synth = ToneSynth(SpeechThreadCrash("boom"))
        monkeypatch.setattr(threading, "excepthook", lambda args: None)  # the crash is the point
    voice, events = tone_voice(tmp_path, synth, max_queue=4)
    try:
        if thread_state == "dead":
            voice.say("Broken.")
            voice._thread.join(20)
            assert not voice._thread.is_alive()
        timings = []

        def gui():
            for i in range(3):
                for call in (lambda: voice.feed(1, "One sentence. Another sentence. " * 10),
                             lambda: voice.set_rate(150 + i), lambda: voice.set_voice(f"voice {i}"),
                             lambda: voice.end_reply(1), lambda: voice.say("More words. And more."),
                             lambda: voice.stop(silence=[1])):
                    started = time.monotonic()
                    call()
                    timings.append(time.monotonic() - started)
            started = time.monotonic()
            voice.close(timeout=0.2)
            timings.append(time.monotonic() - started)

        caller = threading.Thread(target=gui, daemon=True)
        caller.start()
        caller.join(20)
        assert not caller.is_alive(), "a call blocked on the speech queue"
        assert max(timings) < 2.0  # close waits its 0.2 s join at most; the rest return at once
    finally:
        gate.set()


def test_replies_that_never_end_are_not_remembered_forever(tmp_path):
    from assistant.speech.voice_out import MAX_OPEN_REPLIES

    voice = VoiceOut(WavRecorderSpeaker(tmp_path / "x.wav", realtime=False))
    for turn_id in range(1, 1001):
        voice.feed(turn_id, "A reply that is cut off before its end")
    assert len(voice._splitters) <= MAX_OPEN_REPLIES and 1000 in voice._splitters
