"""The frame buffer: recent camera frames, sampled at a few per second, for attention fusion."""

from __future__ import annotations

import dataclasses
import math
import threading
from collections import deque

import numpy as np

from assistant.devices.camera import Frame


class FrameBuffer:
    """Ring buffer of recent frames sampled at `fps` for `seconds` (bounded memory; thread-safe).

    Sampling is by ``frame.t``: a frame is kept when it reaches the next sampling time
    (a 1/fps grid, so a 30 fps source gives exactly `fps` frames per second, and two
    kept frames are never closer than half a period).  After each kept frame, frames
    ``seconds`` or more older than the newest are dropped, so at most
    ``ceil(seconds * fps)`` frames are held.  Frames whose longer side exceeds
    ``max_side`` are downscaled (aspect kept) when stored; ``max_side=None`` keeps
    them as they are.  A frame older than the newest kept one means the source
    started over (a new camera session): the buffer is cleared first.
    """

    def __init__(self, seconds: float = 5.0, fps: float = 4.0, max_side: int | None = 640) -> None:
        if not (seconds > 0 and math.isfinite(seconds)):
            raise ValueError("FrameBuffer: seconds must be a positive number.")
        if not (fps > 0 and math.isfinite(fps)):
            raise ValueError("FrameBuffer: fps must be a positive number.")
        if max_side is not None and max_side < 8:
            raise ValueError("FrameBuffer: max_side must be at least 8 pixels (or None).")
        self.seconds = float(seconds)
        self.fps = float(fps)
        self.max_side = max_side
        self._period = 1.0 / self.fps
        self._capacity = max(1, math.ceil(self.seconds * self.fps - 1e-9))
        self._frames: deque[Frame] = deque(maxlen=self._capacity)
        self._due: float | None = None
        self._lock = threading.Lock()

    @property
    def capacity(self) -> int:
        """The most frames the buffer ever holds."""
        return self._capacity

    def add(self, frame: Frame) -> bool:
        """Keep ``frame`` if it is due by the sampling rate; True when it was kept."""
        t = float(frame.t)
        if not math.isfinite(t):
            return False
        with self._lock:
            if self._frames and t < self._frames[-1].t - 1e-6:
                self._frames.clear()  # time went backwards: the source started over
                self._due = None
            if self._due is not None and t < self._due - 1e-6:
                return False
            self._due = t + self._period if self._due is None else max(self._due + self._period, t + 0.5 * self._period)
        stored = self._shrink(frame)  # outside the lock: resizing takes a moment
        with self._lock:
            if self._frames and t < self._frames[-1].t - 1e-6:
                return False  # raced with a clear()/restart; drop it
            self._frames.append(stored)
            horizon = t - self.seconds + 1e-9
            while self._frames and self._frames[0].t <= horizon:
                self._frames.popleft()
        return True

    def _shrink(self, frame: Frame) -> Frame:
        if self.max_side is None:
            return frame
        height, width = frame.image.shape[:2]
        longest = max(height, width)
        if longest <= self.max_side:
            return frame
        import cv2

        scale = self.max_side / longest
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        small = cv2.resize(frame.image, size, interpolation=cv2.INTER_AREA)
        return dataclasses.replace(frame, image=np.ascontiguousarray(small))

    def frames(self) -> list[Frame]:
        """The kept frames in time order (a new list)."""
        with self._lock:
            return list(self._frames)

    def clear(self) -> None:
        with self._lock:
            self._frames.clear()
            self._due = None

    def __len__(self) -> int:
        with self._lock:
            return len(self._frames)
