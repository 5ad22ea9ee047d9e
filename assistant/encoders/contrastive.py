"""One contrastive image-text encoder (CLIP or SigLIP) shared by every use of it.

Pictures and words go into one vector space: a picture's vector lies near the vectors
of texts that describe it.  Three stages use the same loaded model:

* attention fusion scores camera frames against the question (``fusion.relevance``);
* retrieval finds saved pictures and messages by what they show or mean (``search``);
* classification names what is in view from a list of labels (``fusion.view_labels``).

Vectors are float32, L2-normalised, on the CPU.  An image is embedded once: its vector
is cached under a key (the content hash of its pixels unless the caller names one, such
as the SHA-256 a saved image is stored under), and so is a text's.
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from assistant.errors import short_message
from assistant.settings import DEFAULT_SEARCH_MODEL

__all__ = ["ContrastiveEncoder", "DEFAULT_SEARCH_MODEL", "image_key"]

# The default, DEFAULT_SEARCH_MODEL, is OpenAI's CLIP ViT-B/32 (MIT licence): 151 M
# parameters, a 605 MB download in float32.  Its vision tower cuts a 224-pixel image
# into 7 x 7 patches of 32 pixels: 50 tokens, about a quarter of the compute of a /16
# model such as SigLIP-base-patch16-224 (197 tokens; benchmarks/search.py measures both),
# cheap enough on a laptop CPU to index a history in the background and to label the
# camera's view every second or two.


def image_key(image: np.ndarray) -> str:
    """The content hash of an image's pixels (shape included): equal pixels, equal key."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(repr((image.shape, str(image.dtype))).encode())
    digest.update(np.ascontiguousarray(image).data)
    return digest.hexdigest()


class ContrastiveEncoder:
    """A CLIP or SigLIP model from transformers: ``embed_images``, ``embed_texts``, ``label_scores``.

    ``model`` is a hub id or a local folder (resolved like the generator's model: the
    cache first, a download with ``progress`` otherwise, unless ``offline``).  It runs on
    ``pick_device(device)`` in that device's default dtype.  Thread-safe: one call runs
    the model at a time.  ``encoded_images`` counts images actually run through the
    vision tower (cache misses).  ``close()`` frees the model's memory.
    """

    def __init__(
        self,
        model: str,
        device: str = "auto",
        *,
        cache_dir: str | Path | None = None,
        progress: Callable[[Any], None] | None = None,
        cancel: Any = None,
        offline: bool = False,
        max_cached_images: int = 2048,
        max_cached_texts: int = 512,
        batch_size: int = 16,
    ) -> None:
        import torch
        from transformers import AutoModel, AutoProcessor

        from assistant.devices.compute import pick_device, pick_dtype
        from assistant.errors import ModelLoadError
        from assistant.models.hub import resolve_model
        from assistant.models.loading import MODEL_LOAD_LOCK
        from assistant.progress import NeverCancelled

        self.model_name = model
        folder = resolve_model(
            model,
            Path(cache_dir) if cache_dir else None,
            progress or (lambda _p: None),
            cancel or NeverCancelled(),
            offline=offline,
        )
        self.device = pick_device(device)
        self.dtype = pick_dtype(self.device)
        try:
            with MODEL_LOAD_LOCK:  # from_pretrained is not thread-safe (assistant/models/loading.py)
                self.processor = AutoProcessor.from_pretrained(folder)
                net = AutoModel.from_pretrained(folder, dtype=self.dtype)
        except Exception as exc:  # noqa: BLE001 - any failure here is "cannot load"
            raise ModelLoadError(f"Could not load the image search model '{model}': {short_message(exc)}") from None
        if not (hasattr(net, "get_image_features") and hasattr(net, "get_text_features")):
            raise ModelLoadError(
                f"'{model}' is not an image-text model like CLIP or SigLIP: it cannot match pictures with words."
            )
        try:
            net.to(self.device)
        except torch.cuda.OutOfMemoryError:
            raise ModelLoadError(f"The image search model '{model}' does not fit in GPU memory.") from None
        net.eval()
        self.model = net
        model_type = str(getattr(net.config, "model_type", ""))
        self.sigmoid = model_type.startswith("siglip")  # SigLIP's scores are independent sigmoids
        text_config = getattr(net.config, "text_config", None)
        max_length = getattr(text_config, "max_position_embeddings", None) or 64
        if self.sigmoid:
            # SigLIP was trained on text padded to a fixed length; other padding degrades it.
            self._text_kwargs = {"padding": "max_length", "truncation": True, "max_length": min(64, max_length)}
        else:
            self._text_kwargs = {"padding": True, "truncation": True, "max_length": max_length}
        # The learned temperature (and SigLIP's bias) that turn similarities into label scores.
        self.logit_scale = float(math.exp(float(getattr(net, "logit_scale").detach().float().cpu())))
        bias = getattr(net, "logit_bias", None)
        self.logit_bias = float(bias.detach().float().cpu()) if bias is not None else 0.0
        self._input_side = _processor_side(self.processor)
        self.max_cached_images = max(1, int(max_cached_images))
        self.max_cached_texts = max(1, int(max_cached_texts))
        self.batch_size = max(1, int(batch_size))
        self.encoded_images = 0
        self.encoded_texts = 0
        self._images: OrderedDict[str, np.ndarray] = OrderedDict()
        self._texts: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.dim = 0
        self.dim = int(self.embed_texts(["a photo"]).shape[1])
        self.encoded_texts = 0

    @property
    def closed(self) -> bool:
        return self.model is None

    # -- embeddings ------------------------------------------------------------------------

    def embed_images(self, images: Sequence[Any], keys: Sequence[str] | None = None) -> np.ndarray:
        """Vectors (n, dim) for ``images`` (H x W x 3 uint8 RGB arrays or PIL images).

        ``keys``: one cache key per image (for example its stored SHA-256); by default
        the content hash of its pixels.  Cached images are not run again.
        """
        images = list(images)
        if keys is None:
            keys = [image_key(_as_array(image)) for image in images]
        if len(keys) != len(images):
            raise ValueError("one key per image")
        out = np.zeros((len(images), self.dim), np.float32)
        with self._lock:
            self._check_open()
            missing: dict[str, int] = {}  # key -> the first image with it (equal images run once)
            for i, key in enumerate(keys):
                if key not in self._images:
                    missing.setdefault(key, i)
            todo = list(missing.items())
            fresh: dict[str, np.ndarray] = {}
            for start in range(0, len(todo), self.batch_size):
                batch = todo[start : start + self.batch_size]
                vectors = self._run_images([images[i] for _, i in batch])
                for (key, _), vector in zip(batch, vectors):
                    fresh[key] = vector
                    self._images[key] = vector
                self.encoded_images += len(batch)
            for i, key in enumerate(keys):
                vector = fresh.get(key)
                if vector is None:
                    vector = self._images[key]
                    self._images.move_to_end(key)
                out[i] = vector
            while len(self._images) > self.max_cached_images:
                self._images.popitem(last=False)
        return out

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors (n, dim) for ``texts`` (cut to the text tower's length: about 60 words)."""
        texts = [str(t) for t in texts]
        found: list[np.ndarray | None] = [None] * len(texts)
        with self._lock:
            self._check_open()
            missing = list(dict.fromkeys(text for text in texts if text not in self._texts))
            fresh: dict[str, np.ndarray] = {}
            for start in range(0, len(missing), self.batch_size):
                batch = missing[start : start + self.batch_size]
                for text, vector in zip(batch, self._run_texts(batch)):
                    fresh[text] = vector
                    self._texts[text] = vector
                self.encoded_texts += len(batch)
            for i, text in enumerate(texts):
                vector = fresh.get(text)
                if vector is None:
                    vector = self._texts[text]
                    self._texts.move_to_end(text)
                found[i] = vector
            while len(self._texts) > self.max_cached_texts:
                self._texts.popitem(last=False)
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        return np.stack(found).astype(np.float32, copy=False)

    def label_scores(self, image_vectors: np.ndarray, label_vectors: np.ndarray) -> np.ndarray:
        """How well each label fits each image, as the model was trained to say it: (n, labels).

        CLIP: a softmax over the labels (each row sums to 1).  SigLIP: an independent
        probability per label (a sigmoid with the model's bias).
        """
        logits = self.logit_scale * (np.atleast_2d(image_vectors) @ np.asarray(label_vectors).T)
        if self.sigmoid:
            return 1.0 / (1.0 + np.exp(-(logits + self.logit_bias)))
        logits = logits - logits.max(axis=1, keepdims=True)
        weights = np.exp(logits)
        return weights / weights.sum(axis=1, keepdims=True)

    def close(self) -> None:
        """Free the model (and GPU memory)."""
        with self._lock:
            on_gpu = self.model is not None and self.device.type == "cuda"
            self.model = None
            self._images.clear()
            self._texts.clear()
        if on_gpu:
            from assistant.garbage import collect

            collect()

    # -- running the towers (under the lock) ------------------------------------------------

    def _check_open(self) -> None:
        if self.model is None:
            raise RuntimeError("the image search model was closed")

    def _run_images(self, images: list[Any]) -> np.ndarray:
        import torch
        from PIL import Image

        side = self._input_side
        pil = [Image.fromarray(_shrink(_as_array(image), side)) for image in images]
        inputs = self.processor(images=pil, return_tensors="pt")
        pixels = inputs["pixel_values"].to(self.device, self.dtype)
        with torch.inference_mode():
            features = _pooled(self.model.get_image_features(pixel_values=pixels))
        return _normalise(features)

    def _run_texts(self, texts: list[str]) -> np.ndarray:
        import torch

        inputs = self.processor(text=texts, return_tensors="pt", **self._text_kwargs)
        kwargs = {"input_ids": inputs["input_ids"].to(self.device)}
        if "attention_mask" in inputs and self._text_kwargs["padding"] != "max_length":
            kwargs["attention_mask"] = inputs["attention_mask"].to(self.device)
        with torch.inference_mode():
            features = _pooled(self.model.get_text_features(**kwargs))
        return _normalise(features)


def _as_array(image: Any) -> np.ndarray:
    if isinstance(image, np.ndarray):
        return image
    return np.asarray(image.convert("RGB"))


def _processor_side(processor: Any) -> int | None:
    """The largest side length the image processor resizes or crops to, if it says."""
    image_processor = getattr(processor, "image_processor", processor)
    found: list[int] = []
    for size in (getattr(image_processor, "size", None), getattr(image_processor, "crop_size", None)):
        if size is None or not hasattr(size, "get"):
            continue
        for key in ("shortest_edge", "height", "width"):
            value = size.get(key)
            if isinstance(value, int) and value > 0:
                found.append(value)
    return max(found) if found else None


def _shrink(image: np.ndarray, side: int | None) -> np.ndarray:
    """Downscale (area filter) so the shorter side is ``side``: the processor's own resize is
    then nearly a no-op, which is much faster for camera-sized frames."""
    if not side:
        return image
    height, width = image.shape[:2]
    shorter = min(height, width)
    if shorter <= side:
        return image
    import cv2

    scale = side / shorter
    size = (max(side, round(width * scale)), max(side, round(height * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def _pooled(output: Any) -> Any:
    """transformers 4 returns the projected features; 5 returns an output whose pooler_output holds them."""
    if hasattr(output, "pooler_output"):
        return output.pooler_output
    if isinstance(output, tuple):
        return output[1] if len(output) > 1 else output[0]
    return output


def _normalise(features: Any) -> np.ndarray:
    import torch

    features = features.detach().float().cpu()
    return torch.nn.functional.normalize(features, dim=-1).numpy().astype(np.float32)
