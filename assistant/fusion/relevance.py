"""Question relevance for attention fusion, from the shared contrastive encoder (CLIP or SigLIP).

``ClipRelevance`` is the optional ``RelevanceScorer`` of ``fusion.attention``: it scores
each frame by the cosine similarity of its picture with the question.  It uses the
``ContrastiveEncoder`` that search and the view labels share (or loads one of its own
when given a model name), so a frame is embedded once whatever uses it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from assistant.devices.camera import Frame
from assistant.encoders.contrastive import ContrastiveEncoder, image_key


class ClipRelevance:
    """Scores frames against a question with a ``ContrastiveEncoder``.

    ``encoder``: the shared encoder, or a hub id / folder to load one from (then
    ``close()`` frees it; a shared encoder is left to its owner).  Image vectors are
    cached by the encoder under each frame's content hash (bounded by ``max_cached``
    for an encoder of its own), so a frame seen in several turns is encoded once;
    ``encoded_frames`` counts the frames actually run through the vision tower here.
    """

    def __init__(self, encoder: ContrastiveEncoder | str, device: str = "auto", *, max_cached: int = 512,
                 **load: Any) -> None:
        self._owned = isinstance(encoder, str)
        if isinstance(encoder, str):
            encoder = ContrastiveEncoder(encoder, device, max_cached_images=max_cached, **load)
        self.encoder = encoder
        self.encoded_frames = 0
        self._keys: dict[tuple[int, float, tuple[int, ...]], str] = {}  # frame -> content hash, computed once

    def scores(self, frames: Sequence[Frame], question: str) -> np.ndarray:
        frames = list(frames)
        if not frames:
            return np.zeros(0)
        keys = [self._key(frame) for frame in frames]
        before = self.encoder.encoded_images
        images = self.encoder.embed_images([frame.image for frame in frames], keys)
        self.encoded_frames += self.encoder.encoded_images - before
        text = self.encoder.embed_texts([question])[0]
        return (images @ text).astype(np.float64)

    def close(self) -> None:
        if self._owned:
            self.encoder.close()

    def _key(self, frame: Frame) -> str:
        ident = (frame.index, frame.t, frame.image.shape)
        key = self._keys.get(ident)
        if key is None:
            key = image_key(frame.image)
            self._keys[ident] = key
            if len(self._keys) > 4096:
                self._keys.pop(next(iter(self._keys)))
        return key
