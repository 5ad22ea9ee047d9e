"""Question relevance for attention fusion: a contrastive image-text encoder (CLIP or SigLIP).

``ClipRelevance`` is the optional ``RelevanceScorer`` of ``fusion.attention``: it scores
each frame by its similarity to the question.  Image features are cached per frame.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from assistant.devices.camera import Frame
from assistant.errors import short_message

class ClipRelevance:
    """Image-text similarity with a contrastive encoder from transformers (CLIP or SigLIP).

    ``model`` is a hub id or a local folder (resolved like the generator's model:
    cache first, download with progress otherwise).  It runs on ``pick_device(device)``
    in that device's default dtype.  ``scores`` returns the cosine similarity of each
    frame with the question.  Image features are cached per frame (keyed on
    ``frame.index``, checked against ``t`` and the image size) in a bounded LRU, so a
    frame seen in several turns is encoded once; ``encoded_frames`` counts the frames
    actually run through the vision tower.  Call ``close()`` to free the model's memory.
    """

    def __init__(
        self,
        model: str,
        device: str = "auto",
        *,
        cache_dir: str | Path | None = None,
        progress: Callable[[Any], None] | None = None,
        cancel: Any = None,
        max_cached: int = 512,
        batch_size: int = 16,
        offline: bool = False,
    ) -> None:
        import torch
        from transformers import AutoModel, AutoProcessor

        from assistant.progress import NeverCancelled
        from assistant.devices.compute import pick_device, pick_dtype
        from assistant.errors import ModelLoadError
        from assistant.models.hub import resolve_model

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
            self.processor = AutoProcessor.from_pretrained(folder)
            net = AutoModel.from_pretrained(folder, dtype=self.dtype)
        except Exception as exc:  # noqa: BLE001 - any failure here is "cannot load"
            raise ModelLoadError(f"Could not load the relevance model '{model}': {short_message(exc)}") from None
        if not (hasattr(net, "get_image_features") and hasattr(net, "get_text_features")):
            raise ModelLoadError(
                f"'{model}' is not an image-text model like CLIP or SigLIP, so it cannot rate frames against a question."
            )
        try:
            net.to(self.device)
        except torch.cuda.OutOfMemoryError:
            raise ModelLoadError(f"The relevance model '{model}' does not fit in GPU memory.") from None
        net.eval()
        self.model = net
        model_type = str(getattr(net.config, "model_type", ""))
        text_config = getattr(net.config, "text_config", None)
        max_length = getattr(text_config, "max_position_embeddings", None) or 64
        if model_type.startswith("siglip"):
            # SigLIP was trained on text padded to a fixed length; other padding degrades it.
            self._text_kwargs = {"padding": "max_length", "truncation": True, "max_length": min(64, max_length)}
        else:
            self._text_kwargs = {"padding": True, "truncation": True, "max_length": max_length}
        self._input_side = _processor_side(self.processor)
        self.max_cached = max(1, int(max_cached))
        self.batch_size = max(1, int(batch_size))
        self.encoded_frames = 0  # frames run through the vision tower (cache misses)
        self._features: OrderedDict[int, tuple[tuple[float, tuple[int, ...]], Any]] = OrderedDict()
        self._texts: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()

    def scores(self, frames: Sequence[Frame], question: str) -> np.ndarray:
        frames = list(frames)
        if not frames:
            return np.zeros(0)
        if self.model is None:
            raise RuntimeError("the relevance model was closed")
        with self._lock:
            images = self._image_features(frames)  # (n, d), L2-normalised, float32 on the CPU
            text = self._text_feature(question)  # (d,)
            return (images @ text).double().numpy()

    def close(self) -> None:
        """Free the model (and GPU memory)."""
        with self._lock:
            on_gpu = self.device.type == "cuda"
            self.model = None
            self._features.clear()
            self._texts.clear()
        if on_gpu:
            from assistant.garbage import collect

            collect()

    # -- encoding --------------------------------------------------------------------------

    def _image_features(self, frames: list[Frame]) -> Any:
        import torch

        found: list[Any] = [None] * len(frames)
        missing: list[int] = []
        for i, frame in enumerate(frames):
            entry = self._features.get(frame.index)
            if entry is not None and entry[0] == (frame.t, frame.image.shape):
                self._features.move_to_end(frame.index)
                found[i] = entry[1]
            else:
                missing.append(i)
        for start in range(0, len(missing), self.batch_size):
            batch = missing[start : start + self.batch_size]
            encoded = self._encode_images([frames[i].image for i in batch])
            for i, feature in zip(batch, encoded):
                found[i] = feature
                self._features[frames[i].index] = ((frames[i].t, frames[i].image.shape), feature)
                self._features.move_to_end(frames[i].index)
            self.encoded_frames += len(batch)
        while len(self._features) > self.max_cached:
            self._features.popitem(last=False)
        return torch.stack(found)

    def _encode_images(self, images: list[np.ndarray]) -> Any:
        import torch
        from PIL import Image

        side = self._input_side
        inputs = self.processor(images=[Image.fromarray(_shrink(image, side)) for image in images], return_tensors="pt")
        pixels = inputs["pixel_values"].to(self.device, self.dtype)
        with torch.inference_mode():
            features = _pooled(self.model.get_image_features(pixel_values=pixels))
        return _normalise(features)

    def _text_feature(self, question: str) -> Any:
        import torch

        cached = self._texts.get(question)
        if cached is not None:
            self._texts.move_to_end(question)
            return cached
        inputs = self.processor(text=[question], return_tensors="pt", **self._text_kwargs)
        kwargs = {"input_ids": inputs["input_ids"].to(self.device)}
        if "attention_mask" in inputs and not self._text_kwargs["padding"] == "max_length":
            kwargs["attention_mask"] = inputs["attention_mask"].to(self.device)
        with torch.inference_mode():
            feature = _normalise(_pooled(self.model.get_text_features(**kwargs)))[0]
        self._texts[question] = feature
        while len(self._texts) > 16:
            self._texts.popitem(last=False)
        return feature


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


def _normalise(features: Any) -> Any:
    import torch

    features = features.detach().float().cpu()
    return torch.nn.functional.normalize(features, dim=-1)

