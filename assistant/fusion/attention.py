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
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from assistant.devices.camera import Frame

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_TERM_WEIGHTS",
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
