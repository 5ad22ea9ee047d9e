"""The camera preview with "What's in view" on and off, and what one labelling costs.

The encoder has the real shapes of the default image search model (openai/clip-vit-
base-patch32: ``transformers.CLIPConfig()``'s defaults) with random weights and a small
trained tokenizer, so nothing is downloaded; its cost is the real model's.  A 640x480
30 fps video file is the camera (played in real time, looping) in the real window
(offscreen).  Measured, side by side in one run:

* the preview frames drawn per second with the labels off, then on (target >= 25);
* the labelling cost per frame (the newest buffered frame through the vision tower and
  the scores over the default label list), the loop's interval and its share of the time.

    python benchmarks/view_labels.py [--seconds 12]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def write_video(path: Path, frames: int = 900) -> Path:
    """30 s of 640x480 at 30 fps: no frame repeats while measured (a repeated frame is a cache hit)."""
    import cv2
    import numpy as np

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, (640, 480))
    rng = np.random.default_rng(0)
    for i in range(frames):
        frame = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8) // 4 + 60
        cv2.circle(frame, (100 + (5 * i) % 440, 240), 60, (30, 200, 240), -1)
        writer.write(frame)
    writer.release()
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=12.0, help="how long each side is measured")
    args = parser.parse_args()

    import numpy as np
    from PySide6.QtCore import QEventLoop, QTimer

    from assistant.encoders.contrastive import ContrastiveEncoder
    from assistant.fusion.view_labels import ViewLabeler, ViewLabels
    from assistant.settings import DEFAULT_VIEW_LABELS, AppPaths, Settings, parse_labels
    from cli.options import quiet_libraries
    from tests.tiny_models import build_tiny_clip, build_tiny_idefics3
    from ui.app import create_app
    from ui.main_window import MainWindow

    quiet_libraries(False)

    def wait(seconds: float) -> None:
        loop = QEventLoop()
        QTimer.singleShot(int(seconds * 1000), loop.quit)
        loop.exec()

    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        started = time.perf_counter()
        clip = build_tiny_clip(tmp_path / "clip-b32", real_shapes=True)  # ViT-B/32's shapes
        built = time.perf_counter() - started
        labels = parse_labels(DEFAULT_VIEW_LABELS)

        # The cost alone, on a quiet machine.
        encoder = ContrastiveEncoder(str(clip), "cpu", offline=True)
        started = time.perf_counter()
        labeler = ViewLabeler(encoder, labels)
        text_cost = time.perf_counter() - started
        rng = np.random.default_rng(1)
        frames = [rng.integers(0, 255, (480, 640, 3), dtype=np.uint8) for _ in range(21)]
        labeler.label(frames[0])  # warm
        costs, cpu_costs = [], []
        for image in frames[1:]:
            started, cpu_started = time.perf_counter(), time.process_time()
            labeler.label(image)
            costs.append(time.perf_counter() - started)
            cpu_costs.append(time.process_time() - cpu_started)
        encoder.close()

        video = write_video(tmp_path / "camera.avi", frames=int(30 * (2 * args.seconds + 6)))
        model = build_tiny_idefics3(tmp_path / "chat-model")  # the window needs one; it is not loaded
        app = create_app([])
        settings = Settings(model=str(model), camera=str(video), search_model=str(clip), device="cpu")
        window = MainWindow(settings, AppPaths.under(tmp_path / "app"), persist_settings=False)
        window.resize(1200, 760)
        window.show()
        window.bridge.engine.encoder.load(download=False)
        panel = window.camera_panel
        panel.toggle.click()
        wait(1.5)  # the camera settles

        def measure() -> float:
            shown, t0 = panel.frames_shown, time.perf_counter()
            wait(args.seconds)
            return (panel.frames_shown - shown) / (time.perf_counter() - t0)

        off = measure()
        panel.view.box.setChecked(True)
        loop_deadline = time.perf_counter() + 60
        while panel.view.loop is None or panel.view.loop.labelled == 0:  # the label texts first
            wait(0.1)
            if time.perf_counter() > loop_deadline:
                break
        loop = panel.view.loop
        labelled, busy = (loop.labelled, loop.busy_seconds) if loop else (0, 0.0)
        samples = []  # (wall, cpu) of each labelling while measured
        sampler = QTimer()
        sampler.timeout.connect(lambda: isinstance(panel.view._shown, ViewLabels) and (
            not samples or samples[-1][0] != panel.view._shown.frame_index) and samples.append(
            (panel.view._shown.frame_index, panel.view._shown.seconds, panel.view._shown.cpu_seconds)))
        sampler.start(20)
        t0 = time.perf_counter()
        on = measure()
        elapsed = time.perf_counter() - t0
        sampler.stop()
        if loop is not None:
            labelled, busy = loop.labelled - labelled, loop.busy_seconds - busy
        shown_text = panel.view.line.text()
        interval = loop.interval if loop is not None else float("nan")
        panel.view.box.setChecked(False)
        window.close()
        window.deleteLater()
        app.sendPostedEvents(None, 52)  # QEvent.DeferredDelete: torn down while Qt is alive

    import torch

    print(f"encoder: random CLIP ViT-B/32 (CLIPConfig() defaults, built in {built:.0f} s); "
          f"{os.cpu_count()} cores, torch {torch.get_num_threads()} threads")
    print(f"label texts: {len(labels)} labels embedded once in {text_cost:.2f} s")
    print(f"labelling one 640x480 frame, camera off: median {1000 * float(np.median(costs)):.0f} ms wall "
          f"(min {1000 * min(costs):.0f}, max {1000 * max(costs):.0f}), "
          f"{1000 * float(np.median(cpu_costs)):.0f} ms CPU, {len(costs)} frames")
    print(f"camera: 640x480 30 fps file, played in real time; {args.seconds:g} s each side")
    print(f"preview, labels off: {off:5.1f} fps")
    print(f"preview, labels on:  {on:5.1f} fps (target >= 25)")
    if labelled:
        walls = [wall for _, wall, _ in samples] or [float("nan")]
        cpus = [cpu for _, _, cpu in samples] or [float("nan")]
        print(f"while on: {labelled} frames labelled in {elapsed:.1f} s, median {1000 * float(np.median(walls)):.0f} ms "
              f"wall / {1000 * float(np.median(cpus)):.0f} ms CPU each; interval {interval:.2f} s; "
              f"{100 * busy / elapsed:.0f} % of one core (limit 15 %)")
    print(f"panel showed: {shown_text!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
