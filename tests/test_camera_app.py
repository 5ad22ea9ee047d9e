"""The camera in the real window and on the command line, with a video file as the camera."""

from __future__ import annotations

import re
import shutil
import time

import cv2
import numpy as np
import pytest

from assistant.events import State
from assistant.settings import Settings
from tests.conftest import paced_factory
from tests.test_cli import run


def write_video(path, seconds: float = 2.0, fps: int = 30, size=(160, 120)):
    """Empty textured scene; a sharp, bright object from 0.8 s to 1.4 s; empty again after."""
    rng = np.random.default_rng(0)
    background = (rng.integers(60, 90, (size[1], size[0], 3))).astype(np.uint8)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    for i in range(int(seconds * fps)):
        frame = background.copy()
        if 0.8 <= i / fps < 1.4:
            cv2.rectangle(frame, (50, 30), (110, 90), (20, 200, 240), -1)
            cv2.putText(frame, "OBJ", (55, 70), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 2)
        writer.write(frame)
    writer.release()
    return path


@pytest.fixture
def video(tmp_path):
    return write_video(tmp_path / "scene.avi")


def test_ask_with_a_camera_file_prints_the_chosen_frames(tiny_models, video, data_dir):
    done = run("--ask", "What is this?", "--camera", video, "--model", tiny_models["idefics3"],
               "--max-new-tokens", "5", "--data-dir", data_dir)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 2  # the default top-k
    times = []
    for line in lines:
        match = re.fullmatch(r"frame t=(\d+\.\d{2}) weight=(0\.\d{3}|1\.000)", line)
        assert match, line
        times.append(float(match.group(1)))
    assert times == sorted(times)  # time order
    assert all(0.75 <= t < 1.45 for t in times)  # the object, not the empty scene
    assert done.stdout.strip()
    missing = run("--ask", "hi", "--camera", video.parent / "nope.avi", "--model", tiny_models["idefics3"],
                  "--data-dir", data_dir)
    assert missing.returncode == 1 and missing.stderr.startswith("error: ") and "nope.avi" in missing.stderr


@pytest.fixture
def camera_window(qtbot, paths, tiny_models):
    from ui.main_window import MainWindow

    windows = []

    def open_(source, factory=None, **settings):
        kwargs = {"backend_factory": factory} if factory else {}
        window = MainWindow(Settings(model=str(tiny_models["idefics3"]), camera=str(source), **settings), paths,
                            persist_settings=False, **kwargs)
        windows.append(window)
        window.show()
        window.bridge.load()
        qtbot.waitUntil(lambda: window.bridge.status.state is State.READY, timeout=20_000)
        return window

    yield open_
    for window in windows:
        window.close()
        assert window.camera_panel.camera is None
        window.deleteLater()


def test_preview_runs_and_keeps_running_during_a_reply(qtbot, camera_window, video):
    window = camera_window(video, paced_factory(delay=0.01, min_new_tokens=120), max_new_tokens=120)
    panel = window.camera_panel
    panel.toggle.click()
    assert panel.is_on
    qtbot.waitUntil(lambda: panel.live.isVisible(), timeout=5000)  # "● LIVE" once frames arrive, not before
    qtbot.waitUntil(lambda: panel.frames_shown > 10, timeout=5000)
    assert not panel.preview.pixmap().isNull()
    window.prompt.setPlainText("what am I holding?")
    window.send()
    qtbot.waitUntil(lambda: bool(window.chat.messages[-1].text), timeout=10_000)
    shown = panel.frames_shown
    qtbot.wait(500)
    assert window.bridge.busy and panel.frames_shown >= shown + 8  # the preview never froze
    qtbot.waitUntil(lambda: not window.bridge.busy, timeout=20_000)
    # The question went with camera frames, shown with their weights.
    user = window.chat.messages[-2]
    assert len(user.frame_captions) == 2 and all("%" in c for c in user.frame_captions)
    backend = window.bridge.engine.backend
    image_id = backend.tokenizer.convert_tokens_to_ids("<image>")
    assert int((backend.last_inputs["input_ids"] == image_id).sum()) == 2 * 16


def test_snapshot_attaches_the_current_frame(qtbot, camera_window, video):
    window = camera_window(video)
    panel = window.camera_panel
    panel.toggle.click()
    qtbot.waitUntil(lambda: panel.frames_shown > 0, timeout=5000)
    panel.snapshot.click()
    assert len(window.attachments.items) == 1 and window.attachments.items[0][0].name.startswith("pasted")
    panel.toggle.click()
    assert not panel.is_on and not panel.live.isVisible() and panel.frames_for_question() == ()


def test_a_source_that_goes_away_shows_it_and_recovers(qtbot, camera_window, video, tmp_path):
    window = camera_window(video)
    panel = window.camera_panel
    hidden = tmp_path / "elsewhere.avi"
    shutil.move(video, hidden)
    panel.toggle.click()
    qtbot.waitUntil(lambda: "retrying" in panel.status.text().lower(), timeout=5000)
    assert window.state_label.text() == "Ready"  # the rest of the app is unaffected
    shutil.move(hidden, video)
    qtbot.waitUntil(lambda: panel.frames_shown > 0, timeout=10_000)
    qtbot.waitUntil(lambda: panel.status.text() == "", timeout=5000)
    started = time.monotonic()
    window.close()
    assert time.monotonic() - started < 8 and panel.camera is None  # joined on close (bounded waits, generous under load)


def test_camera_frames_are_saved_and_shown_again(qtbot, paths, tiny_models, video):
    from assistant.devices.camera import CameraSource
    from assistant.fusion.frame_buffer import FrameBuffer
    from assistant.engine import Engine
    from assistant.store.history import open_history
    from assistant.events import UserTurn
    from ui.main_window import MainWindow

    buffer = FrameBuffer()
    camera = CameraSource(str(video), realtime=False, buffer=buffer, reconnect=False)
    camera.start()
    assert camera.wait_until_ended(30)
    camera.stop()
    store, _ = open_history(paths.data)
    engine = Engine(Settings(model=str(tiny_models["idefics3"]), max_new_tokens=3), paths, lambda e: None,
                    store=store)
    assert engine.load()
    engine.handle_turn(UserTurn("what is it?", frames=tuple(buffer.frames())))
    saved = store.messages(engine.conversation_id)[0]
    assert len(saved.images) == 2 and [round(f["t"], 1) for f in saved.meta["frames"]]
    window = MainWindow(Settings(model=str(tiny_models["idefics3"])), paths, store=store, persist_settings=False)
    try:
        with qtbot.waitSignal(window.bridge.conversation_opened, timeout=5000):
            window.bridge.open_conversation(engine.conversation_id)
        user = window.chat.messages[0]
        assert user.image_names == [] and len(user.frame_captions) == 2
    finally:
        window.close()
        window.deleteLater()
        store.close()


def test_turning_the_camera_off_never_waits_on_its_backend(qtbot, monkeypatch):
    """A capture backend stuck inside read() (a network camera that went quiet): Camera off
    returns at once; the thread is joined when the panel shuts down."""
    import threading

    from assistant.devices import camera as camera_module
    from ui.panels.camera import CameraPanel

    reading, release = threading.Event(), threading.Event()

    class StuckCapture:
        def isOpened(self):  # noqa: N802 - OpenCV's API
            return True

        def read(self):
            reading.set()
            release.wait(30)
            return False, None

        def get(self, prop):
            return 0.0

        def release(self):
            pass

    monkeypatch.setattr(camera_module.CameraSource, "_open", lambda self: StuckCapture())
    panel = CameraPanel("0", False)
    qtbot.addWidget(panel)
    panel.set_on(True)
    assert reading.wait(10)
    started = time.monotonic()
    panel.set_on(False)
    assert time.monotonic() - started < 1.5  # before: the 2 s join, on the GUI thread
    assert not panel.is_on
    release.set()
    panel.shutdown()
    assert panel._stopping == []
