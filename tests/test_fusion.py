"""Attention fusion over recent frames (assistant.fusion.attention): which frames go with a question.

The frames come from the synthetic video of test_camera (empty scene, a sharp object held
still, the object motion-blurred, the empty scene again) played through the production
``CameraSource`` into a ``FrameBuffer``.  ``build_tiny_clip`` writes a tiny random CLIP
checkpoint (shared with the benchmark).
"""

from __future__ import annotations

import math
import statistics
import time
from pathlib import Path

import numpy as np
import pytest

from assistant.devices.camera import CameraSource, Frame
from assistant.fusion.frame_buffer import FrameBuffer
from assistant.fusion.attention import FrameSelector, FusionResult, RelevanceScorer
from assistant.encoders.contrastive import image_key
from assistant.fusion.relevance import ClipRelevance
from tests.tiny_models import build_tiny_clip
from tests.test_camera import SYNTHETIC, synthetic_frames, write_synthetic_video


@pytest.fixture(scope="module")
def buffered(tmp_path_factory) -> list[Frame]:
    """The synthetic video played into the default buffer (5 s at 4 fps): 12 frames."""
    path = write_synthetic_video(tmp_path_factory.mktemp("video") / "scene.avi")
    buffer = FrameBuffer()
    source = CameraSource(path, realtime=False, buffer=buffer)
    source.start()
    assert source.wait_until_ended(timeout=10)
    assert source.stop()
    frames = buffer.frames()
    assert len(frames) == 12
    return frames


def segment(frame: Frame) -> str:
    return SYNTHETIC.segment(frame.t)


def by_segment(frames: list[Frame], weights: list[float]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for frame, weight in zip(frames, weights):
        out.setdefault(segment(frame), []).append(weight)
    return out


def entropy(weights: list[float]) -> float:
    return -sum(w * math.log(w) for w in weights if w > 0)


def check_result(result: FusionResult, frames: list[Frame]) -> None:
    assert len(result.weights) == len(frames)
    assert sum(result.weights) == pytest.approx(1.0)
    assert all(0.0 <= w <= 1.0 for w in result.weights)
    times = [c.frame.t for c in result.chosen]
    assert times == sorted(times), "chosen frames go in time order"
    position = {id(f): i for i, f in enumerate(frames)}
    for choice in result.chosen:
        assert choice.weight == result.weights[position[id(choice.frame)]]
    # the chosen ones are the top-k by weight
    if result.chosen:
        lowest_chosen = min(c.weight for c in result.chosen)
        others = [w for f, w in zip(frames, result.weights) if all(f is not c.frame for c in result.chosen)]
        assert all(w <= lowest_chosen for w in others)


# --------------------------------------------------------------------------------------------
# Sharpness, novelty, recency
# --------------------------------------------------------------------------------------------


def test_picks_the_sharp_object_over_blurred_and_empty_frames(buffered):
    assert {segment(f) for f in buffered} == {"empty", "sharp", "blurred"}
    result = FrameSelector().select(buffered, "what is this?")
    check_result(result, buffered)
    assert len(result.chosen) == 2
    for choice in result.chosen:
        assert SYNTHETIC.sharp[0] <= choice.frame.t < SYNTHETIC.sharp[1], choice.frame.t
        assert set(choice.scores) == {"sharpness", "novelty", "recency"}
    groups = by_segment(buffered, result.weights)
    assert min(groups["sharp"]) > max(groups["blurred"] + groups["empty"])
    assert sum(groups["sharp"]) > 0.9


def test_the_raw_scores_tell_the_segments_apart(buffered):
    result = FrameSelector(k=len(buffered)).select(buffered)
    scores = {id(c.frame): c.scores for c in result.chosen}
    sharpness = {s: [scores[id(f)]["sharpness"] for f in buffered if segment(f) == s] for s in ("sharp", "blurred", "empty")}
    novelty = {s: [scores[id(f)]["novelty"] for f in buffered if segment(f) == s] for s in ("sharp", "blurred", "empty")}
    assert min(sharpness["sharp"]) > 1.5 * max(sharpness["blurred"] + sharpness["empty"])
    assert min(novelty["sharp"] + novelty["blurred"]) > 3 * max(novelty["empty"])
    recency = [scores[id(f)]["recency"] for f in buffered]
    assert recency[0] == 0.0 and recency[-1] == 1.0 and recency == sorted(recency)


@pytest.mark.parametrize("k", [1, 3, 4])
def test_k_is_respected(buffered, k):
    result = FrameSelector(k=k).select(buffered)
    check_result(result, buffered)
    assert len(result.chosen) == k
    assert all(segment(c.frame) == "sharp" for c in result.chosen)


def test_k_larger_than_the_frames_gives_all_of_them(buffered):
    result = FrameSelector(k=50).select(buffered)
    check_result(result, buffered)
    assert [c.frame for c in result.chosen] == buffered


def test_no_frames_no_choice():
    result = FrameSelector().select([], "what is this?")
    assert result.chosen == [] and result.weights == [] and result.seconds >= 0


def test_one_frame_gets_all_the_weight(buffered):
    result = FrameSelector().select(buffered[:1])
    assert result.weights == [1.0] and result.chosen[0].frame is buffered[0]


def test_identical_frames_prefer_the_latest():
    image = next(iter(synthetic_frames()))[2]
    frames = [Frame(image=image, t=i * 0.25, index=i) for i in range(8)]
    result = FrameSelector(k=1).select(frames)
    assert sum(result.weights) == pytest.approx(1.0)
    assert result.chosen[0].frame is frames[-1]
    assert result.weights == sorted(result.weights)


def test_temperature_changes_the_spread(buffered):
    spreads = []
    for temperature in (0.1, 0.5, 2.0, 10.0):
        result = FrameSelector(temperature=temperature).select(buffered)
        check_result(result, buffered)
        spreads.append((entropy(result.weights), max(result.weights)))
    entropies, peaks = zip(*spreads)
    assert list(entropies) == sorted(entropies), entropies  # hotter: flatter
    assert list(peaks) == sorted(peaks, reverse=True), peaks
    assert entropies[-1] > 0.95 * math.log(len(buffered))  # nearly uniform
    assert peaks[0] > 0.6  # nearly one-hot


def test_term_weights_switch_terms_off(buffered):
    only_recency = FrameSelector(k=1, term_weights={"sharpness": 0, "novelty": 0}).select(buffered)
    assert only_recency.chosen[0].frame is buffered[-1]
    assert only_recency.weights == sorted(only_recency.weights)


def test_bad_settings_are_rejected():
    with pytest.raises(ValueError):
        FrameSelector(k=0)
    with pytest.raises(ValueError):
        FrameSelector(temperature=0)
    with pytest.raises(ValueError, match="unknown term"):
        FrameSelector(term_weights={"sharpnes": 1.0})


def test_select_is_fast_for_a_five_second_buffer():
    images = [rgb for _t, _s, rgb in synthetic_frames()]
    frames = [Frame(image=images[(i * 8) % len(images)], t=i * 0.25, index=i) for i in range(20)]  # 5 s at 4 fps
    selector = FrameSelector()
    selector.select(frames)  # warm up
    times = []
    for _ in range(7):
        times.append(selector.select(frames, "what is this?").seconds)
    assert statistics.median(times) < 0.05, times


# --------------------------------------------------------------------------------------------
# Question relevance
# --------------------------------------------------------------------------------------------


class FixedRelevance:
    """A RelevanceScorer with controlled scores: 1 for the blurred frames, 0 for the others."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, str]] = []

    def scores(self, frames, question):
        self.calls.append((len(frames), question))
        return np.array([1.0 if segment(f) == "blurred" else 0.0 for f in frames])


def test_relevance_changes_the_choice(buffered):
    scorer = FixedRelevance()
    assert isinstance(scorer, RelevanceScorer)
    without = FrameSelector().select(buffered, "what was moving?")
    with_relevance = FrameSelector(relevance=scorer).select(buffered, "what was moving?")
    check_result(with_relevance, buffered)
    assert scorer.calls == [(len(buffered), "what was moving?")]
    assert all(segment(c.frame) == "sharp" for c in without.chosen)
    assert [segment(c.frame) for c in with_relevance.chosen] == ["blurred", "blurred"]
    assert all(c.scores["relevance"] == 1.0 for c in with_relevance.chosen)
    # a zero relevance weight switches it off again
    off = FrameSelector(relevance=scorer, term_weights={"relevance": 0}).select(buffered, "what was moving?")
    assert off.weights == pytest.approx(without.weights)


def test_relevance_needs_a_question(buffered):
    scorer = FixedRelevance()
    result = FrameSelector(relevance=scorer).select(buffered, "   ")
    assert scorer.calls == []
    assert all("relevance" not in c.scores for c in result.chosen)


def test_a_failing_relevance_scorer_falls_back(buffered, caplog):
    class Broken:
        def scores(self, frames, question):
            raise RuntimeError("CUDA out of memory")

    result = FrameSelector(relevance=Broken()).select(buffered, "what is this?")
    check_result(result, buffered)
    assert all(segment(c.frame) == "sharp" and "relevance" not in c.scores for c in result.chosen)
    assert "relevance scoring failed" in caplog.text


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory) -> Path:
    return build_tiny_clip(tmp_path_factory.mktemp("clip") / "tiny-clip")


def test_clip_relevance_end_to_end_with_a_cache_per_frame(buffered, tiny_clip):
    relevance = ClipRelevance(str(tiny_clip), device="cpu")
    distinct = len({image_key(f.image) for f in buffered})  # a still scene repeats frames: each runs once
    assert 1 < distinct <= len(buffered)
    try:
        assert relevance.encoded_frames == 0
        selector = FrameSelector(relevance=relevance)
        first = selector.select(buffered, "What is on the yellow label?")
        check_result(first, buffered)
        assert all("relevance" in c.scores for c in first.chosen)
        assert all(-1.0 <= c.scores["relevance"] <= 1.0 for c in first.chosen)
        assert relevance.encoded_frames == distinct

        # The next turn sees the same frames (and two new ones): only the new ones are encoded.
        again = selector.select(buffered, "And what colour is it?")
        assert relevance.encoded_frames == distinct  # 0 new
        check_result(again, buffered)
        newer = [Frame(image=f.image[::-1].copy(), t=f.t + 3.0, index=10_000 + i) for i, f in enumerate(buffered[:2])]
        selector.select(buffered[2:] + newer, "And now?")
        assert relevance.encoded_frames == distinct + 2
        # A frame with the same pixels as one seen before (a still scene) is not encoded again:
        # images are cached by the content hash of their pixels.
        still = [Frame(image=f.image.copy(), t=f.t + 6.0, index=20_000 + i) for i, f in enumerate(buffered[:3])]
        selector.select(still, "And now?")
        assert relevance.encoded_frames == distinct + 2

        # Same features for the same frame, cached or not.
        direct = relevance.scores(buffered, "What is on the yellow label?")
        assert direct.shape == (len(buffered),) and np.all(np.isfinite(direct))
        fresh = ClipRelevance(str(tiny_clip), device="cpu")
        assert np.allclose(fresh.scores(buffered, "What is on the yellow label?"), direct, atol=1e-5)
        fresh.close()
    finally:
        relevance.close()


def test_clip_relevance_reports_a_bad_model(tmp_path):
    from assistant.errors import ModelLoadError

    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError):
        ClipRelevance(str(tmp_path / "empty"), device="cpu")


def test_clip_cache_is_bounded(buffered, tiny_clip):
    relevance = ClipRelevance(str(tiny_clip), device="cpu", max_cached=5)
    frames = list({image_key(f.image): f for f in buffered}.values())  # distinct pictures
    assert len(frames) > 5
    relevance.scores(frames, "what is this?")
    assert len(relevance.encoder._images) == 5
    relevance.scores(frames[-5:], "what is this?")
    assert relevance.encoded_frames == len(frames)  # the five newest were still cached
    relevance.close()


def test_selection_time_is_reported(buffered):
    started = time.perf_counter()
    result = FrameSelector().select(buffered)
    assert 0 < result.seconds <= time.perf_counter() - started
