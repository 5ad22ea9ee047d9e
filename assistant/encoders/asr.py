"""Speech recognition with Whisper: two backends behind one interface.

- ``TransformersWhisper``: any Whisper checkpoint in transformers format (hub id
  or folder); the GPU path (float16/bfloat16 on CUDA).
- ``FasterWhisper``: CTranslate2 checkpoints through ``faster-whisper``; int8 on
  the CPU, several times faster there than transformers in float32.

``make_recognizer`` picks the backend from the model's files, so a folder (or
hub repo) of either format just works.  ``default_asr_model`` picks per device;
the choice is measured in ``benchmarks/asr.py``.
"""

from __future__ import annotations

import abc
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from assistant.progress import CancelToken, NeverCancelled, Progress, ProgressCallback
from assistant.errors import AssistantError, BadInputError, ModelLoadError
from assistant.models.hub import ASR_ALLOW_PATTERNS, looks_like_path, resolve_model
from assistant.devices.microphone import SAMPLE_RATE

log = logging.getLogger(__name__)

# base.en: the smallest English Whisper whose accuracy holds up off clean read speech
# (tiny.en makes about half again as many errors); fast enough on a CPU in int8.
DEFAULT_ASR_CPU = "Systran/faster-whisper-base.en"  # CTranslate2 → faster-whisper, int8
DEFAULT_ASR_GPU = "openai/whisper-base.en"  # transformers, half precision on the GPU

WINDOW_SECONDS = 30  # Whisper hears at most 30 s at once


class TranscriptionError(AssistantError):
    """The recognizer failed on a recording."""


@dataclass(frozen=True)
class Transcript:
    text: str  # "" when nothing was recognized
    audio_seconds: float
    seconds: float  # time the recognizer took
    backend: str


def default_asr_model(device: str = "auto") -> str:
    """faster-whisper (int8) on the CPU, transformers on a GPU."""
    from assistant.devices.compute import pick_device

    try:
        chosen = pick_device(device)
    except AssistantError:
        chosen = None
    return DEFAULT_ASR_GPU if chosen is not None and chosen.type in ("cuda", "mps") else DEFAULT_ASR_CPU


def whisper_format(folder: Path) -> str:
    """"ctranslate2" or "transformers", from the files in a model folder."""
    if (folder / "model.bin").is_file() and not any(folder.glob("*.safetensors")):
        return "ctranslate2"
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise ModelLoadError(f"'{folder}' is not a speech model folder (no readable config.json).") from None
    if config.get("model_type") != "whisper":
        raise ModelLoadError(
            f"'{folder.name}' is a '{config.get('model_type', 'unknown')}' model, not Whisper; "
            "choose a Whisper speech model (e.g. openai/whisper-base.en)."
        )
    return "transformers"


SILENCE_PEAK = 10 ** (-50 / 20)  # a window that never gets louder than -50 dBFS holds no speech


def _windows(samples: np.ndarray) -> list[np.ndarray]:
    """Equal pieces of at most 30 s (a long push-to-talk recording); no sliver at the end."""
    limit = WINDOW_SECONDS * SAMPLE_RATE
    count = max(1, -(-len(samples) // limit))
    step = -(-len(samples) // count) if len(samples) else 1
    return [samples[i:i + step] for i in range(0, max(len(samples), 1), step)]


def _silent(audio: np.ndarray) -> bool:
    """Digital silence or a near-silent line: Whisper would "hear" words in it ("you", "Thank you.")."""
    return len(audio) == 0 or float(np.max(np.abs(audio))) < SILENCE_PEAK


def _as_float(samples: np.ndarray) -> np.ndarray:
    if samples.dtype == np.int16:
        return samples.astype(np.float32) / 32768.0
    return samples.astype(np.float32)


class SpeechRecognizer(abc.ABC):
    """Loaded and used by one thread (the pipeline's)."""

    backend = "whisper"

    def __init__(self, model: str, folder: Path | None = None) -> None:
        self.model = model
        self.folder = folder

    @abc.abstractmethod
    def load(self, progress: ProgressCallback, cancel: CancelToken) -> str:
        """Make ready; returns a short description ("base.en · faster-whisper int8 · cpu")."""

    @abc.abstractmethod
    def _transcribe(self, audio: np.ndarray) -> str:
        """Text of at most 30 s of float32 16 kHz mono audio."""

    def transcribe(self, samples: np.ndarray) -> Transcript:
        if samples.ndim != 1:
            raise BadInputError("Speech must be mono audio.")
        started = time.monotonic()
        audio = _as_float(samples)
        try:
            pieces = (self._transcribe(w).strip() for w in _windows(audio) if not _silent(w))
            text = " ".join(t for t in pieces if t)
        except AssistantError:
            raise
        except Exception as exc:  # noqa: BLE001 - one bad recording must not take the pipeline down
            log.exception("transcription failed")
            raise TranscriptionError(f"Speech recognition failed: {exc}") from None
        return Transcript(" ".join(text.split()), len(samples) / SAMPLE_RATE, time.monotonic() - started, self.backend)

    def unload(self) -> None:
        """Release the model."""


class TransformersWhisper(SpeechRecognizer):
    backend = "transformers"

    def __init__(self, model: str, folder: Path, device: str = "auto", dtype: str = "auto",
                 language: str = "") -> None:
        super().__init__(model, folder)
        self.device_name, self.dtype_name = device, dtype
        self.language = language
        self._model = None
        self._processor = None

    def load(self, progress: ProgressCallback, cancel: CancelToken) -> str:
        import torch
        from transformers import AutoProcessor, WhisperForConditionalGeneration

        from assistant.devices.compute import describe_device, pick_device, pick_dtype

        device = pick_device(self.device_name)
        dtype = pick_dtype(device, self.dtype_name)
        progress(Progress("load", None, f"Loading speech recognizer {self.model}…"))
        try:
            from assistant.models.loading import MODEL_LOAD_LOCK

            with MODEL_LOAD_LOCK:  # from_pretrained is not thread-safe (assistant/models/loading.py)
                self._processor = AutoProcessor.from_pretrained(self.folder)
                model = WhisperForConditionalGeneration.from_pretrained(self.folder, dtype=dtype)
        except (OSError, ValueError, KeyError) as exc:
            raise ModelLoadError(f"Speech model '{self.model}' could not be loaded: {str(exc).splitlines()[0]}") from None
        self._model = model.to(device).eval()
        self._device, self._dtype = device, dtype
        self._torch = torch
        self.multilingual = bool(getattr(model.generation_config, "is_multilingual", False))
        return f"{Path(self.model).name} · transformers {str(dtype).removeprefix('torch.')} · {describe_device(device)}"

    def _transcribe(self, audio: np.ndarray) -> str:
        features = self._processor(audio, sampling_rate=SAMPLE_RATE, return_tensors="pt").input_features
        kwargs = {}  # the checkpoint's own length limit (448 tokens for Whisper: 30 s of speech)
        if self.multilingual:
            kwargs["task"] = "transcribe"
            if self.language:
                kwargs["language"] = self.language
        with self._torch.inference_mode():
            ids = self._model.generate(features.to(self._device, self._dtype), **kwargs)
        return self._processor.batch_decode(ids, skip_special_tokens=True)[0]

    def unload(self) -> None:
        self._model = self._processor = None


class FasterWhisper(SpeechRecognizer):
    backend = "faster-whisper"

    def __init__(self, model: str, folder: Path, device: str = "auto", language: str = "",
                 compute_type: str = "auto", cpu_threads: int = 0) -> None:
        super().__init__(model, folder)
        self.device_name = device
        self.language = language
        self.compute_type = compute_type
        self.cpu_threads = cpu_threads
        self._model = None

    def load(self, progress: ProgressCallback, cancel: CancelToken) -> str:
        try:
            from faster_whisper import WhisperModel
        except ImportError as exc:
            raise ModelLoadError(f"'{self.model}' is a CTranslate2 model and needs faster-whisper ({exc}).") from None
        import ctranslate2

        device = self.device_name
        if device in ("auto", "mps"):  # CTranslate2 has no Metal backend
            device = "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
        elif device == "cuda" and ctranslate2.get_cuda_device_count() == 0:
            raise ModelLoadError("Device 'cuda' was chosen but CTranslate2 sees no CUDA GPU; choose 'auto' or 'cpu'.")
        compute = self.compute_type
        if compute == "auto":
            compute = "int8_float16" if device == "cuda" else "int8"
        progress(Progress("load", None, f"Loading speech recognizer {self.model}…"))
        try:
            self._model = WhisperModel(str(self.folder), device=device, compute_type=compute, cpu_threads=self.cpu_threads)
        except (RuntimeError, ValueError, OSError) as exc:
            raise ModelLoadError(f"Speech model '{self.model}' could not be loaded: {str(exc).splitlines()[0]}") from None
        self.multilingual = bool(self._model.model.is_multilingual)
        return f"{Path(self.model).name} · faster-whisper {compute} · {device}"

    def _transcribe(self, audio: np.ndarray) -> str:
        segments, _info = self._model.transcribe(
            audio,
            language=(self.language or None) if self.multilingual else "en",
            beam_size=1,
            vad_filter=False,  # our VAD already cut the utterance
            condition_on_previous_text=False,
            without_timestamps=True,
        )
        # Segments Whisper itself thinks hold no speech (no_speech_prob high and low
        # confidence) are dropped inside faster-whisper: noise does not become "Thank you."
        return " ".join(segment.text.strip() for segment in segments)

    def unload(self) -> None:
        self._model = None


def make_recognizer(
    model: str,
    device: str = "auto",
    dtype: str = "auto",
    cache_dir: Path | None = None,
    language: str = "",
    progress: ProgressCallback = lambda p: None,
    cancel: CancelToken = NeverCancelled(),
    offline: bool = False,
) -> SpeechRecognizer:
    """Find ``model`` (folder, cache or download, with progress) and wrap it in the right backend.

    ``model`` "" means the default for the device.  Not loaded yet: call ``load``.
    """
    model = model.strip() or default_asr_model(device)
    if looks_like_path(model):
        folder = Path(model).expanduser()
        if not folder.is_dir():
            raise ModelLoadError(f"Speech model folder '{model}' does not exist.")
    else:
        folder = resolve_model(model, cache_dir, progress, cancel, allow_patterns=ASR_ALLOW_PATTERNS, offline=offline)
    if whisper_format(folder) == "ctranslate2":
        return FasterWhisper(model, folder, device, language)
    return TransformersWhisper(model, folder, device, dtype, language)
