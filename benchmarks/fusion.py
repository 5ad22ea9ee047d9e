"""Camera decode rate and the fusion stage's time per turn.

* ``FrameSelector.select`` on a 5 s buffer sampled at 4 fps (20 frames) from a 640x480
  source: without relevance; with a CLIP relevance model, cold (every frame encoded)
  and warm (the frames were encoded in an earlier turn: only the question is encoded).
  The CLIP is the tiny random one from the tests unless ``--clip`` names a real one
  (hub id or folder, e.g. openai/clip-vit-base-patch32).
* ``CameraSource`` decoding a 3 s, 30 fps MJPG file with ``realtime=False`` (what
  ``--camera FILE --ask`` does before asking): frames per second.

Each is run several times; medians (and the spread) are printed.

    python benchmarks/fusion.py [--runs 15] [--clip MODEL] [--device auto|cpu|cuda]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from assistant.devices.camera import CameraSource  # noqa: E402
from assistant.fusion.frame_buffer import FrameBuffer  # noqa: E402
from assistant.fusion.attention import FrameSelector  # noqa: E402
from tests.test_camera import SYNTHETIC, write_synthetic_video  # noqa: E402


def summary(values: list[float], unit: str, scale: float = 1.0) -> str:
    values = [v * scale for v in values]
    return f"median {statistics.median(values):8.2f} {unit}   (min {min(values):.2f}, max {max(values):.2f}, n={len(values)})"


def five_second_buffer(video: Path) -> list:
    """Loop the 3 s video (decoded as fast as it goes) until a 5 s, 4 fps buffer is full."""
    buffer = FrameBuffer(seconds=5.0, fps=4.0)
    source = CameraSource(video, loop=True, realtime=False, buffer=buffer)
    source.start()
    try:
        deadline = time.monotonic() + 30
        while (source.latest() is None or source.latest().t < 6.0) and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        source.stop()
    frames = buffer.frames()
    assert len(frames) == 20, len(frames)
    return frames


def decode_rate(video: Path, runs: int) -> list[float]:
    rates = []
    for _ in range(runs):
        source = CameraSource(video, realtime=False)
        started = time.perf_counter()
        source.start()
        assert source.wait_until_ended(timeout=60)
        elapsed = time.perf_counter() - started
        source.stop()
        rates.append(source.frames_captured / elapsed)
    return rates


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--clip", default=None, help="a CLIP/SigLIP hub id or folder (default: a tiny random CLIP)")
    parser.add_argument("--device", default="auto", help="device for the relevance model: auto, cpu, cuda")
    args = parser.parse_args()

    import cv2
    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    print(f"CPU threads: torch {torch.get_num_threads()}, OpenCV {cv2.getNumThreads()}, cores {os.cpu_count()}")
    with tempfile.TemporaryDirectory() as tmp:
        video = write_synthetic_video(Path(tmp) / "scene.avi")
        print(f"source: {SYNTHETIC.width}x{SYNTHETIC.height}, {SYNTHETIC.fps:.0f} fps MJPG, {SYNTHETIC.duration:.0f} s")

        rates = decode_rate(video, max(3, args.runs // 3))
        print(f"CameraSource decode (realtime=False):   {summary(rates, 'frames/s')}")

        frames = five_second_buffer(video)
        question = "What is written on the yellow card?"
        selector = FrameSelector()
        selector.select(frames, question)  # warm-up (imports, first allocations)
        plain = [selector.select(frames, question).seconds for _ in range(args.runs)]
        print(f"select, 20 frames, no relevance:        {summary(plain, 'ms', 1000)}")

        from assistant.fusion.relevance import ClipRelevance

        if args.clip:
            model = args.clip
        else:
            from tests.test_fusion import build_tiny_clip

            model = str(build_tiny_clip(Path(tmp) / "tiny-clip"))
        relevance = ClipRelevance(model, device=args.device)
        label = f"{'tiny CLIP' if not args.clip else args.clip} on {relevance.device}"
        selector = FrameSelector(relevance=relevance)
        selector.select(frames, question)  # warm-up
        cold = []
        for _ in range(args.runs):
            relevance._features.clear()  # as if every frame were new
            cold.append(selector.select(frames, question).seconds)
        warm = [selector.select(frames, f"{question} {i}").seconds for i in range(args.runs)]
        print(f"select + {label}, cold: {summary(cold, 'ms', 1000)}")
        print(f"select + {label}, warm: {summary(warm, 'ms', 1000)}")
        relevance.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
