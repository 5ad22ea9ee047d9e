"""The settings dialog's fields and checks, in the user's words.

Number boxes take any number typed into them and say when it is out of range (a
box that silently turned 9999 into 99 hid the mistake); paths are checked to exist;
``SettingsError`` messages, which name fields as the code does, are put into the
words the dialog shows.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtGui import QValidator
from PySide6.QtWidgets import QAbstractSpinBox, QDoubleSpinBox, QLineEdit, QSpinBox, QWidget

from assistant.devices.audio import AUDIO_FILE_SUFFIXES, is_audio_file_name
from assistant.devices.camera import parse_source
from assistant.models.hub import looks_like_path

# What each setting is called in the dialog (and so in every message about it).
FIELD_LABELS = {
    "model": "Model",
    "device": "Device",
    "dtype": "Precision",
    "quantization": "Quantization",
    "offline": "Offline mode",
    "max_new_tokens": "Longest reply",
    "temperature": "Temperature",
    "image_detail": "Image detail",
    "system_prompt": "System prompt",
    "speak_replies": "Read replies aloud",
    "show_reply_figures": "Reply figures",
    "voice": "Voice",
    "speech_rate": "Speech rate",
    "speech_volume": "Volume",
    "camera": "Camera",
    "camera_frames": "Frames sent with a question",
    "attention_temperature": "Frame choice spread",
    "search_model": "Image search model",
    "view_labels": "What's in view",
    "view_label_list": "Things to look for",
    "labels_with_question": "Say what is in view with each question",
    "mirror_camera": "Mirror the preview",
    "mic": "Microphone",
    "asr_model": "Speech model",
    "asr_language": "Speech language",
    "hands_free": "Hands-free",
    "half_duplex": "Don't listen while replies are spoken",
    "echo_cancellation": "Echo cancellation",
    "vad_threshold": "Speech threshold",
    "vad_min_silence": "Pause that sends",
    "max_utterance": "Longest utterance",
    "wake_word": "Wake word",
    "wake_follow_up": "Follow-up time",
    "backend": "Runs on",
    "base_url": "Server address",
    "remote_model": "Server model",
    "request_timeout": "Timeout",
    "first_token_timeout": "Wait for the first word",
    "stall_timeout": "Longest pause in a reply",
    "remote_image_max_side": "Image size sent",
    "theme": "Appearance",
}

# Field names that are also plain English words are only replaced where a message starts
# with them; names with an underscore are replaced anywhere.
_NAMED = sorted((name for name in FIELD_LABELS if "_" in name), key=len, reverse=True)
_NAMES_ANYWHERE = re.compile(r"(?<![\w])(" + "|".join(map(re.escape, _NAMED)) + r")(?![\w])")
_NAME_AT_START = re.compile(r"^(" + "|".join(map(re.escape, sorted(FIELD_LABELS, key=len, reverse=True))) + r")\b")


def in_user_words(message: str) -> str:
    """A ``SettingsError`` message with the dialog's names for the fields it mentions."""
    text = _NAME_AT_START.sub(lambda m: FIELD_LABELS[m.group(1)], message.strip())
    text = _NAMES_ANYWHERE.sub(lambda m: FIELD_LABELS[m.group(1)], text)
    return text[:1].upper() + text[1:]


_RESET_LIST = re.compile(r"(were reset: )([\w, ]+)(\.)")


def readable_notice(text: str) -> str:
    """A settings-file warning (``load_settings``: "…were reset: speech_rate, device.") with the
    dialog's names for the settings it lists."""
    def names(m: re.Match) -> str:
        listed = ", ".join(FIELD_LABELS.get(n.strip(), n.strip()) for n in m.group(2).split(","))
        return f"{m.group(1)}{listed}{m.group(3)}"

    return _NAMES_ANYWHERE.sub(lambda m: FIELD_LABELS[m.group(1)], _RESET_LIST.sub(names, text))


def _number(value: float) -> str:
    return f"{value:g}"


@dataclass(frozen=True)
class Range:
    """What a number box accepts, and how to say so."""

    label: str  # "Speech rate"
    low: float
    high: float | None  # None: no upper bound
    unit: str = ""  # "words per minute"
    low_open: bool = False  # the low end itself is not allowed (above zero)

    def message(self) -> str:
        unit = f" {self.unit}" if self.unit else ""
        low = _number(self.low)
        if self.high is None:
            return f"{self.label} must be {'more than' if self.low_open else 'at least'} {low}{unit}."
        if self.low_open:
            return f"{self.label} must be more than {low} and at most {_number(self.high)}{unit}."
        return f"{self.label} must be between {low} and {_number(self.high)}{unit}."

    def holds(self, value: float) -> bool:
        above = value > self.low if self.low_open else value >= self.low
        return above and (self.high is None or value <= self.high)


_TYPABLE = 9_999_999  # anything a person may type; the range check says what is allowed


class _Bounded:
    """A number box that lets any number be typed (nothing is clamped: the dialog says what
    is wrong instead), while its arrows and Page Up/Down stay within the allowed range."""

    allowed: Range

    def _bound(self, allowed: Range) -> None:
        self.allowed = allowed
        self.setRange(-_TYPABLE, _TYPABLE)
        self.setAccelerated(True)

    def _step_bounds(self) -> tuple[float, float]:
        high = self.allowed.high if self.allowed.high is not None else _TYPABLE
        low = self.allowed.low + (self.singleStep() if self.allowed.low_open else 0)
        return low, high

    def stepBy(self, steps: int) -> None:  # noqa: N802 - Qt API
        low, high = self._step_bounds()
        value = min(max(self.value() + steps * self.singleStep(), low), high)
        self.setValue(round(value) if isinstance(self, QSpinBox) else value)
        self.selectAll()

    def stepEnabled(self) -> QAbstractSpinBox.StepEnabledFlag:  # noqa: N802 - Qt API
        low, high = self._step_bounds()
        flags = QAbstractSpinBox.StepEnabledFlag.StepNone
        if self.value() < high:
            flags |= QAbstractSpinBox.StepEnabledFlag.StepUpEnabled
        if self.value() > low:
            flags |= QAbstractSpinBox.StepEnabledFlag.StepDownEnabled
        return flags

    def problem(self) -> str | None:
        """What is wrong with what was typed, in words; None when it can be used."""
        if not self.cleanText().strip():
            return f"{self.allowed.label} is empty. {self.allowed.message()}"
        if self.validate(self.text(), 0)[0] != QValidator.State.Acceptable:
            return f"{self.allowed.label} is not a number. {self.allowed.message()}"
        if not self.allowed.holds(self.value()):
            return self.allowed.message()
        return None


class IntBox(_Bounded, QSpinBox):
    def __init__(self, allowed: Range, value: int, parent: QWidget | None = None) -> None:
        QSpinBox.__init__(self, parent)
        self._bound(allowed)
        self.setValue(value)


class FloatBox(_Bounded, QDoubleSpinBox):
    def __init__(self, allowed: Range, value: float, decimals: int = 2, step: float = 0.1,
                 parent: QWidget | None = None) -> None:
        QDoubleSpinBox.__init__(self, parent)
        self.setDecimals(decimals)
        self._bound(allowed)
        self.setSingleStep(step)
        self.setValue(value)


def editor_of(box: QAbstractSpinBox) -> QLineEdit:
    """The line edit inside a number box (it gets the box's accessible name too)."""
    return box.findChild(QLineEdit)


# -- paths ---------------------------------------------------------------------------------

def _expand(text: str) -> Path:
    return Path(os.path.expanduser(text))


def folder_problem(text: str, what: str) -> str | None:
    """A model given as a folder must exist (a hub id such as ``owner/name`` is not checked here:
    it is downloaded or found in the cache when it is used)."""
    text = text.strip()
    if not text or not looks_like_path(text):
        return None
    path = _expand(text)
    if path.is_dir():
        return None
    if path.exists():
        return f"{what}: {text} is a file, not a folder. Choose the folder the model is in, or type a hub id."
    return f"{what}: the folder {text} does not exist. Choose a folder that does, or type a hub id."


_ROOM = "room:"


def microphone_problem(spec: str) -> str | None:
    """A recording used as the microphone (``x.wav``, or ``room:x.wav?…``) must exist; a device
    number or name is found when listening starts."""
    spec = spec.strip()
    if not spec:
        return None
    room = spec[:len(_ROOM)].lower() == _ROOM
    path_text = spec[len(_ROOM):].split("?", 1)[0].strip() if room else spec
    if not room and not is_audio_file_name(spec) and not spec.startswith(("/", "~", ".", "\\")) \
            and not re.match(r"^[A-Za-z]:[\\/]", spec):
        return None  # a device number or name
    if not path_text:
        return "Microphone: the simulated echo room needs a recording: room:FILE.wav."
    path = _expand(path_text)
    if not path.is_file():
        return f"Microphone: the recording {path_text} does not exist."
    if not is_audio_file_name(path.name):
        kinds = ", ".join(AUDIO_FILE_SUFFIXES)
        return f"Microphone: {path_text} is not an audio file ({kinds})."
    return None


def camera_problem(text: str) -> str | None:
    """A camera is a device number, a stream URL, or a video file that exists."""
    try:
        source = parse_source(text)
    except ValueError as exc:
        return f"Camera: {exc}"
    if isinstance(source, int) or re.match(r"^[A-Za-z][A-Za-z0-9+.\-]*://", source):
        return None
    if not Path(source).is_file():
        return (f"Camera: the video file {text.strip()} does not exist. Type a camera number (0 is the first), "
                f"a video file, or a stream address (rtsp://…).")
    return None


def server_address_problem(text: str) -> str | None:
    """The same rule as the ``base_url`` setting, said as the dialog says it."""
    if re.match(r"^https?://[^/\s]+", text.strip()):
        return None
    return "Server address must start with http:// or https://, for example http://localhost:8000/v1."
