"""The window's layout between runs: geometry, splitter sizes, which panels show.

It is UI state, not a setting: it lives in its own small file, ``window.json`` in
the config folder, written atomically when the window closes and read when it
opens.  A missing or damaged file, or a field of the wrong type, is ignored: the
window opens with its default layout.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

from PySide6.QtCore import QRect

from assistant.files import atomic_write

log = logging.getLogger(__name__)

FILE_NAME = "window.json"
VERSION = 1


@dataclass
class WindowLayout:
    geometry: bytes = b""  # QWidget.saveGeometry()
    splitter: bytes = b""  # QSplitter.saveState()
    splitter_count: int = 0  # how many panels the splitter had (its state fits only the same set)
    sidebar_visible: bool = True
    devices_collapsed: bool = False
    devices_width: int = 0  # the devices column's unfolded width (0: unknown)


_BYTES = ("geometry", "splitter")
_TYPES = {"splitter_count": int, "sidebar_visible": bool, "devices_collapsed": bool, "devices_width": int}


def layout_file(config: Path) -> Path:
    return Path(config) / FILE_NAME


def load_layout(path: Path) -> WindowLayout:
    """The layout saved in ``path``; the defaults when it is missing or cannot be used."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return WindowLayout()
    except (OSError, ValueError) as exc:
        log.warning("the window layout in %s is ignored: %s", path, exc)
        return WindowLayout()
    if not isinstance(data, dict) or data.get("version") != VERSION:
        log.warning("the window layout in %s is ignored: not a version %d layout", path, VERSION)
        return WindowLayout()
    layout = WindowLayout()
    for name in _BYTES:
        value = data.get(name)
        if isinstance(value, str):
            try:
                setattr(layout, name, base64.b64decode(value.encode("ascii"), validate=True))
            except (ValueError, binascii.Error):
                log.warning("the window layout's %s is ignored: not base64", name)
    for name, kind in _TYPES.items():
        value = data.get(name)
        # bool is an int in Python: an int field takes no bool, a bool field no int
        if isinstance(value, kind) and (kind is bool or not isinstance(value, bool)):
            setattr(layout, name, value)
    return layout


def save_layout(path: Path, layout: WindowLayout) -> None:
    """Write ``layout`` to ``path`` atomically (raises OSError)."""
    data = asdict(layout)
    for name in _BYTES:
        data[name] = base64.b64encode(data[name]).decode("ascii")
    data["version"] = VERSION
    atomic_write(Path(path), json.dumps(data, indent=1, sort_keys=True).encode("utf-8"))


def clamp_to_screen(frame: QRect, available: QRect) -> QRect:
    """``frame`` made no larger than ``available`` and moved wholly onto it."""
    width = min(frame.width(), available.width())
    height = min(frame.height(), available.height())
    x = min(max(frame.x(), available.left()), available.left() + available.width() - width)
    y = min(max(frame.y(), available.top()), available.top() + available.height() - height)
    return QRect(x, y, width, height)
