"""The camera panel: live preview, on/off, source, mirror, FPS, and what goes with the next question.

Capture runs in the engine's ``CameraSource`` thread.  The preview pulls the
newest frame and the newest status on a display-rate timer (no queue can build
up, and no Qt call crosses threads), copies the frame into a ``QImage`` and
makes the pixmap here, on the GUI thread.
"""

from __future__ import annotations

import time

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from assistant.devices.camera import CameraSource, CameraStatus, Frame, parse_source
from assistant.fusion.frame_buffer import FrameBuffer

PREVIEW_FPS = 30


def frame_to_qimage(frame: Frame, mirror: bool = False) -> QImage:
    """A deep copy: the QImage never points into the numpy array."""
    height, width, _ = frame.image.shape
    image = QImage(frame.image.data, width, height, 3 * width, QImage.Format.Format_RGB888).copy()
    return image.flipped(Qt.Orientation.Horizontal) if mirror else image


class CameraPanel(QWidget):
    snapshot_taken = Signal(QImage)
    state_changed = Signal(bool)  # camera on/off

    def __init__(self, source: str = "0", mirror: bool = True, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("cameraPanel")
        self.camera: CameraSource | None = None
        self.buffer = FrameBuffer()
        self._last_index = -1
        self._last_status: CameraStatus | None = None
        self._shown: list[float] = []  # display times of the last frames, for the FPS figure
        self.frames_shown = 0

        column = QVBoxLayout(self)
        column.setContentsMargins(6, 6, 6, 6)
        top = QHBoxLayout()
        self.toggle = QPushButton("Camera off")
        self.toggle.setObjectName("cameraToggle")
        self.toggle.setCheckable(True)
        self.toggle.toggled.connect(self.set_on)
        self.live = QLabel("● LIVE")
        self.live.setObjectName("cameraLive")
        self.live.setToolTip("The camera is on")
        self.live.hide()
        self.fps = QLabel("")
        self.fps.setObjectName("cameraFps")
        top.addWidget(self.toggle)
        top.addWidget(self.live)
        top.addStretch(1)
        top.addWidget(self.fps)
        column.addLayout(top)

        self.preview = QLabel("Camera is off")
        self.preview.setObjectName("cameraPreview")
        self.preview.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.preview.setMinimumSize(240, 180)
        self.preview.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        column.addWidget(self.preview, 1)
        self.status = QLabel("")
        self.status.setObjectName("cameraStatus")
        self.status.setWordWrap(True)
        column.addWidget(self.status)

        row = QHBoxLayout()
        self.source = QComboBox()
        self.source.setEditable(True)
        self.source.addItems(list(dict.fromkeys([source, "0", "1"])))
        self.source.setCurrentText(source)
        self.source.setToolTip("A camera number, a video file or a stream URL (rtsp://, http://)")
        self.source.activated.connect(lambda _i: self.restart())
        browse = QPushButton("File…")
        browse.clicked.connect(self._browse)
        row.addWidget(self.source, 1)
        row.addWidget(browse)
        column.addLayout(row)

        options = QHBoxLayout()
        self.mirror = QCheckBox("Mirror")
        self.mirror.setChecked(mirror)
        self.include = QCheckBox("Include in next question")
        self.include.setChecked(True)
        self.include.setToolTip("Send the most useful of the last few seconds of video with the next question")
        self.snapshot = QPushButton("Snapshot")
        self.snapshot.setToolTip("Attach the current frame as an image")
        self.snapshot.clicked.connect(self.take_snapshot)
        options.addWidget(self.mirror)
        options.addWidget(self.include)
        options.addStretch(1)
        options.addWidget(self.snapshot)
        column.addLayout(options)

        self._stopping: list[CameraSource] = []  # turned off; their threads are ending
        self._timer = QTimer(self)
        self._timer.setInterval(1000 // PREVIEW_FPS)
        self._timer.timeout.connect(self._refresh)
        self._update_controls()

    # -- on / off ----------------------------------------------------------------------

    @property
    def is_on(self) -> bool:
        return self.camera is not None

    def set_on(self, on: bool) -> None:
        if on and self.camera is None:
            self.buffer.clear()
            self._last_index = -1
            self._last_status = None
            self.camera = CameraSource(
                parse_source(self.source.currentText().strip() or "0"),
                loop=True,
                buffer=self.buffer,
            )
            self.camera.start()
            self._timer.start()
        elif not on and self.camera is not None:
            self._timer.stop()
            camera, self.camera = self.camera, None
            camera.request_stop()  # never wait on a capture backend here: it is joined at shutdown
            self._stopping = [c for c in self._stopping if not c.stop(timeout=0)] + [camera]
            self.preview.setPixmap(QPixmap())
            self.preview.setText("Camera is off")
            self.status.setText("")
            self.fps.setText("")
        self._update_controls()
        self.state_changed.emit(self.is_on)

    def restart(self) -> None:
        if self.is_on:
            self.set_on(False)
            self.set_on(True)

    def shutdown(self, timeout: float = 2.0) -> None:
        """Turn the camera off and join every capture thread (each bounded by ``timeout``)."""
        self.toggle.setChecked(False)
        self.set_on(False)
        for camera in self._stopping:
            camera.stop(timeout)
        self._stopping = []

    def _update_controls(self) -> None:
        on = self.is_on
        if self.toggle.isChecked() != on:
            self.toggle.blockSignals(True)
            self.toggle.setChecked(on)
            self.toggle.blockSignals(False)
        self.toggle.setText("Camera on" if on else "Camera off")
        self.live.setVisible(on)
        self.snapshot.setEnabled(on)
        self.include.setEnabled(on)

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Play a video file", "", "Videos (*.mp4 *.avi *.mkv *.mov *.webm);;All files (*)")
        if path:
            self.source.setCurrentText(path)
            self.restart()

    # -- frames ------------------------------------------------------------------------

    def _refresh(self) -> None:
        """On the display timer: the newest frame and the newest status, nothing queued."""
        if self.camera is None:
            return
        status = self.camera.status
        if status != self._last_status:
            self._last_status = status
            self._show_status(status)
        frame = self.camera.latest()
        if frame is None or frame.index == self._last_index:
            return
        self._last_index = frame.index
        image = frame_to_qimage(frame, self.mirror.isChecked())
        size = self.preview.size()
        self.preview.setPixmap(
            QPixmap.fromImage(image).scaled(size, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.FastTransformation)
        )
        self.frames_shown += 1
        now = time.monotonic()
        self._shown.append(now)
        self._shown = [t for t in self._shown if now - t <= 1.0]
        self.fps.setText(f"{len(self._shown)} fps")

    def _show_status(self, status: CameraStatus) -> None:
        self.status.setText("" if status.state == "live" else status.detail)
        self.status.setProperty("state", status.state)
        self.status.style().unpolish(self.status)
        self.status.style().polish(self.status)

    def frames_for_question(self) -> tuple:
        """The recent frames to choose from, when the camera is on and included."""
        if self.is_on and self.include.isChecked():
            return tuple(self.buffer.frames())
        return ()

    def take_snapshot(self) -> None:
        frame = self.camera.latest() if self.camera is not None else None
        if frame is not None:
            self.snapshot_taken.emit(frame_to_qimage(frame, mirror=False))
