"""Exceptions whose message is fit to show a user as it is (one clear sentence)."""


class AssistantError(Exception):
    """Base class: ``str(exc)`` is the user-facing message."""


class ModelLoadError(AssistantError):
    """The model could not be found, downloaded or loaded."""


class BadInputError(AssistantError):
    """Something the user gave us cannot be used (a broken image, empty text)."""


class GenerationError(AssistantError):
    """The model failed while answering."""


class Cancelled(AssistantError):
    """The user cancelled a long operation (a download)."""


class HistoryError(AssistantError):
    """The conversation store cannot be read or written.

    ``reason`` is the cause alone ("the disk is full"), for a caller that words its own
    sentence around it; it is the whole message when no separate cause was given."""

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason or message


def short_message(exc: BaseException, limit: int = 240) -> str:
    """The gist of a library's exception, for a message of our own: its first non-empty
    line (the last ones are usually a traceback or a list of choices), at most ``limit``
    characters; the exception's type when it says nothing."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    text = lines[0] if lines else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"
