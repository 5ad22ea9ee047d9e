"""The window's splitter: when the window gets narrower, the side panels give way before the chat.

``QSplitter`` takes a shrinking window's width from the stretching widget (the
chat) until it reaches its minimum, and only then from the side panels.  Here,
after each resize, a chat narrower than ``comfort`` takes width back from the
side panels, widest first, down to their minimums.  Dragging a handle is the
user's choice and is left alone (it resizes no splitter).
"""

from __future__ import annotations

from PySide6.QtGui import QResizeEvent
from PySide6.QtWidgets import QSplitter, QWidget

COMFORT_WIDTH = 520  # below this, a window resize narrows the side panels first


class PanelSplitter(QSplitter):
    def __init__(self, parent: QWidget | None = None, comfort: int = COMFORT_WIDTH) -> None:
        super().__init__(parent)
        self.main: QWidget | None = None  # the widget that should keep its width: the chat
        self.comfort = comfort

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802 - Qt API
        super().resizeEvent(event)
        old, new = event.oldSize().width(), event.size().width()
        if 0 < new < old and self.isVisible():  # the window got narrower (not its first layout)
            self.favour_main()

    def favour_main(self) -> None:
        """Widen the main widget up to ``comfort`` with width the others can spare."""
        if self.main is None or self.indexOf(self.main) < 0:
            return
        sizes = self.sizes()
        main = self.indexOf(self.main)
        deficit = self.comfort - sizes[main]
        if deficit <= 0:
            return
        spare = {}
        for index in range(self.count()):
            widget = self.widget(index)
            if index == main or widget.isHidden() or sizes[index] == 0:
                continue
            floor = max(widget.minimumWidth(), widget.minimumSizeHint().width())
            if sizes[index] > floor:
                spare[index] = sizes[index] - floor
        if not spare:
            return
        for index in sorted(spare, key=spare.get, reverse=True):
            take = min(spare[index], deficit)
            sizes[index] -= take
            sizes[main] += take
            deficit -= take
            if deficit <= 0:
                break
        self.setSizes(sizes)
