"""Camera capture (assistant.devices.camera): files, loops, pacing, faults and reconnects, the frame buffer.

A fixture writes a synthetic video with cv2.VideoWriter: an empty textured scene, a
sharp object held still, the same object moving (motion-blurred), the empty scene
again.  ``write_synthetic_video`` and ``SYNTHETIC`` are shared with the fusion tests
and the benchmark.  Faults a file cannot produce (a stall, an unplugged camera,
corrupt frames) come from a fake ``cv2.VideoCapture``.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

from assistant.devices.camera import CameraSource, CameraStatus, Frame, parse_source

# --------------------------------------------------------------------------------------------
from assistant.fusion.frame_buffer import FrameBuffer
# The synthetic video
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SyntheticVideo:
    fps: float = 30.0
    frames: int = 90  # 3 s
    width: int = 640
    height: int = 480
    sharp: tuple[float, float] = (0.9, 1.8)  # seconds: the object is held still and sharp
    blurred: tuple[float, float] = (1.8, 2.35)  # the object moves: motion blur
    # the rest is the empty scene
    marker: tuple[int, int, int] = (255, 0, 0)  # RGB: a pure red square in the top-left corner

    @property
    def duration(self) -> float:
        return self.frames / self.fps

    def segment(self, t: float) -> str:
        if self.sharp[0] <= t < self.sharp[1]:
            return "sharp"
        if self.blurred[0] <= t < self.blurred[1]:
            return "blurred"
        return "empty"


SYNTHETIC = SyntheticVideo()


def _object_card(width: int = 200, height: int = 150) -> np.ndarray:
    """A yellow card with a black checkerboard band and a label: high-contrast detail (RGB)."""
    card = np.zeros((height, width, 3), np.uint8)
    card[:] = (240, 200, 30)
    square = 15
    for y in range(0, 75, square):
        for x in range(0, width, square):
            if (x // square + y // square) % 2 == 0:
                card[y : y + square, x : x + square] = (10, 10, 10)
    cv2.putText(card, "LABEL 42", (12, 125), cv2.FONT_HERSHEY_SIMPLEX, 1.1, (20, 20, 120), 3, cv2.LINE_AA)
    cv2.rectangle(card, (0, 0), (width - 1, height - 1), (0, 0, 0), 3)
    return card


def _background(video: SyntheticVideo, rng: np.random.Generator) -> np.ndarray:
    """A textured scene, float32 RGB: colour blotches, fine grain, and a few hard edges
    (a shelf, a picture frame), so an empty frame is not simply a blurry one."""
    coarse = rng.random((video.height // 8, video.width // 8, 3)).astype(np.float32) * 150 + 50
    scene = cv2.resize(coarse, (video.width, video.height), interpolation=cv2.INTER_CUBIC)
    scene = cv2.GaussianBlur(scene, (0, 0), 2)
    scene += rng.normal(0, 6.0, scene.shape).astype(np.float32)  # fine texture
    scene += np.linspace(-20, 20, video.width, dtype=np.float32)[None, :, None]
    cv2.rectangle(scene, (40, 60), (180, 200), (30, 30, 30), 4)
    cv2.line(scene, (0, 400), (video.width, 380), (230, 230, 230), 5)
    cv2.line(scene, (500, 0), (520, video.height), (20, 60, 20), 6)
    return scene


def synthetic_frames(video: SyntheticVideo = SYNTHETIC, seed: int = 0):
    """Yield (t, segment, RGB uint8 frame) for every frame of the synthetic video."""
    rng = np.random.default_rng(seed)
    scene = _background(video, rng)
    card = _object_card().astype(np.float32)
    ch, cw = card.shape[:2]
    x0, y0 = (video.width - cw) // 2, (video.height - ch) // 2
    kernel = np.zeros((1, 41), np.float32)
    kernel[:] = 1.0 / kernel.size  # horizontal motion blur
    noise = [rng.normal(0, 2.0, scene.shape).astype(np.float32) for _ in range(7)]  # sensor noise
    for i in range(video.frames):
        t = i / video.fps
        segment = video.segment(t)
        frame = scene + noise[i % len(noise)]
        if segment == "sharp":
            frame[y0 : y0 + ch, x0 : x0 + cw] = card
        elif segment == "blurred":
            shift = int((t - video.blurred[0]) * video.fps * 16) - 60  # moving 16 px per frame
            layer = np.zeros_like(frame)
            mask = np.zeros(frame.shape[:2], np.float32)
            xs = x0 + shift
            layer[y0 : y0 + ch, xs : xs + cw] = card
            mask[y0 : y0 + ch, xs : xs + cw] = 1.0
            layer = cv2.filter2D(layer, -1, kernel)
            mask = cv2.filter2D(mask, -1, kernel)[..., None]
            frame = frame * (1.0 - mask) + layer
        frame[:24, :24] = video.marker
        yield t, segment, np.clip(frame, 0, 255).astype(np.uint8)


def write_synthetic_video(path: Path, video: SyntheticVideo = SYNTHETIC, fourcc: str = "MJPG") -> Path:
    """Write the synthetic video (``fourcc`` MJPG for .avi, mp4v for .mp4) and return its path."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), video.fps, (video.width, video.height))
    assert writer.isOpened(), f"cv2.VideoWriter cannot write {fourcc} to {path}"
    try:
        for _t, _segment, rgb in synthetic_frames(video):
            writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    finally:
        writer.release()
    return Path(path)


@pytest.fixture(scope="module")
def video_file(tmp_path_factory) -> Path:
    return write_synthetic_video(tmp_path_factory.mktemp("video") / "scene.avi")


@pytest.fixture(scope="module")
def short_clip(tmp_path_factory) -> Path:
    """One second of the empty scene at 30 fps (for pacing and loops)."""
    clip = SyntheticVideo(frames=30, sharp=(9, 9), blurred=(9, 9))
    return write_synthetic_video(tmp_path_factory.mktemp("clip") / "clip.avi", clip)


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


class Recorder:
    """Collects statuses (and the thread each came from); waits for one to arrive."""

    def __init__(self) -> None:
        self.statuses: list[CameraStatus] = []
        self.threads: list[str] = []
        self._cond = threading.Condition()

    def __call__(self, status: CameraStatus) -> None:
        with self._cond:
            self.statuses.append(status)
            self.threads.append(threading.current_thread().name)
            self._cond.notify_all()

    def states(self) -> list[str]:
        with self._cond:
            return [s.state for s in self.statuses]

    def wait_for(self, predicate, timeout: float = 5.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: predicate(list(self.statuses)), timeout)

    def wait_state(self, state: str, after: int = 0, timeout: float = 5.0) -> bool:
        return self.wait_for(lambda ss: any(s.state == state for s in ss[after:]), timeout)


def retry_delays(statuses: list[CameraStatus]) -> list[float]:
    delays = []
    for status in statuses:
        if status.state == "retrying":
            match = re.search(r"retrying in ([\d.]+) s", status.detail)
            assert match, status.detail
            delays.append(float(match.group(1)))
    return delays


def capture_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("camera-capture") and t.is_alive()]


def wait_until(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return predicate()


def keep_all() -> FrameBuffer:
    """A buffer that keeps every frame of a 30 fps source (for inspecting frames one by one)."""
    return FrameBuffer(seconds=1000, fps=1000, max_side=None)


# --------------------------------------------------------------------------------------------
# parse_source
# --------------------------------------------------------------------------------------------


def test_parse_source():
    assert parse_source("0") == 0
    assert parse_source(" 2 ") == 2
    assert parse_source(1) == 1
    assert parse_source("rtsp://user:pw@cam.local:554/live") == "rtsp://user:pw@cam.local:554/live"
    assert parse_source("http://192.168.1.5:8080/video") == "http://192.168.1.5:8080/video"
    assert parse_source("clips/demo.mp4") == "clips/demo.mp4"
    assert parse_source("~/demo.mp4") != "~/demo.mp4" and parse_source("~/demo.mp4").endswith("demo.mp4")
    for bad in ("", "   ", "-1", -3):
        with pytest.raises(ValueError):
            parse_source(bad)


def test_stream_names_hide_passwords():
    source = CameraSource("rtsp://admin:secret@cam.local:554/live")
    assert "secret" not in source.name and "cam.local:554/live" in source.name
    assert source.status.state == "stopped" and not source.running


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------


def test_file_plays_whole_into_buffer_as_fast_as_it_decodes(video_file):
    buffer = FrameBuffer(seconds=5.0, fps=4.0)
    recorder = Recorder()
    source = CameraSource(str(video_file), realtime=False, buffer=buffer, on_status=recorder)
    started = time.monotonic()
    source.start()
    assert source.wait_until_ended(timeout=10)
    elapsed = time.monotonic() - started
    assert source.stop() is True
    assert elapsed < SYNTHETIC.duration / 2, "realtime=False must not pace the file"

    assert recorder.states() == ["starting", "live", "ended", "stopped"]
    assert all(name.startswith("camera-capture") for name in recorder.threads[:3])
    assert source.frames_captured == SYNTHETIC.frames

    frames = buffer.frames()
    # 3 s sampled at 4 fps from a 30 fps file: the frames nearest each 1/4 s.
    assert len(frames) == 12
    expected = [0, 8, 15, 23, 30, 38, 45, 53, 60, 68, 75, 83]
    assert [f.t for f in frames] == pytest.approx([i / 30 for i in expected], abs=1e-6)
    assert [f.index for f in frames] == sorted(f.index for f in frames)
    for frame in frames:
        assert frame.image.shape == (480, 640, 3) and frame.image.dtype == np.uint8
        assert frame.image.flags.c_contiguous
        assert np.allclose(frame.image[4:20, 4:20].reshape(-1, 3).mean(0), SYNTHETIC.marker, atol=12), "not RGB"

    latest = source.latest()
    assert latest is not None and latest.t == pytest.approx((SYNTHETIC.frames - 1) / SYNTHETIC.fps)
    assert source.status.state == "stopped" and not source.running
    assert source.wait_until_ended(0) is True  # it did play to its end


def test_buffer_stays_bounded_on_a_long_source(video_file):
    buffer = FrameBuffer(seconds=1.0, fps=4.0)
    source = CameraSource(video_file, realtime=False, buffer=buffer)
    source.start()
    assert source.wait_until_ended(timeout=10)
    source.stop()
    frames = buffer.frames()
    assert len(frames) == 4 == buffer.capacity
    assert frames[-1].t - frames[0].t < 1.0
    assert frames[-1].t == pytest.approx(83 / 30)


def test_mp4v_file_reads(tmp_path):
    clip = SyntheticVideo(frames=20)
    path = write_synthetic_video(tmp_path / "clip.mp4", clip, fourcc="mp4v")
    buffer = keep_all()
    source = CameraSource(path, realtime=False, buffer=buffer)
    source.start()
    assert source.wait_until_ended(timeout=10)
    source.stop()
    frames = buffer.frames()
    assert len(frames) == 20
    assert [f.t for f in frames] == pytest.approx([i / 30 for i in range(20)], abs=1e-6)
    assert np.allclose(frames[0].image[4:20, 4:20].reshape(-1, 3).mean(0), clip.marker, atol=12)


def test_frames_are_owned_rgb_copies(short_clip):
    buffer = keep_all()
    source = CameraSource(short_clip, realtime=False, buffer=buffer)
    source.start()
    assert source.wait_until_ended(timeout=10)
    source.stop()
    frames = buffer.frames()
    assert len(frames) == 30
    assert frames[-1] is source.latest()
    before = frames[1].image.copy()
    for a, b in zip(frames, frames[1:]):
        assert a.index < b.index
        assert not np.shares_memory(a.image, b.image)
        assert a.image.base is None and a.image.flags.owndata
    frames[0].image[:] = 0  # a consumer scribbling on one frame does not touch the next
    assert np.array_equal(frames[1].image, before)


def test_realtime_paces_a_file_at_its_frame_rate(short_clip):
    recorder = Recorder()
    source = CameraSource(short_clip, realtime=True, on_status=recorder)
    started = time.monotonic()
    source.start()
    assert recorder.wait_state("live")
    time.sleep(0.6)
    fps = source.status.fps
    assert source.wait_until_ended(timeout=5)
    elapsed = time.monotonic() - started
    source.stop()
    assert 0.9 <= elapsed <= 3.0, elapsed  # 30 frames at 30 fps: about 1 s
    assert 24 <= fps <= 36, fps
    assert source.frames_captured == 30


def test_loop_keeps_going_with_growing_timestamps(short_clip):
    recorder = Recorder()
    buffer = FrameBuffer(seconds=2.0, fps=10.0)
    source = CameraSource(short_clip, loop=True, realtime=False, buffer=buffer, on_status=recorder)
    source.start()
    try:
        assert wait_until(lambda: source.frames_captured > 100, timeout=10)
        assert source.running
        latest = source.latest()
        assert latest is not None and latest.t > 3.0  # past three plays of a 1 s clip
        times = [f.t for f in buffer.frames()]
        assert times == sorted(times) and len(times) == 20
        assert np.allclose(np.diff(times), 0.1, atol=0.034)  # no jump back at a loop boundary
        assert "ended" not in recorder.states()
    finally:
        assert source.stop() is True
    assert recorder.states()[-1] == "stopped"
    assert not capture_threads()


# --------------------------------------------------------------------------------------------
# Faults: cannot open, backoff, reconnect
# --------------------------------------------------------------------------------------------


def test_missing_file_retries_with_growing_backoff(tmp_path):
    recorder = Recorder()
    source = CameraSource(tmp_path / "nope.avi", on_status=recorder, max_backoff=0.2)
    source.initial_backoff = 0.025
    source.start()
    assert recorder.wait_for(lambda ss: len(retry_delays(ss)) >= 5, timeout=5)
    delays = retry_delays(recorder.statuses)
    assert delays[:5] == [0.025, 0.05, 0.1, 0.2, 0.2]
    assert "was not found" in recorder.statuses[1].detail
    assert source.status.state == "retrying" and source.running
    started = time.monotonic()
    assert source.stop() is True
    assert time.monotonic() - started < 0.5
    assert source.status.state == "stopped"
    assert not capture_threads()


def test_stop_is_prompt_during_a_long_backoff():
    recorder = Recorder()
    source = CameraSource(7, on_status=recorder)  # there is no /dev/video7
    source.start()
    assert recorder.wait_state("retrying")
    status = source.status
    assert status.detail.startswith("Camera 7 ") and "retrying in 1 s" in status.detail, status.detail
    started = time.monotonic()
    assert source.stop(timeout=2.0) is True
    assert time.monotonic() - started < 0.9  # not the 1 s backoff
    assert not capture_threads()
    assert recorder.states()[-1] == "stopped"


def test_without_reconnect_a_missing_source_fails(tmp_path):
    recorder = Recorder()
    source = CameraSource(tmp_path / "nope.avi", reconnect=False, on_status=recorder)
    source.start()
    started = time.monotonic()
    assert source.wait_until_ended(timeout=5) is False
    assert time.monotonic() - started < 1.0
    assert source.status.state == "failed" and "was not found" in source.status.detail
    assert not source.running
    assert source.stop() is True
    assert recorder.states() == ["starting", "failed", "stopped"]


def test_damaged_file_is_reported(tmp_path):
    path = tmp_path / "broken.avi"
    path.write_bytes(b"RIFF\x00\x00\x00\x00AVI garbage" * 10)
    recorder = Recorder()
    source = CameraSource(path, reconnect=False, on_status=recorder)
    source.start()
    assert source.wait_until_ended(timeout=5) is False
    source.stop()
    assert recorder.states() == ["starting", "failed", "stopped"]
    assert recorder.statuses[1].detail == "Video 'broken.avi' could not be opened (unsupported or damaged file)."


def test_source_that_goes_away_reconnects_when_it_is_back(tmp_path, short_clip):
    path = tmp_path / "clip.avi"
    path.write_bytes(short_clip.read_bytes())
    away = tmp_path / "moved.avi"
    recorder = Recorder()
    source = CameraSource(path, loop=True, realtime=False, on_status=recorder, max_backoff=0.1)
    source.initial_backoff = 0.02
    source.start()
    try:
        assert recorder.wait_state("live")
        path.rename(away)  # gone: the next loop cannot reopen it
        assert recorder.wait_state("retrying", timeout=5)
        first_retry = recorder.states().index("retrying")
        t_gone = source.latest().t
        assert "was not found" in recorder.statuses[first_retry].detail
        away.rename(path)
        assert recorder.wait_state("live", after=first_retry, timeout=5)
        assert wait_until(lambda: source.latest().t > t_gone + 0.5)  # timestamps carry on growing
    finally:
        assert source.stop() is True
    assert not capture_threads()


# --------------------------------------------------------------------------------------------
# Faults a file cannot produce: a fake cv2.VideoCapture
# --------------------------------------------------------------------------------------------


def good(value: int = 100, shape=(48, 64, 3)) -> np.ndarray:
    return np.full(shape, value, np.uint8)


class FakeCapture:
    """Plays a script of reads: each item is a (ok, frame) pair, or a callable returning one.
    After the script, ``tail`` is repeated.  One script per opened capture."""

    scripts: list = []
    opened: list[FakeCapture] = []

    def __init__(self, *args, **kwargs) -> None:
        script, self.tail = FakeCapture.scripts.pop(0) if FakeCapture.scripts else ([], None)
        self.script = list(script)
        self.released = False
        FakeCapture.opened.append(self)

    def isOpened(self) -> bool:  # noqa: N802 - cv2's name
        return self.tail is not None or bool(self.script)

    def set(self, prop, value) -> bool:
        return True

    def get(self, prop) -> float:
        return 0.0

    def read(self):
        item = self.script.pop(0) if self.script else self.tail
        if callable(item):
            item = item()
        if isinstance(item, BaseException):
            raise item
        time.sleep(0.002)
        return item

    def release(self) -> None:
        self.released = True


@pytest.fixture
def fake_cv2(monkeypatch):
    FakeCapture.scripts = []
    FakeCapture.opened = []
    monkeypatch.setattr(cv2, "VideoCapture", FakeCapture)
    yield FakeCapture
    FakeCapture.scripts = []


def slow(delay: float, result):
    def read():
        time.sleep(delay)
        return result

    return read


@pytest.mark.parametrize(
    "fault, words",
    [
        ("blocks", "stopped sending frames"),  # each read takes longer than stall_timeout
        ("no frames", "stopped sending frames"),  # reads succeed but never carry a usable frame
        ("unplugged", "disconnected"),  # reads fail
        ("raises", "failed while reading"),  # the backend throws
    ],
)
def test_live_faults_reconnect(fake_cv2, fault, words):
    tails = {
        "blocks": slow(0.3, (True, good())),
        "no frames": (True, None),
        "unplugged": (False, None),
        "raises": cv2.error("device gone"),
    }
    fake_cv2.scripts = [
        ([(True, good(i)) for i in range(5)], tails[fault]),  # a few frames, then the fault
        ([], (True, good(200))),  # after reconnecting: healthy
    ]
    recorder = Recorder()
    source = CameraSource(0, on_status=recorder, stall_timeout=0.15)
    source.initial_backoff = 0.02
    source.start()
    try:
        assert recorder.wait_state("retrying", timeout=5), recorder.states()
        retry = recorder.states().index("retrying")
        assert words in recorder.statuses[retry].detail
        assert recorder.statuses[retry].detail.startswith("Camera 0 ")
        assert recorder.wait_state("live", after=retry, timeout=5)
        assert wait_until(lambda: source.latest() is not None and source.latest().image[0, 0, 0] == 200)
    finally:
        assert source.stop() is True
    assert recorder.states()[:3] == ["starting", "live", "retrying"]
    assert all(cap.released for cap in fake_cv2.opened)
    assert not capture_threads()


def test_a_camera_that_opens_but_gives_no_picture(fake_cv2):
    """What a camera held by another app often does: it opens, but every read fails."""
    fake_cv2.scripts = [([], (False, None))]
    source = CameraSource(0, reconnect=False)
    source.start()
    assert source.wait_until_ended(timeout=5) is False
    assert source.status.detail == "Camera 0 gives no picture (it may be in use by another app)."
    assert source.status.state == "failed"
    assert source.stop() is True


def test_corrupt_frames_are_skipped(fake_cv2):
    fake_cv2.scripts = [
        (
            [
                (True, good(1)),
                (True, None),  # nothing
                (True, np.zeros((0, 0, 3), np.uint8)),  # empty
                (True, good(2, shape=(48, 64, 5))),  # wrong channel count
                (True, np.zeros((48, 64, 3), np.float32)),  # wrong dtype
                (True, good(3, shape=(24, 32, 3))),  # a different size mid-stream: a torn frame
                (True, good(4)),
                (True, good(5, shape=(48, 64))),  # grayscale: converted, not dropped
                (True, good(6)),
            ],
            (False, None),
        ),
    ]
    buffer = keep_all()
    recorder = Recorder()
    source = CameraSource(0, buffer=buffer, on_status=recorder, reconnect=False)
    source.start()
    assert source.wait_until_ended(timeout=5) is False
    source.stop()
    frames = buffer.frames()
    assert [int(f.image[0, 0, 0]) for f in frames] == [1, 4, 5, 6]
    assert all(f.image.shape == (48, 64, 3) for f in frames)
    assert source.frames_skipped == 5
    assert recorder.states() == ["starting", "live", "failed", "stopped"]
    assert "disconnected" in recorder.statuses[2].detail


def test_restart_starts_a_new_session(fake_cv2):
    fake_cv2.scripts = [([], (True, good(1))), ([], (True, good(2)))]
    source = CameraSource(0)
    source.start()
    assert wait_until(lambda: source.latest() is not None)
    source.start()  # already running: no second thread
    assert len(capture_threads()) == 1
    first = source.latest()
    assert source.stop() is True and source.stop() is True
    source.start()
    assert wait_until(lambda: source.latest() is not None and source.latest().image[0, 0, 0] == 2)
    second = source.latest()
    assert second.index > first.index
    assert source.stop() is True
    assert not capture_threads()


def test_a_broken_status_listener_does_not_stop_the_camera(fake_cv2):
    fake_cv2.scripts = [([], (True, good(7)))]

    def listener(status):
        raise RuntimeError("listener bug")

    source = CameraSource(0, on_status=listener)
    source.start()
    try:
        assert wait_until(lambda: source.frames_captured > 5)
        assert source.status.state == "live"
    finally:
        assert source.stop() is True


# --------------------------------------------------------------------------------------------
# FrameBuffer
# --------------------------------------------------------------------------------------------


def tiny_frame(t: float, index: int = 0, shape=(8, 8, 3)) -> Frame:
    return Frame(image=np.zeros(shape, np.uint8), t=t, index=index)


def test_buffer_samples_and_bounds():
    buffer = FrameBuffer(seconds=5.0, fps=4.0)
    kept = [buffer.add(tiny_frame(i / 30, i)) for i in range(300)]  # 10 s at 30 fps
    assert sum(kept) == 40  # exactly 4 per second
    frames = buffer.frames()
    assert len(frames) == len(buffer) == 20 == buffer.capacity
    times = [f.t for f in frames]
    assert times == sorted(times)
    assert times[-1] - times[0] < 5.0
    assert min(np.diff(times)) >= 0.125
    assert buffer.frames() is not buffer.frames()
    buffer.clear()
    assert len(buffer) == 0 and buffer.add(tiny_frame(20.0))


def test_buffer_downscales_large_frames():
    buffer = FrameBuffer(max_side=640)
    frame = Frame(image=np.zeros((720, 1280, 3), np.uint8), t=0.0, index=42)
    assert buffer.add(frame)
    stored = buffer.frames()[0]
    assert stored.image.shape == (360, 640, 3) and stored.image.flags.c_contiguous
    assert (stored.t, stored.index) == (0.0, 42)
    small = Frame(image=np.zeros((480, 640, 3), np.uint8), t=1.0, index=43)
    assert buffer.add(small) and buffer.frames()[-1] is small


def test_buffer_starts_over_when_time_goes_back():
    buffer = FrameBuffer(seconds=5.0, fps=4.0)
    for i in range(8):
        buffer.add(tiny_frame(i * 0.25, i))
    assert len(buffer) == 8
    assert buffer.add(tiny_frame(0.0, 100))  # a new session of the source
    assert [f.index for f in buffer.frames()] == [100]


def test_buffer_is_thread_safe():
    buffer = FrameBuffer(seconds=2.0, fps=50.0)
    errors = []

    def writer():
        try:
            for i in range(2000):
                buffer.add(tiny_frame(i / 1000, i))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def reader():
        try:
            for _ in range(2000):
                times = [f.t for f in buffer.frames()]
                assert times == sorted(times)
                assert len(times) <= buffer.capacity
        except Exception as exc:  # pragma: no cover
            errors.append(exc)

    threads = [threading.Thread(target=writer), threading.Thread(target=reader)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors


def test_buffer_rejects_bad_settings():
    for kwargs in ({"seconds": 0}, {"fps": -1}, {"max_side": 2}):
        with pytest.raises(ValueError):
            FrameBuffer(**kwargs)
