"""Vision features, computed once per distinct image.

A vision-language model turns each image into features (vision tower +
connector) before the text model reads them; on a CPU that is most of a turn's
cost (about 4 s a SmolVLM tile on 2 cores).  ``ImageFeatureCache`` keeps those
features keyed by a hash of the image's pixels and the detail it was encoded
at, so an image sent again (a camera frame in two turns, a picture in a chat
that was reopened, a regenerated reply) is not encoded again.  It is bounded by
bytes (least recently used go first) and cleared when the model is unloaded.

The encoding itself belongs to the model: the generator passes it in as a
function.  Nothing here imports torch at module level.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from PIL import Image

DEFAULT_MAX_BYTES = 256 * 1024 * 1024


def image_key(image: Image.Image, detail: str) -> str:
    """A key for ``image``'s pixels (mode and size included) encoded at ``detail``."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{image.mode}:{image.size[0]}x{image.size[1]}:{detail}:".encode())
    digest.update(image.tobytes())
    return digest.hexdigest()


class ImageFeatureCache:
    """Features by image key, bounded by ``max_bytes``; safe to share between threads."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, Any] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0  # images that had to be encoded

    def get(self, image: Image.Image, detail: str, encode: Callable[[Image.Image], Any]) -> Any:
        """The features of ``image``: from the cache, or ``encode(image)`` (then kept)."""
        key = image_key(image, detail)
        with self._lock:
            features = self._items.get(key)
            if features is not None:
                self._items.move_to_end(key)
                self.hits += 1
                return features
        features = encode(image)  # outside the lock: encoding takes a while
        size = _nbytes(features)
        with self._lock:
            self.misses += 1
            if key not in self._items and size <= self.max_bytes:
                self._items[key] = features
                self._bytes += size
                while self._bytes > self.max_bytes:
                    _, old = self._items.popitem(last=False)
                    self._bytes -= _nbytes(old)
        return features

    @property
    def nbytes(self) -> int:
        with self._lock:
            return self._bytes

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0


def _nbytes(features: Any) -> int:
    if isinstance(features, (list, tuple)):
        return sum(_nbytes(f) for f in features)
    numel, size = getattr(features, "numel", None), getattr(features, "element_size", None)
    return int(numel() * size()) if callable(numel) and callable(size) else 0
