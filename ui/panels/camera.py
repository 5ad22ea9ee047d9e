"""The camera panel: live preview, on/off, source, mirror, FPS, and whether frames go with questions.

Capture runs in the engine's ``CameraSource`` thread.  The preview pulls the
newest frame and the newest status on a display-rate timer (no queue can build
up, and no Qt call crosses threads), copies the frame into a ``QImage`` and
makes the pixmap here, on the GUI thread.

The panel shows one state at a time (``state``): "off", "starting", "live",
"retrying", "ended" or "failed".  The toggle says what clicking it does ("Turn
camera on" / "Turn camera off"), "● LIVE" shows only while frames arrive, the
status line says why there is no picture, and Snapshot works only while there
is a live frame to take.  "What's in view" names what the newest frame shows
(``ui/panels/view_labels.py``).
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
from assistant.settings import DEFAULT_VIEW_LABELS, parse_labels

from ui.panels.elide import fit_path_combo
from ui.panels.view_labels import ViewLabelsControl

PREVIEW_FPS = 30
TURN_ON = "Turn camera on"
TURN_OFF = "Turn camera off"
SOURCE_HELP = "Camera source: a camera number, a video file or a stream URL (rtsp://, http://)"
_NO_PICTURE = {  # the preview's text when there is no frame to show, by state
    "off": "Camera is off",
    "starting": "Starting…",
    "retrying": "No picture",
    "ended": "No picture",
    "failed": "No picture",
    "live": "",
}


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
        self.state = "off"  # "off" | "starting" | "live" | "retrying" | "ended" | "failed"
        self._shown: list[float] = []  # display times of the last frames, for the FPS figure
        self.frames_shown = 0

        column = QVBoxLayout(self)
        column.setContentsMargins(6, 6, 6, 6)
        top = QHBoxLayout()
        self.toggle = QPushButton(TURN_ON)
        self.toggle.setObjectName("cameraToggle")
        self.toggle.setCheckable(True)
        self.toggle.toggled.connect(self.set_on)
        self.live = QLabel("● LIVE")
        self.live.setObjectName("cameraLive")
        self.live.setToolTip("The camera is live: frames are arriving")
        self.live.setAccessibleName("Camera is live")
        self.live.hide()
        self.fps = QLabel("")
        self.fps.setObjectName("cameraFps")
        self.fps.setAccessibleName("Camera frames per second")
        top.addWidget(self.toggle)
        top.addWidget(self.live)
        top.addStretch(1)
        top.addWidget(self.fps)
        column.addLayout(top)

        self.preview = QLabel(_NO_PICTURE["off"])
        self.preview.setObjectName("cameraPreview")
        self.preview.setAccessibleName("Camera preview")
        self.preview.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.preview.setMinimumSize(160, 120)
        self.preview.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Ignored)
        column.addWidget(self.preview, 1)
        self.status = QLabel("")
        self.status.setObjectName("cameraStatus")
        self.status.setAccessibleName("Camera status")
        self.status.setWordWrap(True)
        self.status.hide()
        column.addWidget(self.status)
        # "What's in view": labels of the newest frame, under the preview (ui/panels/view_labels.py).
        self.view = ViewLabelsControl(self.buffer, parse_labels(DEFAULT_VIEW_LABELS), parent=self)
        column.addWidget(self.view.line)

        row = QHBoxLayout()
        self.source = QComboBox()
        self.source.setObjectName("cameraSource")
        self.source.setAccessibleName("Camera source")
        self.source.setEditable(True)
        fit_path_combo(self.source, SOURCE_HELP)
        self.source.addItems(list(dict.fromkeys([source, "0", "1"])))
        self.source.setCurrentText(source)
        self.source.activated.connect(lambda _i: self.restart())
        self.browse = QPushButton("File…")
        self.browse.setObjectName("cameraBrowse")
        self.browse.setToolTip("Play a video file as the camera")
        self.browse.setAccessibleName("Choose a video file as the camera")
        self.browse.clicked.connect(self._browse)
        row.addWidget(self.source, 1)
        row.addWidget(self.browse)
        column.addLayout(row)

        options = QHBoxLayout()
        self.mirror = QCheckBox("Mirror")
        self.mirror.setObjectName("cameraMirror")
        self.mirror.setToolTip("Show the preview mirrored, like a mirror (what is sent is never mirrored)")
        self.mirror.setAccessibleName("Mirror the preview")
        self.mirror.setChecked(mirror)
        self.snapshot = QPushButton("Snapshot")
        self.snapshot.setObjectName("cameraSnapshot")
        self.snapshot.setToolTip("Attach the current frame to the message as an image")
        self.snapshot.setAccessibleName("Attach a snapshot of the camera")
        self.snapshot.clicked.connect(self.take_snapshot)
        options.addWidget(self.mirror)
        options.addStretch(1)
        options.addWidget(self.snapshot)
        column.addLayout(options)
        # Every question (typed or spoken) takes the recent frames while this is on: it says so.
        self.include = QCheckBox("Send frames with each question")
        self.include.setObjectName("cameraInclude")
        self.include.setAccessibleName("Send camera frames with each question")
        self.include.setChecked(True)
        self.include.setToolTip("While the camera is live, every question you type or say goes with the most "
                                "useful of the last few seconds of video")
        column.addWidget(self.include)
        column.addWidget(self.view.box)

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
            self.state = "starting"
            self.camera = CameraSource(
                parse_source(self.source.currentText().strip() or "0"),
                loop=True,
                buffer=self.buffer,
            )
            self.camera.start()
            self.view.set_camera_on(True)
            self._timer.start()
            self._refresh()  # "Opening …" at once, not a tick later
        elif not on and self.camera is not None:
            self._timer.stop()
            camera, self.camera = self.camera, None
            camera.request_stop()  # never wait on a capture backend here: it is joined at shutdown
            self._stopping = [c for c in self._stopping if not c.stop(timeout=0)] + [camera]
            self.view.set_camera_on(False)
            self.state = "off"
            self._last_index = -1
            self.preview.setPixmap(QPixmap())
            self._show_status(None)
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
        self.view.shutdown(timeout)

    def _update_controls(self) -> None:
        """Every control from ``state``: one truth (on, off or retrying), and what cannot act is disabled."""
        on = self.is_on
        if self.toggle.isChecked() != on:
            self.toggle.blockSignals(True)
            self.toggle.setChecked(on)
            self.toggle.blockSignals(False)
        self.toggle.setText(TURN_OFF if on else TURN_ON)
        self.toggle.setAccessibleName(self.toggle.text())
        self.toggle.setToolTip("Stop the camera" if on else "Start the camera and show its preview")
        live = self.state == "live"
        self.live.setVisible(live)
        if not live:
            self.fps.setText("")
        self.snapshot.setEnabled(live and self._last_index >= 0)
        self.include.setEnabled(on)
        if not live or self._last_index < 0:
            self.preview.setPixmap(QPixmap())  # never a stale frame beside "retrying"
            self.preview.setText(_NO_PICTURE.get(self.state, ""))

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
        self.view.refresh()
        status = self.camera.status
        last = self._last_status
        if last is None or (status.state, status.detail) != (last.state, last.detail):  # not each fps change
            self._last_status = status
            self._show_status(status)
        if self.state != "live":
            return
        frame = self.camera.latest()
        if frame is None or frame.index == self._last_index:
            return
        first = self._last_index < 0
        self._last_index = frame.index
        if first:
            self._update_controls()  # a frame to take: Snapshot can act now
        if not self.isVisible():  # folded away: the camera still runs, nothing is drawn
            return
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

    def _show_status(self, status: CameraStatus | None) -> None:
        """Take the capture thread's newest status (None: the camera is off) as the panel's state."""
        if status is None:
            self.state = "off"
        elif status.state == "stopped":
            self.state = "off" if self.camera is None else "starting"
        else:
            self.state = status.state
        if self.state != "live":
            self._last_index = -1  # a frame from before a fault is not shown again, nor snapshot
        detail = status.detail if status is not None and self.state not in ("live", "off") else ""
        self.status.setText(detail)
        self.status.setVisible(bool(detail))
        self.status.setProperty("state", self.state)
        self.status.style().unpolish(self.status)
        self.status.style().polish(self.status)
        self.preview.setAccessibleDescription(detail or _NO_PICTURE.get(self.state, ""))
        self._update_controls()

    def frames_for_question(self) -> tuple:
        """The recent frames to choose from, when the camera is live and its frames go with questions."""
        if self.is_on and self.state == "live" and self.include.isChecked():
            return tuple(self.buffer.frames())
        return ()

    def take_snapshot(self) -> None:
        frame = self.camera.latest() if self.camera is not None and self.state == "live" else None
        if frame is not None:
            self.snapshot_taken.emit(frame_to_qimage(frame, mirror=False))
