"""Help → Keyboard shortcuts: every shortcut of the window, read from its real actions.

The commands come from the window's ``QAction``s (their text and shortcuts) and from
``QShortcut``s that describe themselves with ``whatsThis``; the keys that are not
actions (Enter sends, Shift+Enter, Space to talk) are listed from ``FIXED_KEYS``,
which follows ``ui/panels/composer.py`` (``PromptEdit``) and the window's
``eventFilter``.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QHeaderView,
    QLabel,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

# (what it does, keys): the keys handled in code rather than by actions.
FIXED_KEYS = (
    ("Send the message", "Enter"),
    ("New line in the message", "Shift+Enter"),
    ("Leave the message box (next control)", "Tab"),
    ("Talk while held (when not typing in a text field)", "Space"),
)


def _keys_text(sequences: list[QKeySequence]) -> str:
    return " or ".join(s.toString(QKeySequence.SequenceFormat.NativeText) for s in sequences if not s.isEmpty())


def _plain(text: str) -> str:
    """An action's text as a person reads it: no mnemonic ampersands, no trailing dots."""
    return text.replace("&&", "\0").replace("&", "").replace("\0", "&").rstrip(".…").strip()


def window_shortcuts(window: QWidget) -> list[tuple[str, str]]:
    """(what it does, keys) for every action and described shortcut of ``window``, in the
    order the window has them; each action once, however many bars and menus show it."""
    seen: set[int] = set()
    rows: list[tuple[str, str]] = []
    actions = list(window.actions()) + window.findChildren(QAction)
    for action in actions:
        if id(action) in seen:
            continue
        seen.add(id(action))
        keys = _keys_text(action.shortcuts())
        text = _plain(action.text())
        if keys and text:
            rows.append((text, keys))
    for shortcut in window.findChildren(QShortcut):
        keys = _keys_text([shortcut.key()])
        if keys and shortcut.whatsThis():
            rows.append((_plain(shortcut.whatsThis()), keys))
    return rows


class ShortcutsDialog(QDialog):
    """A list of the window's shortcuts; non-modal, so it can stay open while one tries them."""

    def __init__(self, window: QWidget, parent: QWidget | None = None) -> None:
        super().__init__(parent if parent is not None else window)
        self.setWindowTitle("Keyboard shortcuts")
        self.setMinimumSize(440, 380)
        layout = QVBoxLayout(self)
        intro = QLabel("Shortcuts work anywhere in the window unless a text field takes the key.")
        intro.setWordWrap(True)
        layout.addWidget(intro)
        self.list = QTreeWidget()
        self.list.setColumnCount(2)
        self.list.setHeaderLabels(["Action", "Keys"])
        self.list.setRootIsDecorated(False)
        self.list.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.list.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.list.setAccessibleName("Keyboard shortcuts")
        self.list.setAccessibleDescription("Each row: an action, then the keys that do it")
        self.list.header().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.list.header().setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        self.list.header().setStretchLastSection(False)
        layout.addWidget(self.list, 1)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        self.close_button = buttons.button(QDialogButtonBox.StandardButton.Close)
        self.close_button.setAccessibleName("Close")
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self._window = window
        self.refresh()

    def refresh(self) -> None:
        """Read the window's shortcuts again (actions can change while the app runs)."""
        self.list.clear()
        groups = (("Commands", window_shortcuts(self._window)), ("Typing and talking", FIXED_KEYS))
        for title, rows in groups:
            group = QTreeWidgetItem([title, ""])
            font = group.font(0)
            font.setBold(True)
            group.setFont(0, font)
            group.setFlags(Qt.ItemFlag.ItemIsEnabled)
            self.list.addTopLevelItem(group)
            group.setFirstColumnSpanned(True)
            for text, keys in rows:
                item = QTreeWidgetItem([text, keys])
                item.setData(0, Qt.ItemDataRole.AccessibleTextRole, f"{text}: {keys}")
                self.list.addTopLevelItem(item)
        self.list.setCurrentItem(self.list.topLevelItem(1))

    def rows(self) -> list[tuple[str, str]]:
        """What the dialog lists: (action, keys), group titles left out."""
        items = (self.list.topLevelItem(i) for i in range(self.list.topLevelItemCount()))
        return [(item.text(0), item.text(1)) for item in items if item.text(1)]


def show_shortcuts(window: QWidget) -> ShortcutsDialog:
    """Open (or bring forward) the window's shortcuts dialog."""
    dialog = window.findChild(ShortcutsDialog)
    if dialog is None:
        dialog = ShortcutsDialog(window)
    else:
        dialog.refresh()
    dialog.show()
    dialog.raise_()
    dialog.activateWindow()
    return dialog
