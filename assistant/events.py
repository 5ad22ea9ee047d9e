"""Small immutable records that flow through the pipeline.

Inputs go in as a ``UserTurn``; everything the engine says comes out as one of
the ``Event`` types.  They are plain frozen dataclasses: safe to hand between
threads and easy to assert on in tests.
"""

from __future__ import annotations

import enum
import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_turn_ids = itertools.count(1)

# Lone UTF-16 surrogates (from undecodable command-line bytes, a broken paste) cannot be
# stored or tokenized; NUL and other control characters are never meant as text.
_SURROGATES = re.compile("[\ud800-\udfff]")
_CONTROLS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def clean_text(text: str) -> str:
    """Text from a person, made safe once at the boundary: lone surrogates become U+FFFD,
    control characters other than tab and line breaks are dropped."""
    return _CONTROLS.sub("", _SURROGATES.sub("\ufffd", text))


def next_turn_id() -> int:
    return next(_turn_ids)


@dataclass(frozen=True)
class ImageInput:
    """An image the user attached: a file path, or encoded bytes (a paste)."""

    name: str
    path: Path | None = None
    data: bytes | None = field(default=None, repr=False)
    # The decoded picture, when a front end already decoded ``data`` (checked before a slow
    # model load): the engine uses it instead of decoding the bytes a second time.
    decoded: Any = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if (self.path is None) == (self.data is None):
            raise ValueError("ImageInput needs exactly one of path or data")

    @classmethod
    def from_path(cls, path: str | Path) -> ImageInput:
        p = Path(path)
        return cls(name=p.name, path=p)

    @classmethod
    def from_bytes(cls, data: bytes, name: str = "pasted image", decoded: Any = None) -> ImageInput:
        return cls(name=name, data=bytes(data), decoded=decoded)


@dataclass(frozen=True)
class UserTurn:
    """A question, from any front end; its text is cleaned here (``clean_text``), in one place."""

    text: str
    images: tuple[ImageInput, ...] = ()
    id: int = field(default_factory=next_turn_id)
    # Recent camera frames (``devices.camera.Frame``) to choose from: the fusion stage picks the ones sent.
    frames: tuple = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "text", clean_text(str(self.text)))


class State(enum.Enum):
    UNLOADED = "not loaded"
    LOADING = "loading model"
    READY = "ready"
    TRANSCRIBING = "transcribing"  # speech → text
    THINKING = "thinking"
    GENERATING = "generating"
    ERROR = "error"


@dataclass(frozen=True)
class StatusEvent:
    state: State
    detail: str = ""
    progress: float | None = None  # 0..1 while loading/downloading, when known
    model: str = ""
    device: str = ""
    memory_bytes: int | None = None  # what the loaded model takes; None when none is loaded (or unknown)
    cache_bytes: int = 0  # what the caches kept between turns take (KV cache, image features)
    dtype: str = ""  # of the loaded model ("float32", …; "" when none is loaded)
    quantization: str = "none"


@dataclass(frozen=True)
class TokenChunk:
    turn_id: int
    text: str


@dataclass(frozen=True)
class ReplyFinished:
    turn_id: int
    text: str
    stopped: bool = False  # True when the user stopped it: ``text`` is the partial reply
    tokens: int = 0
    seconds: float = 0.0
    first_token_seconds: float | None = None


@dataclass(frozen=True)
class ModelKept:
    """Switching to another model failed: the model in use stays.  ``fields`` are the
    generator settings it runs with (``Settings.GENERATOR_FIELDS``: name → value), for
    the front end to show and save again instead of the choice that failed."""

    fields: tuple[tuple[str, Any], ...]
    message: str


class ErrorKind(enum.Enum):
    MODEL_LOAD = "model_load"
    BAD_INPUT = "bad_input"
    GENERATION = "generation"
    HISTORY = "history"  # the conversation could not be saved or read
    SPEECH = "speech"  # the microphone, or speech recognition
    SETTINGS = "settings"  # a setting could not be kept as asked (an API key without a keyring)


@dataclass(frozen=True)
class ErrorEvent:
    message: str  # one clear sentence for the user
    kind: ErrorKind
    turn_id: int | None = None
    partial_text: str = ""  # what had been generated before a generation failure


@dataclass(frozen=True)
class Transcribed:
    """What the user said, recognized; ``text`` "" when no words were found (no turn follows)."""

    turn_id: int
    text: str
    audio_seconds: float = 0.0
    seconds: float = 0.0  # how long recognition took


@dataclass(frozen=True)
class FramesChosen:
    """The camera frames the fusion stage sent with a turn (``fusion.attention.FrameChoice``), in time order."""

    turn_id: int
    chosen: tuple
    candidates: int  # how many recent frames were scored


@dataclass(frozen=True)
class ConversationsListed:
    """The saved conversations, newest first (``history.ConversationSummary`` records)."""

    items: tuple
    current_id: int | None = None


@dataclass(frozen=True)
class ConversationOpened:
    """A saved conversation was opened: its messages (``history.StoredMessage``), in order."""

    conversation_id: int | None
    title: str
    messages: tuple


@dataclass(frozen=True)
class MessageVersions:
    """Which version of a message is shown (``version`` of ``versions``, 1-based): after a
    question was edited or a reply regenerated, each version is kept in the history."""

    turn_id: int
    role: str  # "user" (an edited question) or "assistant" (a regenerated reply)
    version: int
    versions: int


@dataclass(frozen=True)
class SearchResults:
    query: str
    hits: tuple  # history.SearchHit records, newest first


Event = (
    StatusEvent
    | TokenChunk
    | ReplyFinished
    | ErrorEvent
    | Transcribed
    | FramesChosen
    | ConversationsListed
    | ConversationOpened
    | MessageVersions
    | SearchResults
)
