"""Camera capture on OpenCV: a device index, a video file or a stream URL, in its own thread.

``CameraSource`` runs ``cv2.VideoCapture`` in one non-daemon thread.  Every
frame is converted BGR -> RGB (which also copies it out of OpenCV's buffer)
before it leaves that thread; the newest frame is kept for ``latest()`` (newest
wins, nothing queues up) and offered to a ``FrameSink``: the fusion stage's ``FrameBuffer``, a bounded ring
of recent frames sampled at a few frames per second.

Faults never raise into the caller: they become a ``CameraStatus`` (passed to
``on_status`` from the capture thread, and readable any time as ``.status``),
and the source reconnects with exponential backoff.  ``stop()`` wakes the
thread from any wait and joins it.

Nothing here imports Qt: the window polls ``latest()`` on its own timer and
turns statuses into signals.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import math
import os
import re
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import numpy as np

from assistant.errors import short_message

log = logging.getLogger(__name__)

__all__ = ["CameraSource", "CameraStatus", "Frame", "FrameSink", "parse_source"]


# ----------------------------------------------------------------------------------------
# Records
# ----------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)  # eq=False: comparing numpy images with == is ambiguous; frames compare by identity
class Frame:
    """One captured frame.

    ``image`` is H x W x 3, uint8, RGB, C-contiguous and owned by this frame (never a
    view of a capture buffer).  The same ``Frame`` object is handed to ``latest()``
    callers and to the buffer: treat the pixels as read-only (copy before drawing on them).
    """

    image: np.ndarray
    t: float  # seconds from the start of the source (file: its timestamp in the video)
    index: int  # increasing id, unique in the process (so caches keyed on it never mix sources)


class FrameSink(Protocol):
    """Where a camera offers every frame (``fusion.frame_buffer.FrameBuffer`` samples them)."""

    def add(self, frame: Frame) -> bool: ...


STATES = ("starting", "live", "retrying", "ended", "stopped", "failed")


@dataclass(frozen=True)
class CameraStatus:
    state: str  # "starting" | "live" | "retrying" | "ended" | "stopped" | "failed"
    detail: str  # one clear sentence for the user
    fps: float = 0.0  # measured capture rate (frames delivered per second), 0 when not live


_frame_ids = itertools.count()
_frame_ids_lock = threading.Lock()


def _next_index() -> int:
    with _frame_ids_lock:
        return next(_frame_ids)


_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")


def parse_source(text: str | int) -> int | str:
    """``"0"`` or ``0`` -> device index 0; anything else (a path, an rtsp/http URL) stays a string.

    Surrounding whitespace is removed and ``~`` in a path is expanded.  Raises
    ``ValueError`` for an empty source or a negative device index.
    """
    if isinstance(text, bool):
        raise ValueError("A camera source must be a device number, a video file or a stream URL.")
    if isinstance(text, int):
        if text < 0:
            raise ValueError(f"Camera number {text} is not valid; camera numbers start at 0.")
        return text
    stripped = str(text).strip()
    if not stripped:
        raise ValueError("No camera source was given: use a camera number, a video file or a stream URL.")
    if re.fullmatch(r"[+-]?\d+", stripped):
        number = int(stripped)
        if number < 0:
            raise ValueError(f"Camera number {number} is not valid; camera numbers start at 0.")
        return number
    if _URL.match(stripped):
        return stripped
    return os.path.expanduser(stripped)


def _redact(url: str) -> str:
    """The URL without a user name or password (statuses are shown on screen and logged)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def _seconds(value: float) -> str:
    return f"{value:.3g} s"


# ----------------------------------------------------------------------------------------
# Capture
# ----------------------------------------------------------------------------------------

StatusCallback = Callable[[CameraStatus], None]

_live_sources: weakref.WeakSet[CameraSource] = weakref.WeakSet()
_exit_hook_lock = threading.Lock()
_exit_hook_installed = False


def _stop_all_at_exit() -> None:
    """Runs before Python joins non-daemon threads at exit: a forgotten camera must not hang it."""
    for source in list(_live_sources):
        source.request_stop()


def _install_exit_hook() -> None:
    global _exit_hook_installed
    with _exit_hook_lock:
        if _exit_hook_installed:
            return
        register = getattr(threading, "_register_atexit", None)  # CPython: called before threads are joined
        if register is not None:
            try:
                register(_stop_all_at_exit)
            except RuntimeError:  # already shutting down
                return
        _exit_hook_installed = True


_opencv_quieted = False


def _import_cv2() -> Any:
    """cv2, with its log level lowered to errors unless the user chose one (OPENCV_LOG_LEVEL):
    otherwise every reconnect attempt prints backend warnings to the terminal."""
    global _opencv_quieted
    # FFmpeg's own lines ("moov atom not found") go straight to the terminal; the app says
    # what went wrong in its own words.  AV_LOG_FATAL (8) keeps only crashes, unless the user chose.
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "8")
    import cv2

    if not _opencv_quieted:
        _opencv_quieted = True
        if "OPENCV_LOG_LEVEL" not in os.environ:
            try:
                cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
            except AttributeError:  # very old builds
                pass
    return cv2


class _Fault(Exception):
    """A camera problem worth a reconnect: its message is the user-facing cause (no period)."""


_FILE_END = "end"
_STOPPED = "stopped"

DEFAULT_FILE_FPS = 30.0
MAX_READ_FAILURES = 3  # consecutive failed reads of a live source before it counts as disconnected
FPS_REPORT_INTERVAL = 1.0  # seconds between "live" statuses that carry a fresh fps


class CameraSource:
    """cv2.VideoCapture on a device index, a video file, or a stream URL, in its own thread.

    * ``realtime=True`` paces a file by its frame rate; ``False`` decodes a file as fast
      as it can (devices and streams always deliver at their own rate).
    * ``loop=True`` plays a file again from the start each time it ends; ``t`` keeps
      growing across loops (each loop adds the file's duration).
    * ``buffer`` receives every frame (it samples them itself).
    * ``on_status`` is called from the capture thread on every state change and, while
      live, about once a second with a fresh ``fps``.  (When ``stop()`` is called after
      the thread already finished, its "stopped" status comes from the caller's thread.)
    * Faults: a source that cannot be opened, read failures, a stall longer than
      ``stall_timeout`` seconds -> "retrying", reconnecting after 1, 2, 4 ... up to
      ``max_backoff`` seconds (``initial_backoff`` is the first delay), or "failed"
      when ``reconnect=False``.  Corrupt frames (None, wrong shape) are skipped.  A
      non-looping file that ends -> "ended" and the thread finishes.
    """

    initial_backoff = 1.0  # seconds before the first reconnect; doubles up to max_backoff

    def __init__(
        self,
        source: int | str,
        *,
        loop: bool = False,
        realtime: bool = True,
        buffer: FrameSink | None = None,
        on_status: StatusCallback | None = None,
        reconnect: bool = True,
        max_backoff: float = 5.0,
        stall_timeout: float = 3.0,
    ) -> None:
        self.source = parse_source(source)
        self.loop = loop
        self.realtime = realtime
        self.buffer = buffer
        self.on_status = on_status
        self.reconnect = reconnect
        self.max_backoff = max(0.0, float(max_backoff))
        self.stall_timeout = max(0.05, float(stall_timeout))
        self.kind = "device" if isinstance(self.source, int) else ("stream" if _URL.match(self.source) else "file")
        if self.kind == "device":
            self.name = f"Camera {self.source}"
        elif self.kind == "stream":
            self.name = f"Stream {_redact(self.source)}"
        else:
            self.name = f"Video '{os.path.basename(self.source) or self.source}'"
        self.frames_skipped = 0  # corrupt frames dropped (all sessions)
        self.frames_captured = 0  # frames delivered in the current session
        self.cut_short = ""  # how a video file ended before its container said it would ("after 2.0 s of …")
        self._lock = threading.Lock()
        self._status = CameraStatus("stopped", f"{self.name} is off.")
        self._latest: Frame | None = None
        self._thread: threading.Thread | None = None
        self._stop_event = threading.Event()
        self._finished = threading.Event()
        self._finished.set()
        self._ended = False
        self._origin = time.monotonic()
        self._delivered: deque[float] = deque(maxlen=32)  # monotonic times of recent frames, for fps

    # -- public ----------------------------------------------------------------------------

    def start(self) -> None:
        """Start capturing (no-op while running).  A new session: t starts at 0 again."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                if not self._stop_event.is_set():
                    return
                raise RuntimeError(f"{self.name}: the previous capture thread has not ended yet.")
            self._stop_event = threading.Event()
            self._finished = threading.Event()
            self._ended = False
            self.cut_short = ""
            self._latest = None
            self._delivered.clear()
            self.frames_captured = 0
            self._origin = time.monotonic()
            stop, finished = self._stop_event, self._finished
            self._thread = threading.Thread(
                target=self._run, args=(stop, finished), name=f"camera-capture ({self.name})", daemon=False
            )
        _install_exit_hook()
        _live_sources.add(self)
        self._set_status("starting", self._opening_text(), notify=False)  # the thread announces it
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> bool:
        """Stop capturing and join the thread; True if it ended within ``timeout`` seconds.

        Returns at once from a backoff wait or between frames; a read blocked inside
        the capture backend is waited for up to ``timeout``.  Safe to call repeatedly.
        """
        with self._lock:
            thread = self._thread
            self._stop_event.set()
        if thread is None or thread is threading.current_thread():
            if thread is None or not thread.is_alive():
                self._set_status("stopped", f"{self.name} is off.")
            return thread is None  # called from our own status callback: cannot join itself
        thread.join(max(0.0, timeout))
        if thread.is_alive():
            if timeout > 0:
                log.warning("%s: the capture thread did not end within %.1f s", self.name, timeout)
            return False
        with self._lock:
            if self._thread is thread:
                self._thread = None
        _live_sources.discard(self)
        self._set_status("stopped", f"{self.name} is off.")  # no-op when the thread said so already
        return True

    def latest(self) -> Frame | None:
        """The newest frame of this session (non-blocking), or None before the first."""
        return self._latest

    def wait_until_ended(self, timeout: float) -> bool:
        """Wait for the capture thread to finish; True if a (non-looping) file played to its end.

        Returns False at once when the source failed or was stopped, and after
        ``timeout`` seconds when it is still playing.
        """
        self._finished.wait(max(0.0, timeout))
        return self._ended

    @property
    def running(self) -> bool:
        """True while the capture thread is alive and has not been asked to stop."""
        thread = self._thread
        return thread is not None and thread.is_alive() and not self._stop_event.is_set()

    @property
    def status(self) -> CameraStatus:
        status = self._status
        if status.state == "live":
            return dataclasses.replace(status, fps=self._measured_fps())
        return status

    def __repr__(self) -> str:
        return f"CameraSource({self.name}, state={self._status.state})"

    # -- status ----------------------------------------------------------------------------

    def _opening_text(self) -> str:
        if self.kind == "device":
            return f"Opening camera {self.source}…"
        if self.kind == "stream":
            return f"Connecting to {self.name[len('Stream '):]}…"
        return f"Opening {self.name[0].lower()}{self.name[1:]}…"

    def _live_text(self) -> str:
        return f"Playing {self.name[0].lower()}{self.name[1:]}." if self.kind == "file" else f"{self.name} is live."

    def _set_status(self, state: str, detail: str, *, force: bool = False, notify: bool = True) -> None:
        fps = self._measured_fps() if state == "live" else 0.0
        with self._lock:
            old = self._status
            if not force and old.state == state and old.detail == detail:
                return
            self._status = status = CameraStatus(state, detail, fps)
        if state != "live" or old.state != "live":
            log.info("%s: %s", state, detail)
        if notify:
            self._notify(status)

    def _notify(self, status: CameraStatus) -> None:
        callback = self.on_status
        if callback is not None:
            try:
                callback(status)
            except Exception:  # noqa: BLE001 - a broken listener must not stop the camera
                log.exception("camera status callback failed")

    def _measured_fps(self) -> float:
        times = list(self._delivered)
        if len(times) < 2:
            return 0.0
        now = time.monotonic()
        if now - times[-1] > 2.0:  # nothing recent
            return 0.0
        span = times[-1] - times[0]
        return round((len(times) - 1) / span, 1) if span > 0 else 0.0

    def request_stop(self) -> None:
        """Ask the capture thread to end, and return at once (for a GUI thread, which must not
        wait on a capture backend); ``stop`` joins it later."""
        self._stop_event.set()

    # -- the capture thread ----------------------------------------------------------------

    def _run(self, stop: threading.Event, finished: threading.Event) -> None:
        attempt = 0
        progress = _FileProgress()
        try:
            self._notify(self._status)  # "starting", set by start()
            while not stop.is_set():
                try:
                    outcome = self._session(stop, progress)
                except _Fault as fault:
                    if not self.reconnect:
                        self._set_status("failed", f"{fault}.")
                        return
                    if progress.went_live:
                        attempt = 0  # it worked for a while: start the backoff over
                        progress.went_live = False
                    delay = min(self.max_backoff, self.initial_backoff * (2**attempt))
                    attempt += 1
                    self._set_status("retrying", f"{fault}; retrying in {_seconds(delay)}…", force=True)
                    if stop.wait(delay):
                        return
                    continue
                if outcome == _STOPPED:
                    return
                if outcome == _FILE_END:
                    if self.loop:
                        progress.next_loop()
                        attempt = 0
                        continue
                    self._ended = True
                    self._set_status("ended", f"{self.name} has ended" + (f" {self.cut_short}." if self.cut_short else "."))
                    return
        except Exception as exc:  # noqa: BLE001 - report it; the rest of the app carries on
            log.exception("%s: capture thread failed", self.name)
            self._set_status("failed", f"{self.name} stopped because of an unexpected error: {exc}.")
        finally:
            if stop.is_set():
                self._set_status("stopped", f"{self.name} is off.")
            finished.set()

    def _open(self) -> Any:
        cv2 = _import_cv2()
        source = self.source
        try:
            if self.kind == "stream":
                timeout_ms = int(max(self.stall_timeout, 1.0) * 1000)
                params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, max(timeout_ms, 10_000), cv2.CAP_PROP_READ_TIMEOUT_MSEC, timeout_ms]
                cap = cv2.VideoCapture(source, cv2.CAP_ANY, params)
            else:
                cap = cv2.VideoCapture(source)
        except Exception as exc:  # noqa: BLE001 - cv2.error and friends
            raise _Fault(f"{self.name} could not be opened ({short_message(exc)})") from None
        if cap is None or not cap.isOpened():
            if cap is not None:
                cap.release()
            raise _Fault(self._cannot_open_text())
        if self.kind == "device":
            try:
                cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # fresh frames, not a backlog (where supported)
            except Exception:  # noqa: BLE001
                pass
        return cap

    def _cannot_open_text(self) -> str:
        if self.kind == "device":
            if sys.platform.startswith("linux") and not os.path.exists(f"/dev/video{self.source}"):
                return f"{self.name} was not found"
            return f"{self.name} could not be opened (not connected, or in use by another app)"
        if self.kind == "stream":
            return f"{self.name} could not be opened"
        if not os.path.exists(self.source):
            return f"{self.name} was not found"
        return f"{self.name} could not be opened (unsupported or damaged file)"

    def _session(self, stop: threading.Event, progress: _FileProgress) -> str:
        """One connection: open, read until the end / a fault / stop.  Returns _FILE_END or _STOPPED."""
        cap = self._open()
        try:
            return self._pump(cap, stop, progress)
        finally:
            try:
                cap.release()
            except Exception:  # noqa: BLE001
                log.debug("release failed", exc_info=True)

    def _pump(self, cap: Any, stop: threading.Event, progress: _FileProgress) -> str:
        cv2 = _import_cv2()
        is_file = self.kind == "file"
        file_fps = DEFAULT_FILE_FPS
        if is_file:
            reported = _get(cap, cv2.CAP_PROP_FPS)
            if reported is not None and 1.0 <= reported <= 1000.0:
                file_fps = reported
            progress.begin(cap, cv2, file_fps)
        got_frame = False
        shape: tuple[int, ...] | None = None
        last_good = time.monotonic()
        failures = 0
        clock: tuple[float, float] | None = None  # (monotonic, file time) anchor for realtime pacing
        last_report = 0.0

        while not stop.is_set():
            try:
                ok, raw = cap.read()
            except Exception as exc:  # noqa: BLE001 - a backend error is a disconnect
                raise _Fault(f"{self.name} failed while reading ({short_message(exc)})") from None
            now = time.monotonic()
            if stop.is_set():
                return _STOPPED
            if not ok:
                if is_file:
                    if not got_frame and not progress.frames:
                        raise _Fault(f"{self.name} could not be read (unsupported or damaged file)")
                    self.cut_short = _cut_short(progress.frames, _get(cap, cv2.CAP_PROP_FRAME_COUNT), file_fps)
                    return _FILE_END
                failures += 1
                if failures >= MAX_READ_FAILURES:
                    if got_frame:
                        raise _Fault(f"{self.name} disconnected")
                    if self.kind == "device":
                        raise _Fault(f"{self.name} gives no picture (it may be in use by another app)")
                    raise _Fault(f"{self.name} sent no frames")
                if now - last_good > self.stall_timeout:
                    raise _Fault(self._stalled_text())
                if stop.wait(0.02):
                    return _STOPPED
                continue
            failures = 0
            image = _to_rgb(raw, cv2)
            if image is None or (shape is not None and image.shape != shape):
                self.frames_skipped += 1
                if now - last_good > self.stall_timeout:
                    raise _Fault(self._stalled_text())
                continue
            if got_frame and not is_file and now - last_good > self.stall_timeout:
                # A frame after a long silence: the link is unreliable; reconnecting is what helps.
                raise _Fault(self._stalled_text())
            shape = image.shape

            if is_file:
                t_file = progress.timestamp(cap, cv2)
                t = progress.offset + t_file
                if self.realtime:
                    if clock is None:
                        clock = (now, t_file)
                    wait = clock[0] + (t_file - clock[1]) - time.monotonic()
                    if wait > 0:
                        if stop.wait(wait):
                            return _STOPPED
                    elif wait < -0.25:  # decoding fell behind: do not burst to catch up
                        clock = (time.monotonic(), t_file)
            else:
                t = now - self._origin
            frame = Frame(image=image, t=t, index=_next_index())
            self._deliver(frame)
            last_good = time.monotonic()
            if not got_frame:
                got_frame = True
                progress.went_live = True
                self._set_status("live", self._live_text())
                last_report = last_good
            elif last_good - last_report >= FPS_REPORT_INTERVAL:
                last_report = last_good
                self._set_status("live", self._live_text(), force=True)
        return _STOPPED

    def _stalled_text(self) -> str:
        return f"{self.name} stopped sending frames (nothing for over {_seconds(self.stall_timeout)})"

    def _deliver(self, frame: Frame) -> None:
        self._latest = frame
        self.frames_captured += 1
        self._delivered.append(time.monotonic())
        if self.buffer is not None:
            self.buffer.add(frame)


def _cut_short(frames_read: int, frames_claimed: float | None, fps: float) -> str:
    """How a video file ended early, in words ("after 2.0 s of its 10.0 s: …"); empty when it
    played to the end its container promised (within a tenth and a frame)."""
    if not frames_claimed or frames_read >= 0.9 * frames_claimed - 1:
        return ""
    return (f"after {frames_read / fps:.1f} s of its {frames_claimed / fps:.1f} s: the file may be cut short or "
            "damaged")


class _FileProgress:
    """Where a file source is, across loops and reconnects, so that ``t`` never goes back."""

    def __init__(self) -> None:
        self.offset = 0.0  # added to the file's own timestamps (completed loops)
        self.frames = 0  # frames read in the current pass
        self.last = -1.0  # file time of the last frame of the current pass
        self.period = 1.0 / DEFAULT_FILE_FPS
        self.went_live = False

    def begin(self, cap: Any, cv2: Any, fps: float) -> None:
        self.period = 1.0 / fps
        if self.frames:
            # Reopened after a fault mid-file: continue where it broke off if the file can seek.
            try:
                resumed = bool(cap.set(cv2.CAP_PROP_POS_FRAMES, float(self.frames)))
            except Exception:  # noqa: BLE001
                resumed = False
            if not resumed:
                self.next_loop()

    def next_loop(self) -> None:
        if self.frames:
            self.offset += self.last + self.period
        self.frames = 0
        self.last = -1.0

    def timestamp(self, cap: Any, cv2: Any) -> float:
        """The file time of the frame just read: the container's timestamp when it is sane."""
        position = _get(cap, cv2.CAP_PROP_POS_MSEC)
        expected = self.last + self.period if self.frames else 0.0
        t = position / 1000.0 if position is not None and position >= 0 else expected
        if self.frames and t <= self.last:  # missing or non-increasing timestamps
            t = expected
        self.frames += 1
        self.last = t
        return t


def _get(cap: Any, prop: int) -> float | None:
    try:
        value = float(cap.get(prop))
    except Exception:  # noqa: BLE001
        return None
    return value if math.isfinite(value) else None


def _to_rgb(raw: Any, cv2: Any) -> np.ndarray | None:
    """An owned, contiguous RGB uint8 copy of a BGR/BGRA/gray frame, or None for a corrupt one."""
    if not isinstance(raw, np.ndarray) or raw.dtype != np.uint8 or raw.size == 0:
        return None
    if raw.ndim == 2:
        code = cv2.COLOR_GRAY2RGB
    elif raw.ndim == 3 and raw.shape[2] == 3:
        code = cv2.COLOR_BGR2RGB
    elif raw.ndim == 3 and raw.shape[2] == 4:
        code = cv2.COLOR_BGRA2RGB
    elif raw.ndim == 3 and raw.shape[2] == 1:
        raw, code = raw[:, :, 0], cv2.COLOR_GRAY2RGB
    else:
        return None
    if raw.shape[0] < 2 or raw.shape[1] < 2:
        return None
    try:
        image = cv2.cvtColor(raw, code)
    except Exception:  # noqa: BLE001 - cv2.error on a malformed buffer
        return None
    if image is raw or image.base is not None or not image.flags.c_contiguous:
        image = np.array(image, copy=True, order="C")
    return image
