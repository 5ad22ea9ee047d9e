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


class CachingImageProcessor:
    """A model's image processor that prepares each distinct image once.

    The prompt of a turn is rendered and processed whole, history included
    (that is how the text finds out how many tokens each image takes), so
    without this every earlier image is resized and normalised again on every
    turn (about 70 ms a 640x480 image on two cores).  Calls go to the real
    processor one image at a time, results are kept by image key and
    arguments, and merged the way the processor merges them.  The first call
    with several images is checked against the real processor: if the merge
    does not reproduce it exactly (an architecture that batches differently),
    caching switches itself off and every call goes to the real processor.
    """

    def __init__(self, processor: Any, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.processor = processor
        self.cache = ImageFeatureCache(max_bytes)
        self.enabled = True  # False for good once a merge did not match the real processor
        self.use = True  # the caller's switch (off: every call goes to the real processor)
        self._checked = False

    def __getattr__(self, name: str) -> Any:  # everything else is the real processor's
        return getattr(self.processor, name)

    def __call__(self, images: Any = None, *args: Any, **kwargs: Any) -> Any:
        if images is None and "images" in kwargs:
            images = kwargs.pop("images")
        flat, nested = _flatten(images)
        if not (self.enabled and self.use) or args or flat is None:
            return self.processor(images, *args, **kwargs)
        detail = repr(sorted((k, repr(v)) for k, v in kwargs.items()))
        wrap = (lambda im: [[im]]) if nested else (lambda im: [im])
        parts = [self.cache.get(im, detail, lambda im: self.processor(wrap(im), **kwargs)) for im in flat]
        merged = _merge(parts, nested)
        if merged is None:
            self.enabled = False
            return self.processor(images, **kwargs)
        if len(flat) > 1 and not self._checked:
            self._checked = True
            if not _same(merged, self.processor(images, **kwargs)):
                self.enabled = False
                self.cache.clear()
                return self.processor(images, **kwargs)
        return merged


def _flatten(images: Any) -> tuple[list | None, bool]:
    """The images of a one-sample call, and whether they came nested ([[a, b]])."""
    if isinstance(images, Image.Image):
        return [images], False
    if isinstance(images, (list, tuple)) and images:
        if all(isinstance(im, Image.Image) for im in images):
            return list(images), False
        if len(images) == 1 and isinstance(images[0], (list, tuple)) and all(isinstance(im, Image.Image) for im in images[0]):
            return list(images[0]), True
    return None, False


def _merge(parts: list, nested: bool) -> Any:
    """One-image outputs joined as the processor joins a sample's images; None when unsure."""
    import torch

    first = parts[0]
    merged: dict[str, Any] = {}
    for key in first.keys():
        values = [part[key] for part in parts]
        if all(isinstance(v, torch.Tensor) for v in values):
            merged[key] = torch.cat(values, dim=1 if nested else 0)
        elif all(isinstance(v, list) for v in values):
            if nested and all(len(v) == 1 and isinstance(v[0], list) for v in values):
                merged[key] = [[x for v in values for x in v[0]]]
            else:
                merged[key] = [x for v in values for x in v]
        else:
            return None
    try:
        return type(first)(data=merged)
    except TypeError:
        return None


def _same(a: Any, b: Any) -> bool:
    import torch

    if set(a.keys()) != set(b.keys()):
        return False
    for key in a.keys():
        x, y = a[key], b[key]
        if isinstance(x, torch.Tensor) or isinstance(y, torch.Tensor):
            if not (isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor) and x.shape == y.shape and torch.equal(x, y)):
                return False
        elif x != y:
            return False
    return True
