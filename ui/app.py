"""Starting the window: settings, QApplication, main window, clean exit."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from PySide6.QtCore import QEvent
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QApplication

from cli.options import paths_from, quiet_libraries, settings_from
from assistant.store.history import HistoryError, open_history
from assistant.settings import APP_NAME, APP_TITLE, load_settings
from assistant.devices.audio import AudioDeviceError
from assistant.devices.speaker import open_speaker

from ui import theme
from ui.dialogs.settings_fields import readable_notice
from ui.main_window import MainWindow

RESOURCES = Path(__file__).resolve().parent.parent / "resources"


def style_sheet() -> str:
    """The app's stylesheet in its light colours (``ui.theme`` makes the dark one from it)."""
    return theme.light_style_sheet()


def create_app(argv: list[str] | None = None, theme_choice: str = "system") -> QApplication:
    """The QApplication, in the look ``theme_choice`` ("system" follows the desktop's light/dark)."""
    app = QApplication.instance() or QApplication(argv if argv is not None else sys.argv[:1])
    app.setApplicationName(APP_NAME)
    app.setApplicationDisplayName(APP_TITLE)
    app.setWindowIcon(QIcon(str(RESOURCES / "icon.svg")))
    theme.install(app, theme_choice)
    return app


def run_gui(args: argparse.Namespace) -> int:
    quiet_libraries(args.verbose)
    paths = paths_from(args)
    loaded = load_settings(paths)
    notice = readable_notice(loaded.warning) if loaded.warning else None
    try:
        settings = settings_from(args, loaded.settings)
    except ValueError as exc:
        settings, notice = loaded.settings, f"Ignored a command-line setting: {exc}"
    app = create_app(theme_choice=settings.theme)
    speaker = None
    try:
        speaker = open_speaker(args.speaker)
    except AudioDeviceError as exc:
        notice = " ".join(filter(None, [notice, f"{exc} Replies are shown but not spoken."]))
    store = None
    try:
        store, warning = open_history(paths.data)
        notice = " ".join(filter(None, [notice, warning]))
    except HistoryError as exc:
        notice = " ".join(filter(None, [notice, f"{exc} Chats are not saved in this session."]))
    window = MainWindow(settings, paths, startup_notice=notice or None, speaker=speaker, store=store)
    app.aboutToQuit.connect(window.bridge.shutdown)  # quitting without closing the window
    window.show()
    window.bridge.load()  # in the pipeline thread: the window is usable while the model loads
    code = app.exec()
    # Tear the window down while the QApplication still exists, in Qt's order.
    window.deleteLater()
    app.sendPostedEvents(None, QEvent.Type.DeferredDelete.value)
    if store is not None:
        store.close()
    logging.getLogger(__name__).info("exiting with %s", code)
    return code
