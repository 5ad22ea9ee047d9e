"""Attention fusion over recent camera frames: which frames go to the generator with a question.

Each candidate frame gets raw scores for a few terms:

* ``sharpness``: variance of the Laplacian of a downscaled grayscale copy (blurred frames score low);
* ``novelty``: how much the frame differs from the scene, i.e. the mean absolute difference
  from the per-pixel median of all candidates (with the overall brightness shift removed,
  so auto-exposure does not count as novelty);
* ``recency``: 0 for the oldest candidate up to 1 for the newest;
* ``relevance``: image-text similarity with the question, when a ``RelevanceScorer`` is
  configured (e.g. ``ClipRelevance``) and the question is not empty.

Every term is z-scored across the candidates (with a small per-term noise floor, so
differences within sensor noise are not blown up), the z-scores are combined with the
term weights, and ``softmax(combined / temperature)`` gives one attention weight per
frame.  The top-k frames by weight go on, in time order.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from .camera import Frame

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_TERM_WEIGHTS",
    "ClipRelevance",
    "FrameChoice",
    "FrameSelector",
    "FusionResult",
    "RelevanceScorer",
]

TERMS = ("sharpness", "novelty", "recency", "relevance")

# Sharp content beats blur and an empty scene; recency breaks near-ties; the question
# (when a relevance scorer is configured) counts most.
DEFAULT_TERM_WEIGHTS: dict[str, float] = {"sharpness": 1.0, "novelty": 1.0, "recency": 0.35, "relevance": 1.5}

# The smallest spread of a term that is taken as signal, in the units it is normalised
# in: log(1 + Laplacian variance); gray levels (0-255); fraction of the time span;
# cosine similarity.
_NOISE_FLOOR = {"sharpness": 0.05, "novelty": 1.0, "recency": 1e-6, "relevance": 0.005}

SHARPNESS_SIDE = 320  # frames are measured at this longer side, so all sizes compare fairly
NOVELTY_SIZE = (64, 48)  # (width, height) of the thumbnails that novelty compares


@dataclass(frozen=True)
class FrameChoice:
    frame: Frame
    weight: float  # the softmax attention weight of this frame (over ALL candidate frames)
    scores: dict[str, float]  # the raw per-term scores: sharpness, novelty, recency, relevance (if any)


@dataclass(frozen=True)
class FusionResult:
    chosen: list[FrameChoice]  # the top-k by weight, in TIME order
    weights: list[float]  # one weight per candidate frame, in the candidates' order; sums to 1
    seconds: float  # time the selection took


@runtime_checkable
class RelevanceScorer(Protocol):
    def scores(self, frames: Sequence[Frame], question: str) -> np.ndarray:
        """One similarity per frame (higher: more related to the question)."""
        ...


class FrameSelector:
    """Scores frames, turns the scores into softmax attention weights and keeps the top ``k``.

    ``term_weights`` overrides some of ``DEFAULT_TERM_WEIGHTS`` (unknown names are an
    error; a weight of 0 switches a term off).  ``temperature`` > 0: lower makes the
    weights peakier.  A relevance scorer that fails is logged and skipped for that
    turn (the frames are still chosen by the other terms).
    """

    def __init__(
        self,
        k: int = 2,
        temperature: float = 0.5,
        term_weights: dict[str, float] | None = None,
        relevance: RelevanceScorer | None = None,
    ) -> None:
        if int(k) < 1:
            raise ValueError("FrameSelector: k must be at least 1.")
        if not (temperature > 0 and math.isfinite(temperature)):
            raise ValueError("FrameSelector: temperature must be a positive number.")
        weights = dict(DEFAULT_TERM_WEIGHTS)
        for name, value in (term_weights or {}).items():
            if name not in TERMS:
                raise ValueError(f"FrameSelector: unknown term '{name}'; the terms are {', '.join(TERMS)}.")
            if not math.isfinite(value):
                raise ValueError(f"FrameSelector: the weight of '{name}' must be a finite number.")
            weights[name] = float(value)
        self.k = int(k)
        self.temperature = float(temperature)
        self.term_weights = weights
        self.relevance = relevance

    def select(self, frames: Sequence[Frame], question: str = "") -> FusionResult:
        started = time.perf_counter()
        frames = list(frames)
        if not frames:
            return FusionResult([], [], time.perf_counter() - started)

        raw: dict[str, np.ndarray] = {}
        grays = [_gray(f.image) for f in frames]
        raw["sharpness"] = np.array([_sharpness(g) for g in grays])
        raw["novelty"] = _novelty(grays)
        times = np.array([f.t for f in frames], dtype=np.float64)
        span = float(times.max() - times.min())
        raw["recency"] = (times - times.min()) / span if span > 0 else np.ones(len(frames))
        if self.relevance is not None and question.strip() and self.term_weights["relevance"] != 0:
            try:
                rel = np.asarray(self.relevance.scores(frames, question), dtype=np.float64).reshape(-1)
                if rel.shape != (len(frames),) or not np.all(np.isfinite(rel)):
                    raise ValueError(f"expected {len(frames)} finite scores, got shape {rel.shape}")
                raw["relevance"] = rel
            except Exception:  # noqa: BLE001 - relevance is a refinement: choose without it
                log.exception("frame relevance scoring failed; choosing frames without it")

        combined = np.zeros(len(frames))
        for name, values in raw.items():
            weight = self.term_weights[name]
            if weight:
                shaped = np.log1p(values) if name == "sharpness" else values
                combined += weight * _zscore(shaped, _NOISE_FLOOR[name])
        weights = _softmax(combined / self.temperature)

        k = min(self.k, len(frames))
        # Highest weight first; on a tie the later frame wins.
        ranked = sorted(range(len(frames)), key=lambda i: (-weights[i], -frames[i].t, -frames[i].index))[:k]
        ranked.sort(key=lambda i: (frames[i].t, frames[i].index))
        chosen = [
            FrameChoice(frames[i], float(weights[i]), {name: float(values[i]) for name, values in raw.items()})
            for i in ranked
        ]
        return FusionResult(chosen, [float(w) for w in weights], time.perf_counter() - started)


# ----------------------------------------------------------------------------------------
# The terms
# ----------------------------------------------------------------------------------------


def _gray(image: np.ndarray) -> np.ndarray:
    """A grayscale copy with its longer side at SHARPNESS_SIDE (float32)."""
    import cv2

    if image.ndim == 3 and image.shape[2] == 3:
        gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    elif image.ndim == 3 and image.shape[2] == 1:
        gray = image[:, :, 0]
    elif image.ndim == 2:
        gray = image
    else:
        raise ValueError(f"a frame image has shape {image.shape}; expected H x W x 3")
    height, width = gray.shape[:2]
    scale = SHARPNESS_SIDE / max(height, width)
    if scale != 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        gray = cv2.resize(gray, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    return gray.astype(np.float32)


def _sharpness(gray: np.ndarray) -> float:
    import cv2

    laplacian = cv2.Laplacian(gray, cv2.CV_32F, ksize=1)
    return float(laplacian.var())


def _novelty(grays: list[np.ndarray]) -> np.ndarray:
    """Mean absolute difference of each frame from the per-pixel median of all frames."""
    import cv2

    if len(grays) < 2:
        return np.zeros(len(grays))
    thumbs = np.stack([cv2.resize(g, NOVELTY_SIZE, interpolation=cv2.INTER_AREA) for g in grays])
    scene = np.median(thumbs, axis=0)
    diff = thumbs - scene
    diff -= np.median(diff.reshape(len(grays), -1), axis=1)[:, None, None]  # an overall brightness shift is not novelty
    return np.abs(diff).mean(axis=(1, 2)).astype(np.float64)


def _zscore(values: np.ndarray, floor: float) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    std = float(values.std())
    return (values - values.mean()) / max(std, floor)


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max()
    exp = np.exp(shifted)
    return exp / exp.sum()


# ----------------------------------------------------------------------------------------
# Question relevance with a contrastive image-text encoder
# ----------------------------------------------------------------------------------------


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

        from .backends.base import NeverCancelled
        from .devices import pick_device, pick_dtype
        from .errors import ModelLoadError
        from .hub import resolve_model

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
            raise ModelLoadError(f"Could not load the relevance model '{model}': {_short(exc)}") from None
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
            from .memory import collect

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


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[-1] if text else type(exc).__name__).strip()[:200]
