"""Camera preview frame rate in the real window while a reply is being generated.

A 30 fps video file is the camera (played in real time, looping).  The window
(offscreen) shows the preview while the model streams a reply; we count the
preview frames actually drawn per second during the reply (target ≥ 25 fps),
and how many buffered frames went with the question.

    python benchmarks/camera_preview.py [--seconds 5] [--size small|tiny]
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
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="how long the reply keeps generating")
    parser.add_argument("--size", choices=("tiny", "small"), default="small")
    args = parser.parse_args()

    import cv2
    import numpy as np
    from PySide6.QtCore import QEventLoop, QTimer

    from assistant.generators.transformers_backend import TransformersBackend
    from assistant.events import State
    from cli.options import quiet_libraries
    from assistant.settings import AppPaths, Settings
    import importlib.util

    spec = importlib.util.spec_from_file_location("streaming_bench", Path(__file__).with_name("streaming.py"))
    streaming = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(streaming)
    build_model = streaming.build_model
    from ui.app import create_app
    from ui.main_window import MainWindow

    quiet_libraries(False)
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        video = tmp_path / "camera.avi"
        writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 30, (640, 480))
        rng = np.random.default_rng(0)
        for i in range(90):
            frame = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8) // 4 + 60
            cv2.circle(frame, (100 + 5 * i, 240), 60, (30, 200, 240), -1)
            writer.write(frame)
        writer.release()
        model = build_model(args.size, tmp_path)

        def factory(settings, paths):
            backend = TransformersBackend(settings.model, settings.device, settings.dtype, cache_dir=paths.models)
            backend.generate_kwargs = {"min_new_tokens": 2000}  # keeps generating until stopped
            return backend

        app = create_app([])
        window = MainWindow(Settings(model=str(model), camera=str(video), max_new_tokens=2000),
                            AppPaths.under(tmp_path / "app"), factory, persist_settings=False)
        window.resize(1200, 760)
        window.show()
        ready = QEventLoop()
        window.bridge.status_changed.connect(lambda e: e.state is State.READY and ready.quit())
        window.bridge.load()
        ready.exec()
        panel = window.camera_panel
        panel.toggle.click()
        wait = QEventLoop()
        QTimer.singleShot(1500, wait.quit)  # the buffer fills
        wait.exec()
        chosen = []
        window.bridge.frames_chosen.connect(chosen.append)
        window.prompt.setPlainText("What is the yellow thing doing?")
        window.send()
        streaming = QEventLoop()
        poll = QTimer()
        poll.timeout.connect(lambda: window.chat.messages[-1].text and streaming.quit())
        poll.start(5)
        streaming.exec()
        poll.stop()
        shown, t0 = panel.frames_shown, time.perf_counter()
        measure = QEventLoop()
        QTimer.singleShot(int(args.seconds * 1000), measure.quit)
        measure.exec()
        fps = (panel.frames_shown - shown) / (time.perf_counter() - t0)
        busy = window.bridge.busy
        window.stop()
        window.close()
        window.deleteLater()
        app.sendPostedEvents(None, 52)  # QEvent.DeferredDelete: torn down while Qt is alive
    print(f"camera: 640x480 30 fps file, played in real time; model: random Idefics3 ({args.size}); {os.cpu_count()} cores")
    print(f"preview while generating: {fps:5.1f} fps over {args.seconds:g} s (target >= 25; still generating: {busy})")
    if chosen:
        print(f"the question went with {len(chosen[0].chosen)} of {chosen[0].candidates} buffered frames "
              "(fusion time per turn: benchmarks/fusion.py)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
