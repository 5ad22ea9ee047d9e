"""Typed application settings and the folders the app keeps its files in.

Settings live in ``settings.json`` in the user's config folder (platformdirs),
or under ``--data-dir DIR`` when one is given.  Command-line flags override a
loaded ``Settings`` for one run without writing it back.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import platformdirs

from assistant.files import atomic_write

log = logging.getLogger(__name__)

APP_NAME = "multimodal-assistant"
APP_TITLE = "Multimodal Assistant"

# SmolVLM-256M-Instruct: the smallest real instruction-tuned vision-language model
# that transformers supports natively (Idefics3 architecture, Apache-2.0).  About
# 0.5 GB of bf16 weights, under 1 GB of RAM in float32 on the CPU, and fast enough
# there to stream an answer; on a GPU it is near-instant.
DEFAULT_MODEL = "HuggingFaceTB/SmolVLM-256M-Instruct"
DEFAULT_SYSTEM_PROMPT = (
    "You are a helpful assistant on the user's desktop. Answer clearly and concisely."
)

DEVICES = ("auto", "cpu", "cuda", "mps")
DTYPES = ("auto", "float32", "bfloat16", "float16")
QUANTIZATIONS = ("none", "8bit", "4bit")  # 8-/4-bit: bitsandbytes, CUDA only
IMAGE_DETAILS = ("auto", "low", "high")  # the OpenAI API's convention: one tile, full tiling, per device

# The settings the loaded model depends on: changing one of them reloads it.
MODEL_FIELDS = ("model", "device", "dtype", "quantization")
BACKENDS = ("local", "openai")  # in-process transformers, or an OpenAI-compatible server
# Everything the loaded generator depends on, whichever backend (see ``generator_key``).
GENERATOR_FIELDS = ("backend", *MODEL_FIELDS, "base_url", "remote_model", "request_timeout",
                    "first_token_timeout", "stall_timeout", "remote_image_max_side")
# wake words that pymicro-wakeword ships (its Model enum); the names are its model ids
WAKE_WORDS = ("hey_jarvis", "okay_nabu", "hey_mycroft", "alexa")
THEMES = ("system", "light", "dark")  # the window's look: follow the desktop's light/dark, or fixed
# The shared contrastive image-text encoder (search, view labels, frame relevance).
# OpenAI's CLIP ViT-B/32 (MIT): 151 M parameters, a 605 MB download; its vision tower
# sees 50 tokens an image, about a quarter of the work of a /16 model (see
# assistant.encoders.contrastive and benchmarks/search.py).
DEFAULT_SEARCH_MODEL = "openai/clip-vit-base-patch32"
# What the camera panel's "What's in view" names by default: everyday things on and
# around a desk.  The user edits the list (Settings… → Camera).
DEFAULT_VIEW_LABELS = (
    "person, face, hand, cup, mug, glass, bottle, plate, keyboard, computer mouse, laptop, "
    "phone, book, paper, pen, scissors, glasses, watch, headphones, remote control, "
    "plant, flower, cat, dog, chair, lamp, window, door, bag, box, toy, fruit, food, "
    "receipt, card, coin, key, cable, screen, television, shoe, shirt"
)
DEFAULT_BASE_URL = "http://localhost:8000/v1"  # vLLM's default; Ollama: http://localhost:11434/v1


class SettingsError(ValueError):
    """A setting has a value the app cannot use."""


@dataclass(frozen=True)
class Settings:
    model: str = DEFAULT_MODEL
    device: str = "auto"
    dtype: str = "auto"
    quantization: str = "none"  # "8bit" / "4bit": load the weights quantized (CUDA + bitsandbytes)
    offline: bool = False  # never contact the Hugging Face hub: cached models and folders only
    max_new_tokens: int = 512
    temperature: float = 0.0  # 0 means greedy decoding
    image_detail: str = "auto"  # "low": one tile an image; "high": the model's tiling; "auto": low without a GPU
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    speak_replies: bool = True
    show_reply_figures: bool = False  # a small line under each reply: time to first word, tokens/s
    voice: str = ""  # a system voice id or name; "" is the system's default voice
    speech_rate: int = 175  # words per minute
    speech_volume: float = 1.0  # 0..1
    camera: str = "0"  # device index, video file or stream URL
    camera_frames: int = 2  # how many recent frames go with a question (top-k)
    attention_temperature: float = 0.5  # softmax temperature of the frame attention
    # The image search model: a CLIP/SigLIP hub id or folder, shared by search, the view
    # labels and frame relevance; "" = off.
    search_model: str = DEFAULT_SEARCH_MODEL
    view_labels: bool = False  # the camera panel names what is in view
    view_label_list: str = DEFAULT_VIEW_LABELS  # comma-separated labels the view is named from
    labels_with_question: bool = False  # a question with the camera says what is in view ("mug 0.62, …")
    mirror_camera: bool = True
    mic: str = ""  # microphone: device index or name, or a .wav file; "" is the system's default input
    asr_model: str = ""  # Whisper hub id or folder (transformers or CTranslate2); "" = the default for the device
    asr_language: str = ""  # for multilingual Whisper models: "en", "de", …; "" = detect
    hands_free: bool = False  # listen all the time; voice activity detection finds each utterance
    half_duplex: bool = True  # ignore the microphone while the assistant speaks (no echo cancellation)
    echo_cancellation: bool = True  # take the assistant's voice out of the microphone and keep listening
    vad_threshold: float = 0.5  # speech probability that starts an utterance
    vad_min_silence: float = 0.5  # seconds of silence that end an utterance
    max_utterance: float = 30.0  # seconds; longer speech is split, not lost
    wake_word: str = ""  # hands-free answers only after this wake word ("hey_jarvis", …); "" = off
    wake_follow_up: float = 5.0  # seconds after a reply that listen without the wake word; 0 = never
    backend: str = "local"  # "local" (transformers in this process) or "openai" (a server)
    base_url: str = DEFAULT_BASE_URL  # the server's OpenAI-compatible API root, with /v1
    remote_model: str = ""  # the model name the server serves; "" = its only model
    request_timeout: float = 60.0  # seconds: connecting, and the longest wait between two chunks
    first_token_timeout: float = 180.0  # seconds a server may take to send the first word (keep-alives don't count)
    stall_timeout: float = 60.0  # seconds a server may fall silent in the middle of a reply
    remote_image_max_side: int = 1024  # images are shrunk to this before they are sent
    theme: str = "system"  # the window's look: "system" (follows the desktop's light/dark), "light", "dark"
    # The API key is never a setting: see assistant.secrets.
    # Keys written by other versions or features: kept so saving never loses them.
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model.strip():
            raise SettingsError("model must be a Hugging Face hub id or a folder")
        if self.device not in DEVICES:
            raise SettingsError(f"device must be one of {', '.join(DEVICES)}, not {self.device!r}")
        if self.dtype not in DTYPES:
            raise SettingsError(f"dtype must be one of {', '.join(DTYPES)}, not {self.dtype!r}")
        if self.quantization not in QUANTIZATIONS:
            raise SettingsError(
                f"quantization must be one of {', '.join(QUANTIZATIONS)}, not {self.quantization!r}"
            )
        if not isinstance(self.offline, bool):
            raise SettingsError("offline must be true or false")
        if not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1:
            raise SettingsError("max_new_tokens must be a positive whole number")
        if not isinstance(self.temperature, (int, float)) or self.temperature < 0:
            raise SettingsError("temperature must be zero or positive")
        if self.image_detail not in IMAGE_DETAILS:
            raise SettingsError(f"image_detail must be one of {', '.join(IMAGE_DETAILS)}, not {self.image_detail!r}")
        if not isinstance(self.system_prompt, str):
            raise SettingsError("system_prompt must be text")
        if not isinstance(self.show_reply_figures, bool):
            raise SettingsError("show_reply_figures must be true or false")
        if not isinstance(self.speak_replies, bool) or not isinstance(self.voice, str):
            raise SettingsError("speak_replies must be true or false, and voice a name")
        if not isinstance(self.speech_rate, int) or not 40 <= self.speech_rate <= 600:
            raise SettingsError("speech_rate must be between 40 and 600 words per minute")
        if not isinstance(self.speech_volume, (int, float)) or not 0 <= self.speech_volume <= 1:
            raise SettingsError("speech_volume must be between 0 and 1")
        if not isinstance(self.camera, str) or not isinstance(self.search_model, str):
            raise SettingsError("camera and search_model must be text")
        if not isinstance(self.view_labels, bool) or not isinstance(self.labels_with_question, bool):
            raise SettingsError("view_labels and labels_with_question must be true or false")
        if not isinstance(self.view_label_list, str) or not parse_labels(self.view_label_list):
            raise SettingsError("view_label_list must name at least one thing (comma-separated)")
        if not isinstance(self.camera_frames, int) or not 1 <= self.camera_frames <= 8:
            raise SettingsError("camera_frames must be between 1 and 8")
        if not isinstance(self.attention_temperature, (int, float)) or self.attention_temperature <= 0:
            raise SettingsError("attention_temperature must be positive")
        if not all(isinstance(v, str) for v in (self.mic, self.asr_model, self.asr_language)):
            raise SettingsError("mic, asr_model and asr_language must be text")
        if not all(isinstance(v, bool) for v in (self.hands_free, self.half_duplex, self.echo_cancellation)):
            raise SettingsError("hands_free, half_duplex and echo_cancellation must be true or false")
        if not isinstance(self.vad_threshold, (int, float)) or not 0.2 <= self.vad_threshold <= 0.95:
            raise SettingsError("vad_threshold must be between 0.2 and 0.95")
        if not isinstance(self.vad_min_silence, (int, float)) or not 0.1 <= self.vad_min_silence <= 5:
            raise SettingsError("vad_min_silence must be between 0.1 and 5 seconds")
        if not isinstance(self.max_utterance, (int, float)) or not 2 <= self.max_utterance <= 120:
            raise SettingsError("max_utterance must be between 2 and 120 seconds")
        if self.wake_word not in ("", *WAKE_WORDS):
            raise SettingsError(
                f"wake_word must be one of {', '.join(WAKE_WORDS)} (or empty for off), not {self.wake_word!r}"
            )
        if (
            isinstance(self.wake_follow_up, bool)
            or not isinstance(self.wake_follow_up, (int, float))
            or not 0 <= self.wake_follow_up <= 60
        ):
            raise SettingsError("wake_follow_up must be between 0 and 60 seconds")
        if self.backend not in BACKENDS:
            raise SettingsError(f"backend must be one of {', '.join(BACKENDS)}, not {self.backend!r}")
        if not isinstance(self.base_url, str) or not re.match(r"^https?://[^/\s]+", self.base_url.strip()):
            raise SettingsError(f"base_url must be an http:// or https:// address, not {self.base_url!r}")
        if not isinstance(self.remote_model, str):
            raise SettingsError("remote_model must be text")
        if (
            isinstance(self.request_timeout, bool)
            or not isinstance(self.request_timeout, (int, float))
            or not 1 <= self.request_timeout <= 3600
        ):
            raise SettingsError("request_timeout must be between 1 and 3600 seconds")
        for name in ("first_token_timeout", "stall_timeout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 1 <= value <= 3600:
                raise SettingsError(f"{name} must be between 1 and 3600 seconds")
        if not isinstance(self.remote_image_max_side, int) or not 64 <= self.remote_image_max_side <= 8192:
            raise SettingsError("remote_image_max_side must be between 64 and 8192 pixels")
        if self.theme not in THEMES:
            raise SettingsError(f"theme must be one of {', '.join(THEMES)}, not {self.theme!r}")

    def model_key(self) -> tuple:
        """What a local model depends on (``MODEL_FIELDS``)."""
        return tuple(getattr(self, name) for name in MODEL_FIELDS)

    def generator_key(self) -> tuple:
        """What the loaded generator depends on: when this changes, the model is reloaded."""
        if self.backend == "openai":
            return (self.backend, self.base_url.strip(), self.remote_model.strip(), self.request_timeout,
                    self.first_token_timeout, self.stall_timeout,
                    self.remote_image_max_side)
        return (self.backend, *self.model_key())

    @property
    def generator_name(self) -> str:
        """The model as the status line names it before it is loaded."""
        return (self.remote_model.strip() or "server model") if self.backend == "openai" else self.model

    @property
    def generator_place(self) -> str:
        """Where the model runs: the device, or the server's URL."""
        return self.base_url.strip() if self.backend == "openai" else self.device

    def replace(self, **changes: Any) -> Settings:
        """A copy with the given fields changed; ``None`` values are ignored."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def to_dict(self) -> dict[str, Any]:
        data = dict(self.extra)
        for f in dataclasses.fields(self):
            if f.name != "extra":
                data[f.name] = getattr(self, f.name)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Settings:
        """Settings from a dict; raises ``SettingsError`` when a value is unusable
        (``salvage`` keeps the usable ones instead)."""
        data = _upgrade(data)
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        known = {k: v for k, v in data.items() if k in names}
        extra = {k: v for k, v in data.items() if k not in names}
        try:
            return cls(**known, extra=extra)
        except TypeError as exc:  # cannot happen for known names; kept as a clear message
            raise SettingsError(str(exc)) from None

    @classmethod
    def salvage(cls, data: dict[str, Any]) -> tuple[Settings, list[str]]:
        """Settings from a dict, keeping every usable value: returns them and the names of
        the fields whose values could not be used (those are left at their defaults)."""
        try:
            return cls.from_dict(data), []
        except SettingsError:
            pass
        data = _upgrade(data)
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        settings = cls(extra={k: v for k, v in data.items() if k not in names})
        bad: list[str] = []
        for name in sorted(k for k in data if k in names):
            try:
                settings = dataclasses.replace(settings, **{name: data[name]})
            except (SettingsError, TypeError, ValueError):
                bad.append(name)
        return settings, bad


def parse_labels(text: str) -> list[str]:
    """The labels of a comma-separated list (or one a line), trimmed, empty ones and repeats left out."""
    labels: list[str] = []
    for part in re.split(r"[,\n]", text or ""):
        label = " ".join(part.split())
        if label and label.casefold() not in (known.casefold() for known in labels):
            labels.append(label)
    return labels


def _upgrade(data: dict[str, Any]) -> dict[str, Any]:
    """Settings written by older versions, in today's names: ``relevance_model`` (frame
    relevance only) became the shared ``search_model``."""
    if "relevance_model" in data and "search_model" not in data:
        data = dict(data)
        old = data.pop("relevance_model")
        if isinstance(old, str) and old.strip():
            data["search_model"] = old
    return data


@dataclass(frozen=True)
class AppPaths:
    """Where the app reads and writes.  ``models`` is None: use the shared HF cache."""

    config: Path
    data: Path
    models: Path | None

    @classmethod
    def default(cls) -> AppPaths:
        return cls(
            config=Path(platformdirs.user_config_dir(APP_NAME, appauthor=False)),
            data=Path(platformdirs.user_data_dir(APP_NAME, appauthor=False)),
            models=None,
        )

    @classmethod
    def under(cls, root: str | os.PathLike[str]) -> AppPaths:
        """Every file of the app in one folder (``--data-dir``: tests, portable installs)."""
        root = Path(root).expanduser().resolve()
        return cls(config=root / "config", data=root / "data", models=root / "models")

    @property
    def settings_file(self) -> Path:
        return self.config / "settings.json"


@dataclass(frozen=True)
class LoadedSettings:
    settings: Settings
    warning: str | None = None  # shown to the user when the file could not be used


def load_settings(paths: AppPaths) -> LoadedSettings:
    """Read settings; never raises.  A missing file gives defaults; one that cannot be read
    as a JSON object (bad encoding, bad JSON, absurd nesting) is set aside and the app
    starts on defaults; single unusable values are reset and the rest kept.  Each
    problem comes back as one ``warning`` for the user."""
    path = paths.settings_file
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return LoadedSettings(Settings())
    except OSError as exc:
        return LoadedSettings(Settings(), f"Could not read {path}: {exc.strerror or exc}; using defaults.")
    try:
        data = json.loads(raw.decode("utf-8-sig"))  # a UTF-8 byte-order mark is harmless
        if not isinstance(data, dict):
            raise ValueError("it is not a JSON object")
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        why = "it is nested too deeply" if isinstance(exc, RecursionError) else str(exc)[:200]
        log.warning("settings file %s is unusable: %s", path, why)
        return LoadedSettings(Settings(), f"The settings file was unusable ({why}); using defaults.{_set_aside(path)}")
    settings, bad = Settings.salvage(data)
    if bad:
        log.warning("settings file %s: unusable values for %s", path, ", ".join(bad))
        return LoadedSettings(settings, f"Some saved settings had values that cannot be used and were reset: "
                                        f"{', '.join(bad)}. The others were kept.")
    return LoadedSettings(settings)


def _set_aside(path: Path) -> str:
    backup = path.with_name(f"{path.name}.broken-{time.strftime('%Y%m%d-%H%M%S')}")
    try:
        os.replace(path, backup)
    except OSError:
        return ""
    return f" It was kept as {backup.name}."


def save_settings(paths: AppPaths, settings: Settings) -> None:
    """Write settings atomically and durably: a crash mid-write never leaves half a file,
    two instances never write the same temporary file, and a failed write leaves none."""
    atomic_write(paths.settings_file, (json.dumps(settings.to_dict(), indent=2, ensure_ascii=False) + "\n").encode("utf-8"))
