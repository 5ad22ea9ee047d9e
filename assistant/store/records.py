"""What the chat history holds: its records, and the checks and helpers every write goes through."""

from __future__ import annotations

import errno
import hashlib
import io
import json
import logging
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from assistant.errors import HistoryError

log = logging.getLogger(__name__)

ROLES = ("user", "assistant", "system")
STATUSES = ("complete", "stopped", "failed")
TITLE_LENGTH = 60
IMAGE_ONLY_TITLE = "Image question"

# PIL format name -> file extension.
_EXTENSIONS = {"JPEG": "jpg", "MPO": "jpg", "TIFF": "tiff", "PNG": "png", "WEBP": "webp", "GIF": "gif", "BMP": "bmp"}


@dataclass(frozen=True)
class ConversationSummary:
    id: int
    title: str  # "" until the first question gives it one
    created: float  # seconds since the epoch
    updated: float
    message_count: int


@dataclass(frozen=True)
class StoredImage:
    sha256: str
    path: Path  # images_dir/ab/<sha256>.<ext>; read it with path.read_bytes()


@dataclass(frozen=True)
class StoredMessage:
    id: int
    role: str  # 'user' | 'assistant' | 'system'
    text: str
    status: str  # 'complete' | 'stopped' | 'failed'
    created: float
    meta: dict[str, Any] = field(default_factory=dict, hash=False)
    images: tuple[StoredImage, ...] = ()
    # Its versions (an edited question, a regenerated reply): this is version ``version``
    # of ``versions``, 1-based in the order they were written.
    version: int = 1
    versions: int = 1

    @property
    def turn_id(self) -> int:
        """The turn id front ends show a reopened message under (never a live turn's:
        those count up from 1); the engine finds it again by the same number."""
        return -self.id


@dataclass(frozen=True)
class SearchHit:
    conversation_id: int
    message_id: int
    conversation_title: str
    snippet: str  # one line; each match wrapped in « »
    created: float
    role: str = "user"


# -- helpers ----------------------------------------------------------------------------------


def derive_title(text: str, has_images: bool = False, limit: int = TITLE_LENGTH) -> str:
    """A conversation title from its first question: first line, cut on a word."""
    line = next((ln for ln in (text or "").splitlines() if ln.strip()), "")
    line = " ".join(line.split())
    if not line:
        return IMAGE_ONLY_TITLE if has_images else ""
    if len(line) <= limit:
        return line
    cut = line[:limit]
    space = cut.rfind(" ")
    if space >= limit // 3:  # a word boundary not too far back (text without spaces is cut hard)
        cut = cut[:space]
    return cut.rstrip(" ,.;:-–—") + "…"


def _image_ext(data: bytes) -> str:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            fmt = im.format or ""
    except Exception as exc:  # noqa: BLE001 - PIL raises many kinds for bad bytes
        raise HistoryError(f"An image could not be saved: it is not an image file ({exc}).") from None
    if not fmt:
        raise HistoryError("An image could not be saved: its format is unknown.")
    return _EXTENSIONS.get(fmt, fmt.lower())


@dataclass(frozen=True)
class PreparedImage:
    """An image checked and hashed, ready to be written."""

    sha256: str
    ext: str
    data: bytes = field(repr=False)


def prepare_image(data: bytes | bytearray | memoryview) -> PreparedImage:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise HistoryError(f"An image must be given as encoded bytes, not {type(data).__name__}.")
    data = bytes(data)
    if not data:
        raise HistoryError("An image could not be saved: it is empty.")
    return PreparedImage(hashlib.sha256(data).hexdigest(), _image_ext(data), data)


def check_role(role: object) -> str:
    if role not in ROLES:
        raise HistoryError(f"A message's role must be one of {', '.join(ROLES)}, not {role!r}.")
    return role  # type: ignore[return-value]


def check_status(status: object) -> str:
    if status not in STATUSES:
        raise HistoryError(f"A message's status must be one of {', '.join(STATUSES)}, not {status!r}.")
    return status  # type: ignore[return-value]


def check_text(text: object) -> str:
    """Validate text and normalise it to NFC, so 'café' typed either way is one word."""
    if not isinstance(text, str):
        raise HistoryError(f"A message's text must be a string, not {type(text).__name__}.")
    return unicodedata.normalize("NFC", text)


def dump_meta(meta: Mapping[str, Any] | None) -> str:
    if meta is None:
        return "{}"
    if not isinstance(meta, Mapping):
        raise HistoryError(f"A message's meta must be a dict, not {type(meta).__name__}.")
    try:
        return json.dumps(dict(meta), ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise HistoryError(f"A message's meta cannot be saved as JSON ({exc}).") from None


def load_meta(raw: str | None, message_id: int) -> dict[str, Any]:
    try:
        meta = json.loads(raw or "{}")
    except ValueError:
        log.warning("history: message %s has unreadable meta; ignored", message_id)
        return {}
    return meta if isinstance(meta, dict) else {}


def describe_os_error(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "the disk is full"
    if isinstance(exc, OSError) and exc.errno == errno.EFBIG:
        return "the file grew larger than this system allows"
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror} ({exc.filename})" if exc.filename else exc.strerror
    return str(exc) or type(exc).__name__


_SQLITE_IN_WORDS = {  # SQLite's messages, as a person reads them
    "database or disk is full": "the disk is full",
    "disk i/o error": "the disk could not be written or read (disk I/O error)",
    "attempt to write a readonly database": "the history file is read-only",
    "database is locked": "another program is holding the history (database is locked)",
}


def describe_sqlite_error(exc: BaseException) -> str:
    text = str(exc).strip()
    return _SQLITE_IN_WORDS.get(text.lower(), text or type(exc).__name__)


def describe_storage_error(exc: BaseException) -> str:
    """What went wrong in storage, in words: a full disk is "the disk is full", whichever layer saw it."""
    return describe_os_error(exc) if isinstance(exc, OSError) else describe_sqlite_error(exc)
