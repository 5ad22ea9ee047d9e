"""The soak: 200 turns through one session, watching memory and time per turn.

Everything a long day of use touches runs: the in-process model (a tiny random
Idefics3 by default; ``--real-shapes`` for SmolVLM-256M's sizes, much slower),
typed questions, a new picture every 5th turn (the image-feature cache must stay
bounded), a new chat every 25 turns, the history store saving every turn as it
streams, and the voice speaking every reply to a WAV recorder (as fast as it
can synthesize: not in real time).

Reports the resident memory (RSS) after the warm-up and at the end (target:
growth ≤ 5 %), Python objects and threads alive, and the median and 95th
percentile time per turn, for the first and the last 50 turns.

    python benchmarks/soak.py [--turns 200] [--warmup 25] [--tokens 12] [--real-shapes] [--no-voice]
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402


def rss_mib() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def picture(i: int) -> bytes:
    import io

    rng = np.random.default_rng(i)
    image = Image.fromarray(rng.integers(0, 255, (240, 320, 3), dtype=np.uint8))
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=25)
    parser.add_argument("--tokens", type=int, default=12)
    parser.add_argument("--real-shapes", action="store_true", help="SmolVLM-256M-Instruct's sizes (slow on a CPU)")
    parser.add_argument("--no-voice", action="store_true", help="do not speak the replies")
    args = parser.parse_args()

    from assistant.devices.speaker import WavRecorderSpeaker
    from assistant.events import ImageInput, UserTurn
    from assistant.session import Session
    from assistant.settings import AppPaths, Settings
    from assistant.store.history import open_history

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if args.real_shapes:
            from turn_cost import build_smolvlm_256m_shapes  # this folder is on sys.path

            model = build_smolvlm_256m_shapes(folder)
        else:
            from tests.tiny_models import build_tiny_idefics3

            model = build_tiny_idefics3(folder / "tiny-idefics3")
        paths = AppPaths.under(folder / "app")
        store, _ = open_history(paths.data)
        speaker = None if args.no_voice else WavRecorderSpeaker(folder / "spoken.wav", realtime=False)
        settings = Settings(model=str(model), device="cpu", max_new_tokens=args.tokens, temperature=0.0)
        session = Session(settings, paths, lambda event: None, speaker=speaker, speak=speaker is not None,
                          store=store)
        try:
            assert session.load(), "the model did not load"
            seconds: list[float] = []
            rss: list[float] = []
            warm = {}
            for turn in range(1, args.turns + 1):
                if turn % 25 == 1 and turn > 1:
                    session.new_chat()
                images = (ImageInput.from_bytes(picture(turn), f"picture-{turn}.png"),) if turn % 5 == 0 else ()
                started = time.perf_counter()
                reply = session.answer(UserTurn(f"Question {turn}: what do you make of this? Say it briefly.", images))
                if speaker is not None:
                    session.wait_spoken(120)
                seconds.append(time.perf_counter() - started)
                assert reply is not None, f"turn {turn} failed"
                if turn == args.warmup:
                    gc.collect()
                    warm = {"rss": rss_mib(), "objects": len(gc.get_objects()), "threads": threading.active_count()}
                rss.append(rss_mib())
            gc.collect()
            end = {"rss": rss_mib(), "objects": len(gc.get_objects()), "threads": threading.active_count()}
        finally:
            session.close()
            store.close()

    def spread(values: list[float]) -> str:
        ordered = sorted(values)
        return f"median {statistics.median(ordered):.3f} s, p95 {ordered[int(0.95 * (len(ordered) - 1))]:.3f} s"

    growth = (end["rss"] - warm["rss"]) / warm["rss"] * 100
    print(f"model: {'SmolVLM-256M shapes' if args.real_shapes else 'tiny Idefics3'}, {args.turns} turns, "
          f"{args.tokens} tokens each, voice {'off' if args.no_voice else 'on'}")
    print(f"RSS after warm-up (turn {args.warmup}): {warm['rss']:.1f} MiB; at the end: {end['rss']:.1f} MiB; "
          f"growth {growth:+.2f} % (target <= 5 %); peak {max(rss):.1f} MiB")
    print(f"Python objects: {warm['objects']} -> {end['objects']}; threads: {warm['threads']} -> {end['threads']}")
    print(f"time per turn, first 50: {spread(seconds[:50])}; last 50: {spread(seconds[-50:])}")


if __name__ == "__main__":
    main()
