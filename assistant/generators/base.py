"""The generator backend interface shared by the in-process and remote backends."""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from PIL import Image

from assistant.progress import CancelToken, ProgressCallback


@dataclass(frozen=True)
class ChatMessage:
    role: str  # "system" | "user" | "assistant"
    text: str
    images: tuple[Image.Image, ...] = field(default=(), compare=False)


@dataclass(frozen=True)
class GenerationParams:
    max_new_tokens: int = 512
    temperature: float = 0.0  # 0: greedy
    image_detail: str = "auto"  # "low" (one tile an image) | "high" (the model's tiling) | "auto" (per device)


@dataclass(frozen=True)
class GenerationResult:
    text: str
    tokens: int
    stopped: bool  # cancelled by the user before the model finished


@dataclass(frozen=True)
class BackendInfo:
    model: str  # what the user asked for: hub id or folder
    device: str  # "cpu", "cuda:0", "mps", or a server URL
    dtype: str
    supports_images: bool
    context_length: int | None = None
    memory_bytes: int | None = None  # what the loaded weights take (RAM or GPU memory); None: unknown/remote
    quantization: str = "none"


TextCallback = Callable[[str], None]


class PromptTooLongError(Exception):
    """The conversation does not fit in the model's context window."""


class GeneratorBackend(abc.ABC):
    """Loads a model and streams replies to a chat.

    Every method is called from the one pipeline thread that owns the backend.
    """

    def prepare(self, progress: ProgressCallback, cancel: CancelToken) -> None:
        """Everything that can fail before the model takes memory: finding it, downloading
        it, reading its configuration, reaching its server.  The engine runs this while
        the model in use stays loaded, so that a wrong name or a failed download keeps
        that model.  ``load`` does it too when it has not been done.  Raise ``ModelLoadError``."""

    @abc.abstractmethod
    def load(self, progress: ProgressCallback, cancel: CancelToken) -> BackendInfo:
        """Make the model ready; raise ``ModelLoadError`` with a clear message."""

    @abc.abstractmethod
    def generate(
        self,
        messages: Sequence[ChatMessage],
        params: GenerationParams,
        on_text: TextCallback,
        cancel: CancelToken,
    ) -> GenerationResult:
        """Stream the reply to ``messages`` through ``on_text``; stop soon after ``cancel``.

        Raises ``PromptTooLongError`` when the messages do not fit, ``BadInputError``
        for inputs the model cannot take, ``GenerationError`` for failures.
        """

    @abc.abstractmethod
    def unload(self) -> None:
        """Release the model and its memory."""

    def cache_bytes(self) -> int:
        """Memory that caches kept between turns take (KV cache, image features); 0 when none."""
        return 0
