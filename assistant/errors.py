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
    """The conversation store cannot be read or written."""
