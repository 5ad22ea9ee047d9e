"""Selectors that show long paths without widening their column.

A device selector can hold a recording's full path.  ``fit_path_combo`` keeps the
combo's size hint independent of its items (``minimumContentsLength`` characters),
elides items in the middle in the drop-down list, and keeps every full path in
tooltips (the item's, and the combo's own for the current choice).
``PathComboBox`` also paints its current text elided in the middle, so a path
shows its start and its file name, whatever the width.
"""

from __future__ import annotations

from PySide6.QtCore import QModelIndex, Qt
from PySide6.QtGui import QPaintEvent
from PySide6.QtWidgets import QComboBox, QSizePolicy, QStyle, QStyleOptionComboBox, QStylePainter, QWidget

MIN_CHARS = 8  # how many characters a path selector asks room for, whatever its items


def fit_path_combo(combo: QComboBox, description: str, min_chars: int = MIN_CHARS) -> None:
    """Make ``combo`` (items that may be long paths) never widen its layout; full texts in tooltips.

    ``description`` is the combo's tooltip; the current item's full text is added below it.
    """
    combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
    combo.setMinimumContentsLength(min_chars)
    combo.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
    combo.view().setTextElideMode(Qt.TextElideMode.ElideMiddle)
    model = combo.model()

    def tip_items(parent: QModelIndex = QModelIndex(), first: int = 0, last: int | None = None) -> None:
        end = combo.count() - 1 if last is None else last
        for row in range(first, end + 1):
            full = combo.itemText(row)
            if combo.itemData(row, Qt.ItemDataRole.ToolTipRole) != full:
                combo.setItemData(row, full, Qt.ItemDataRole.ToolTipRole)

    def tip_current(*_args) -> None:
        current = combo.currentText()
        combo.setToolTip(f"{description}\n\n{current}" if current else description)
        if combo.lineEdit() is not None:
            combo.lineEdit().setToolTip(combo.toolTip())

    model.rowsInserted.connect(tip_items)
    model.dataChanged.connect(lambda top, bottom, *_: tip_items(QModelIndex(), top.row(), bottom.row()))
    combo.currentTextChanged.connect(tip_current)
    tip_items()
    tip_current()


class PathComboBox(QComboBox):
    """A non-editable combo whose current text is painted elided in the middle."""

    def __init__(self, description: str = "", parent: QWidget | None = None, min_chars: int = MIN_CHARS) -> None:
        super().__init__(parent)
        fit_path_combo(self, description, min_chars)

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 - Qt API
        if self.isEditable():
            super().paintEvent(event)
            return
        painter = QStylePainter(self)
        option = QStyleOptionComboBox()
        self.initStyleOption(option)
        painter.drawComplexControl(QStyle.ComplexControl.CC_ComboBox, option)
        field = self.style().subControlRect(
            QStyle.ComplexControl.CC_ComboBox, option, QStyle.SubControl.SC_ComboBoxEditField, self
        )
        width = field.width() - (option.iconSize.width() + 4 if not option.currentIcon.isNull() else 0)
        option.currentText = self.fontMetrics().elidedText(option.currentText, Qt.TextElideMode.ElideMiddle, max(0, width))
        painter.drawControl(QStyle.ControlElement.CE_ComboBoxLabel, option)
