"""What the user arranges: the chats sidebar shown or hidden, the camera and microphone
column folded to a bar or not, the splitter, and the window's size and place, kept in
``window.json`` between runs (``ui/layout_state.py``).

A part of ``MainWindow`` (``ui/main_window.py``), which it is mixed into: it uses the
window's widgets and bridges as attributes."""

from __future__ import annotations

import logging

from PySide6.QtCore import Qt, Slot
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtGui import QGuiApplication, QShowEvent
from PySide6.QtWidgets import QApplication, QToolBar


from ui.layout_state import WindowLayout, clamp_to_screen, layout_file, load_layout, save_layout
from ui.window.view_labels import connect_view_labels


log = logging.getLogger(__name__)


class LayoutControls:
    def _build_layout_controls(self) -> None:
        """Show chats (Ctrl+B) and Show camera and microphone (Ctrl+Shift+D); then the saved layout."""
        self._check_screen_on_show = False  # a restored geometry is checked again once the frame is known
        bar = self.findChild(QToolBar, "mainToolbar")
        if bar is not None:
            bar.setAccessibleName("Main toolbar")
        self.sidebar_action = QAction("Show chats", self)
        self.sidebar_action.setCheckable(True)
        self.sidebar_action.setChecked(self.sidebar is not None)
        self.sidebar_action.setEnabled(self.sidebar is not None)
        self.sidebar_action.setShortcut(QKeySequence("Ctrl+B"))
        self.sidebar_action.setToolTip("Show or hide the list of saved chats (Ctrl+B)")
        self.sidebar_action.toggled.connect(self.set_sidebar_visible)
        if self.sidebar is not None:
            self.addAction(self.sidebar_action)
            if bar is not None:
                first = bar.actions()[0] if bar.actions() else None
                bar.insertAction(first, self.sidebar_action)
        self.devices_action = QAction("Show camera and microphone", self)
        self.devices_action.setCheckable(True)
        self.devices_action.setChecked(True)
        self.devices_action.setShortcut(QKeySequence("Ctrl+Shift+D"))
        self.devices_action.setToolTip("Show the camera and microphone column, or fold it to a thin bar (Ctrl+Shift+D)")
        self.devices_action.toggled.connect(lambda on: self.devices.set_collapsed(not on))
        self.devices.collapsed_changed.connect(self._devices_folded)
        self.addAction(self.devices_action)
        self._restore_layout()
        connect_view_labels(self)  # the camera panel's "What's in view" (ui/window/view_labels.py)

    @Slot(bool)
    def set_sidebar_visible(self, visible: bool) -> None:
        """Show or hide the saved chats (the Show chats action follows)."""
        if self.sidebar is None:
            return
        focus = QApplication.focusWidget()
        if not visible and focus is not None and self.sidebar.isAncestorOf(focus):
            self.prompt.setFocus()  # focus never stays in a hidden panel
        self.sidebar.setVisible(visible)
        if self.sidebar_action.isChecked() != visible:
            self.sidebar_action.setChecked(visible)
        bar = self.findChild(QToolBar, "mainToolbar")
        if bar is not None:  # with the chats hidden, New chat is a toolbar button (their + New chat is gone)
            actions = bar.actions()
            if visible and self.new_chat_action in actions:
                bar.removeAction(self.new_chat_action)
            elif not visible and self.new_chat_action not in actions:
                at = actions.index(self.sidebar_action) + 1 if self.sidebar_action in actions else 0
                bar.insertAction(actions[at] if at < len(actions) else None, self.new_chat_action)

    @Slot(bool)
    def _devices_folded(self, collapsed: bool) -> None:
        focus = QApplication.focusWidget()
        if collapsed and focus is not None and self.devices.isAncestorOf(focus):
            self.devices.fold_button.setFocus()
        if self.devices_action.isChecked() == collapsed:
            self.devices_action.setChecked(not collapsed)

    def window_layout(self) -> WindowLayout:
        """The layout to find again at the next start."""
        sidebar_visible = self.sidebar.isVisibleTo(self) if self.sidebar is not None else True
        return WindowLayout(
            geometry=bytes(self.saveGeometry().data()),
            splitter=bytes(self.splitter.saveState().data()),
            splitter_count=self.splitter.count(),
            sidebar_visible=sidebar_visible,
            devices_collapsed=self.devices.collapsed,
            devices_width=self.devices.width() if not self.devices.collapsed else self.devices.expanded_width,
        )

    def _restore_layout(self) -> None:
        """The last run's geometry (kept on a screen), splitter sizes and panels; nothing when none was saved."""
        if not self.persist_settings:
            return
        layout = load_layout(layout_file(self.paths.config))  # a tiny file; damaged or missing: defaults
        if layout.geometry and self.restoreGeometry(layout.geometry):
            self._keep_on_screen()
            self._check_screen_on_show = True  # again once the window's frame is known
        if layout.devices_width > 0:
            self.devices.expanded_width = layout.devices_width
        if self.sidebar is not None:
            self.set_sidebar_visible(layout.sidebar_visible)
        if layout.splitter and layout.splitter_count == self.splitter.count():
            self.splitter.restoreState(layout.splitter)
        self.devices.set_collapsed(layout.devices_collapsed)

    def showEvent(self, event: QShowEvent) -> None:  # noqa: N802 - Qt API
        super().showEvent(event)
        if self._check_screen_on_show:
            self._check_screen_on_show = False
            self._keep_on_screen()

    def _keep_on_screen(self) -> None:
        """A restored window larger than its screen, or off every screen, is brought back onto one."""
        frame, inner = self.frameGeometry(), self.geometry()
        screen = QGuiApplication.screenAt(frame.center()) or QGuiApplication.primaryScreen()
        if screen is None:
            return
        fitted = clamp_to_screen(frame, screen.availableGeometry())
        if fitted != frame:  # the same move and shrink for the window inside its frame
            self.setWindowState(self.windowState() & ~(Qt.WindowState.WindowMaximized | Qt.WindowState.WindowFullScreen))
            self.setGeometry(
                fitted.x() + inner.x() - frame.x(),
                fitted.y() + inner.y() - frame.y(),
                max(1, fitted.width() - (frame.width() - inner.width())),
                max(1, fitted.height() - (frame.height() - inner.height())),
            )

    def _save_layout(self) -> None:
        if not self.persist_settings:
            return
        try:
            save_layout(layout_file(self.paths.config), self.window_layout())
        except OSError as exc:  # the window closes anyway; the next start uses the default layout
            log.warning("the window layout could not be saved: %s", exc)
