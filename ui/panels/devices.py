"""The column of devices (camera above, microphone below) that folds to a thin bar.

The bar on its left edge holds an arrow button: folded, only the bar stays (the
camera and microphone keep running; their panels are hidden); unfolded, the
column gets back the width it had.  In a ``QSplitter`` the width is taken from
(or given to) the widget on its left, the chat, whose minimum width the splitter
respects.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QSizePolicy, QSplitter, QToolButton, QVBoxLayout, QWidget

BAR_WIDTH = 26
COMBO_MIN_CHARS = 5  # what a selector in the column asks room for, whatever its longest item
DEFAULT_WIDTH = 320  # the column's width when unfolded and nothing else is known
_NO_MAX = 16777215  # QWIDGETSIZE_MAX

COLLAPSE_TEXT = "Hide camera and microphone"
EXPAND_TEXT = "Show camera and microphone"


class DevicesColumn(QWidget):
    collapsed_changed = Signal(bool)

    def __init__(self, panels: list[QWidget], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("devicesColumn")
        self.collapsed = False
        self.expanded_width = DEFAULT_WIDTH
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(0)
        self.bar = QWidget()
        self.bar.setObjectName("devicesBar")
        self.bar.setFixedWidth(BAR_WIDTH)
        bar_column = QVBoxLayout(self.bar)
        bar_column.setContentsMargins(2, 6, 2, 6)
        self.fold_button = QToolButton()
        self.fold_button.setObjectName("devicesFoldButton")
        self.fold_button.setAutoRaise(True)
        self.fold_button.clicked.connect(lambda: self.set_collapsed(not self.collapsed))
        bar_column.addWidget(self.fold_button, 0, Qt.AlignmentFlag.AlignHCenter)
        bar_column.addStretch(1)
        row.addWidget(self.bar)
        self.content = QWidget()
        self.content.setObjectName("devicesContent")
        self.content.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Expanding)
        column = QVBoxLayout(self.content)
        column.setContentsMargins(0, 0, 0, 0)
        for index, panel in enumerate(panels):
            column.addWidget(panel, 1 if index == 0 else 0)
            for combo in panel.findChildren(QComboBox):
                self._never_widen(combo)
        row.addWidget(self.content, 1)
        self._show_fold_state()

    @staticmethod
    def _never_widen(combo: QComboBox) -> None:
        """A selector's longest item (a recording's path, a long device name) never widens the column;
        its drop-down list still shows the items whole, and tooltips name them."""
        adjust = QComboBox.SizeAdjustPolicy
        if combo.sizeAdjustPolicy() != adjust.AdjustToMinimumContentsLengthWithIcon:
            combo.setSizeAdjustPolicy(adjust.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(COMBO_MIN_CHARS)

    def set_collapsed(self, collapsed: bool) -> None:
        """Fold the column to its bar (True) or unfold it to the width it had (False)."""
        if collapsed == self.collapsed:
            return
        splitter = self.parentWidget() if isinstance(self.parentWidget(), QSplitter) else None
        if collapsed:
            if self.isVisible() and self.width() > BAR_WIDTH * 2:  # not a width before the first layout
                self.expanded_width = self.width()
            self.collapsed = True
            self.content.hide()
            self.setMaximumWidth(BAR_WIDTH)
            if splitter is not None:
                self._give_width(splitter)
        else:
            self.collapsed = False
            self.setMaximumWidth(_NO_MAX)
            self.content.show()
            if splitter is not None:
                self._take_width(splitter)
        self._show_fold_state()
        self.collapsed_changed.emit(collapsed)

    def _give_width(self, splitter: QSplitter) -> None:
        """Folded: the width the column had goes to the widget on its left."""
        index = splitter.indexOf(self)
        sizes = splitter.sizes()
        if index <= 0 or not sizes or sizes[index] <= BAR_WIDTH:
            return
        sizes[index - 1] += sizes[index] - BAR_WIDTH
        sizes[index] = BAR_WIDTH
        splitter.setSizes(sizes)

    def _take_width(self, splitter: QSplitter) -> None:
        """Give the column its unfolded width back: from the widget on its left (the chat) first,
        then from the others, none below its minimum width."""
        index = splitter.indexOf(self)
        sizes = splitter.sizes()
        if index < 0 or not sizes:
            return
        grow = max(self.expanded_width, self.minimumSizeHint().width()) - sizes[index]
        donors = [index - 1] if index > 0 else []
        donors += [i for i in range(len(sizes)) if i not in donors and i != index]
        for donor in donors:
            if grow <= 0:
                break
            widget = splitter.widget(donor)
            if widget.isHidden() or sizes[donor] == 0:
                continue
            take = min(grow, max(0, sizes[donor] - max(widget.minimumWidth(), widget.minimumSizeHint().width())))
            sizes[donor] -= take
            sizes[index] += take
            grow -= take
        splitter.setSizes(sizes)

    def _show_fold_state(self) -> None:
        text = EXPAND_TEXT if self.collapsed else COLLAPSE_TEXT
        self.fold_button.setArrowType(Qt.ArrowType.LeftArrow if self.collapsed else Qt.ArrowType.RightArrow)
        self.fold_button.setToolTip(text)
        self.fold_button.setAccessibleName(text)
        self.setAccessibleName("Camera and microphone" + (" (hidden)" if self.collapsed else ""))
