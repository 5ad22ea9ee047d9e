"""Voice activity detection: Silero VAD turns a stream of 32 ms chunks into utterances.

``Segmenter`` is a small state machine over the speech probability of each chunk:

- speech *starts* at the first chunk at or above ``start_threshold``; the
  utterance keeps ``pre_roll`` seconds of audio from before it, so the first
  syllable (quieter than the threshold) is not cut;
- speech *ends* once the probability has stayed below ``stop_threshold`` for
  ``min_silence`` seconds: the utterance ends where that silence began (plus a
  short pad), and the decision is ``min_silence`` later;
- bursts shorter than ``min_speech`` are dropped (a cough, a click);
- speech longer than ``max_utterance`` is split at the quietest recent moment
  and goes on as a new utterance, so nothing is lost;
- once a pause has lasted ``end_pad``, the samples the utterance will have if
  the pause turns out to be its end are known: ``take_pause()`` hands them out
  once, so recognition can start before the end is decided (speculatively).

Times are stream times: seconds since the first chunk fed.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass

import numpy as np

from assistant.devices.microphone import CHUNK, SAMPLE_RATE
from assistant.settings import Settings

log = logging.getLogger(__name__)

CHUNK_SECONDS = CHUNK / SAMPLE_RATE


@dataclass(frozen=True)
class VadConfig:
    start_threshold: float = 0.5
    stop_threshold: float = 0.35
    min_silence: float = 0.5  # seconds of non-speech that end an utterance
    min_speech: float = 0.25  # shorter bursts are not speech
    pre_roll: float = 0.3  # audio kept from before the detected start
    end_pad: float = 0.1  # audio kept after the detected end
    max_utterance: float = 30.0  # longer speech is split (Whisper hears 30 s at a time)

    def __post_init__(self) -> None:
        if not 0 < self.stop_threshold <= self.start_threshold < 1:
            raise ValueError("VAD thresholds need 0 < stop ≤ start < 1")
        if self.min_silence <= 0 or self.max_utterance <= 1 or self.pre_roll < 0 or self.min_speech < 0:
            raise ValueError("VAD durations must be positive (max_utterance above 1 s)")

    @classmethod
    def from_settings(cls, settings: Settings) -> VadConfig:
        """The detector the user configured: one threshold (the stop threshold follows it),
        the pause that ends an utterance, and the longest utterance."""
        start = float(settings.vad_threshold)
        return cls(start_threshold=start, stop_threshold=max(0.1, start - 0.15),
                   min_silence=float(settings.vad_min_silence), max_utterance=float(settings.max_utterance))


@dataclass(frozen=True)
class Utterance:
    samples: np.ndarray  # int16, 16 kHz mono, with pre-roll and end pad
    start: float  # stream time speech was detected
    end: float  # stream time speech ended
    decided: float  # stream time the end was decided (``end`` + silence heard)
    split: bool = False  # cut at max_utterance: the speaker went on
    peak_probability: float = 1.0
    origin: float = 0.0  # stream time of ``samples[0]`` (the start of the pre-roll)

    @property
    def seconds(self) -> float:
        return len(self.samples) / SAMPLE_RATE


class SileroVad:
    """Speech probability of each 512-sample chunk, from the Silero model the package ships.

    Runs with ONNX Runtime (one thread, ~0.2 ms a chunk) when it is installed,
    else the TorchScript model.
    """

    def __init__(self) -> None:
        from silero_vad import load_silero_vad

        try:
            import onnxruntime  # noqa: F401

            self.model = load_silero_vad(onnx=True)
        except ImportError:
            self.model = load_silero_vad()
        import torch

        self._torch = torch

    def __call__(self, chunk: np.ndarray) -> float:
        x = self._torch.from_numpy(chunk.astype(np.float32) / 32768.0)
        with self._torch.inference_mode():
            return float(self.model(x, SAMPLE_RATE))

    def reset(self) -> None:
        self.model.reset_states()


class Segmenter:
    """Feed chunks in stream order; get finished utterances back."""

    def __init__(self, vad: SileroVad, config: VadConfig = VadConfig()) -> None:
        self.vad = vad
        self.config = config
        self._pre: deque[np.ndarray] = deque(maxlen=max(0, round(config.pre_roll / CHUNK_SECONDS)))
        self._chunks_fed = 0  # stream time, in chunks: never reset
        self.reset()

    def reset(self) -> None:
        """Forget everything in progress (after muting, or when listening starts again)."""
        self.vad.reset()
        self._pre.clear()
        self._chunks: list[np.ndarray] = []
        self._probs: list[float] = []
        self._speaking = False
        self._start = 0.0
        self._origin = 0.0  # stream time of the first sample of the utterance in progress
        self._silent_run = 0  # consecutive chunks below stop_threshold
        self._pause: np.ndarray | None = None  # the utterance-to-be of the pause in progress, not yet taken
        self.probability = 0.0

    @property
    def time(self) -> float:
        return self._chunks_fed * CHUNK_SECONDS

    @property
    def origin(self) -> float:
        """Stream time of the first sample of the utterance in progress (and of its pause)."""
        return self._origin

    @property
    def in_speech(self) -> bool:
        return self._speaking

    @property
    def speech_seconds(self) -> float:
        """How long the speech in progress has gone on (0 when there is none)."""
        return self.time - self._start if self._speaking else 0.0

    def feed(self, chunk: np.ndarray) -> list[Utterance]:
        config = self.config
        p = self.vad(chunk)
        self.probability = p
        self._chunks_fed += 1
        now = self.time  # end of this chunk
        if not self._speaking:
            if p >= config.start_threshold:
                self._speaking = True
                self._start = now - CHUNK_SECONDS
                self._origin = self._start - len(self._pre) * CHUNK_SECONDS
                self._chunks = list(self._pre) + [chunk]
                self._probs = [0.0] * len(self._pre) + [p]
                self._pre.clear()
                self._silent_run = 0
            else:
                self._pre.append(chunk)
            return []
        self._chunks.append(chunk)
        self._probs.append(p)
        self._silent_run = self._silent_run + 1 if p < config.stop_threshold else 0
        if self._silent_run == 0:
            self._pause = None  # speech went on: that pause was not the end
        elif self._silent_run == self._pause_chunks and self._speech_seconds(now) >= config.min_speech:
            self._pause = np.concatenate(self._chunks[: len(self._chunks) - self._silent_run + self._pad_chunks()])
        done: list[Utterance] = []
        if self._silent_run * CHUNK_SECONDS >= config.min_silence:
            utterance = self._finish(now)
            if utterance is not None:
                done.append(utterance)
        elif len(self._chunks) * CHUNK_SECONDS >= config.max_utterance:
            done.append(self._split(now))
        return done

    def take_pause(self) -> np.ndarray | None:
        """The samples of the utterance in progress as they will be if the pause now
        under way ends it (exactly: same pre-roll, same end pad); once per pause, else None."""
        pause, self._pause = self._pause, None
        return pause

    def _pad_chunks(self) -> int:
        return round(self.config.end_pad / CHUNK_SECONDS)

    @property
    def _pause_chunks(self) -> int:
        """How long into a pause its utterance's samples are final (the end pad is heard)."""
        return max(1, self._pad_chunks())

    def _speech_seconds(self, now: float) -> float:
        return now - self._silent_run * CHUNK_SECONDS - self._start

    def flush(self) -> Utterance | None:
        """The end of the stream: an utterance in progress ends here."""
        if not self._speaking:
            return None
        return self._finish(self.time, at_end=True)

    def _finish(self, now: float, at_end: bool = False) -> Utterance | None:
        config = self.config
        silent = self._silent_run
        end = now - silent * CHUNK_SECONDS
        pad = min(silent, self._pad_chunks())
        self._pause = None
        keep = len(self._chunks) - silent + pad
        speech_seconds = end - self._start
        samples = np.concatenate(self._chunks[:keep]) if keep > 0 else np.zeros(0, np.int16)
        peak = max(self._probs) if self._probs else 0.0
        tail = self._chunks[keep:]
        self._speaking = False
        self._chunks, self._probs, self._silent_run = [], [], 0
        for c in tail[-self._pre.maxlen:] if self._pre.maxlen else []:
            self._pre.append(c)  # the silence after one utterance is the pre-roll of the next
        if speech_seconds < config.min_speech:
            log.debug("VAD: dropped a %.2f s burst", speech_seconds)
            return None
        return Utterance(samples, self._start, end, now, peak_probability=peak, origin=self._origin)

    def _split(self, now: float) -> Utterance:
        """Cut a too-long utterance at its quietest chunk of the last 1.5 s; go on from there."""
        window = max(1, round(1.5 / CHUNK_SECONDS))
        probs = self._probs[-window:]
        cut = len(self._probs) - window + int(np.argmin(probs)) + 1
        cut = max(1, min(cut, len(self._chunks)))
        samples = np.concatenate(self._chunks[:cut])
        end = now - (len(self._chunks) - cut) * CHUNK_SECONDS
        utterance = Utterance(samples, self._start, end, now, split=True, peak_probability=max(self._probs[:cut]),
                              origin=self._origin)
        self._chunks, self._probs = self._chunks[cut:], self._probs[cut:]
        self._pause = None
        self._start = end
        self._origin += cut * CHUNK_SECONDS
        return utterance


def contains_speech(vad: SileroVad, samples: np.ndarray, threshold: float = 0.5, min_seconds: float = 0.1) -> bool:
    """Whether a recording (push-to-talk) has at least ``min_seconds`` of speech in it."""
    vad.reset()
    needed = max(1, round(min_seconds / CHUNK_SECONDS))
    hits = 0
    for i in range(0, len(samples) - CHUNK + 1, CHUNK):
        if vad(samples[i:i + CHUNK]) >= threshold:
            hits += 1
            if hits >= needed:
                return True
    return False
