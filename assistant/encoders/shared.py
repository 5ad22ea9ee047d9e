"""The app's one contrastive encoder, shared by search, the view labels and frame relevance.

``SharedEncoder`` holds at most one loaded ``ContrastiveEncoder``: the one the settings
name (``search_model``, "" = off).  Whoever needs it asks:

* ``get()`` never blocks and never loads: the encoder if it is ready, else None.  A
  reply never waits for the encoder (frame relevance then uses the other terms).
* ``load()`` loads it (downloading it when allowed, with progress); a background thread
  or a command-line front end calls it.  A failure is remembered per model, so it is
  said once, not on every use.

Thread-safe: ``configure`` (settings changed), ``get`` and ``load`` may come from any thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from assistant.encoders.contrastive import ContrastiveEncoder
from assistant.errors import Cancelled, ModelLoadError
from assistant.progress import NeverCancelled

log = logging.getLogger(__name__)

__all__ = ["EncoderChoice", "SharedEncoder"]


@dataclass(frozen=True)
class EncoderChoice:
    """Which encoder, and how to get it (from the settings)."""

    model: str  # hub id or folder; "" = off
    device: str = "auto"
    offline: bool = False

    @property
    def on(self) -> bool:
        return bool(self.model.strip())


class SharedEncoder:
    def __init__(self, cache_dir: Path | None, choice: EncoderChoice | None = None, *,
                 factory: Callable[..., ContrastiveEncoder] = ContrastiveEncoder) -> None:
        self.cache_dir = cache_dir
        self._factory = factory
        self._choice = choice or EncoderChoice("")
        self._encoder: ContrastiveEncoder | None = None
        self._failed: dict[EncoderChoice, str] = {}  # a load that failed, and why (said once)
        self._lock = threading.Lock()  # guards the fields above
        self._loading = threading.Lock()  # one load at a time

    @property
    def choice(self) -> EncoderChoice:
        return self._choice

    def configure(self, choice: EncoderChoice) -> bool:
        """Use ``choice`` from now on; an encoder loaded for another choice is closed.
        Returns whether anything changed."""
        with self._lock:
            if choice == self._choice:
                return False
            old, self._encoder = self._encoder, None
            self._choice = choice
        if old is not None:
            old.close()
        return True

    def get(self) -> ContrastiveEncoder | None:
        """The encoder if it is loaded for the current choice; never blocks on a load."""
        with self._lock:
            return self._encoder

    def failure(self) -> str | None:
        """Why the current choice could not be loaded, if it could not."""
        with self._lock:
            return self._failed.get(self._choice)

    def is_downloaded(self) -> bool:
        """Whether loading needs no download (a folder, or a hub id in the cache)."""
        from assistant.models.hub import ALLOW_PATTERNS, cached_snapshot, looks_like_path

        model = self._choice.model.strip()
        if not model:
            return False
        if looks_like_path(model):
            return True
        return cached_snapshot(model, self.cache_dir, ALLOW_PATTERNS) is not None

    def load(self, progress: Callable[[Any], None] | None = None, cancel: Any = None, *,
             download: bool = True, retry: bool = False) -> ContrastiveEncoder | None:
        """Load the chosen encoder (once) and return it; None when it is off.

        ``download``: fetch it from the hub when it is not in the cache (else a missing
        model fails at once).  A choice that failed before fails again at once unless
        ``retry``.  Raises ``ModelLoadError`` (said in the user's words) or ``Cancelled``.
        """
        with self._loading:
            with self._lock:
                choice, encoder = self._choice, self._encoder
                failed = self._failed.get(choice)
            if not choice.on:
                return None
            if encoder is not None:
                return encoder
            if failed is not None and not retry:
                raise ModelLoadError(failed)
            try:
                encoder = self._factory(
                    choice.model.strip(), choice.device, cache_dir=self.cache_dir, progress=progress,
                    cancel=cancel or NeverCancelled(), offline=choice.offline or not download,
                )
            except Cancelled:
                raise
            except ModelLoadError as exc:
                with self._lock:
                    self._failed[choice] = str(exc)
                raise
            except Exception as exc:  # noqa: BLE001 - a model that fails to load is said, never a crash
                log.exception("image search model failed to load")
                message = f"Could not load the image search model '{choice.model}': {exc}"
                with self._lock:
                    self._failed[choice] = message
                raise ModelLoadError(message) from None
            with self._lock:
                if self._choice != choice:  # the settings changed while it loaded
                    stale = encoder
                    encoder = None
                else:
                    self._encoder = encoder
                    self._failed.pop(choice, None)
                    stale = None
            if stale is not None:
                stale.close()
            return encoder

    def close(self) -> None:
        """Free the encoder's memory."""
        with self._lock:
            encoder, self._encoder = self._encoder, None
        if encoder is not None:
            encoder.close()
