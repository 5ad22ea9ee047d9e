"""Light and dark looks: a palette for Qt's own widgets plus the app's stylesheet.

The ``theme`` setting is ``"system"`` (follow the desktop's light/dark choice, live),
``"light"`` or ``"dark"``.  ``resources/style.qss`` is written in the light colours;
the dark stylesheet is the same file with each of those colours swapped for its dark
counterpart (``DARK_COLORS``), so a rule added to the file keeps working in both
looks once its colours have a dark twin (a test checks that every colour has one).

Use::

    manager = theme.install(app, settings.theme)   # once, at start-up
    theme.apply(settings.theme)                     # when the setting changes
    theme.code_background()                         # shading for code blocks in replies
    theme.themed(qss_or_html)                       # a widget's own light colours, in the look in use
    theme.manager().changed.connect(...)            # re-render what painted its own colours
"""

from __future__ import annotations

import re
from pathlib import Path

import shiboken6
from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QColor, QGuiApplication, QPalette
from PySide6.QtWidgets import QApplication

from assistant.settings import THEMES

THEME_LABELS = (("Follow the system", "system"), ("Light", "light"), ("Dark", "dark"))

STYLE_FILE = Path(__file__).resolve().parent.parent / "resources" / "style.qss"

# Every colour of style.qss (light) → the colour it becomes in the dark look.
DARK_COLORS = {
    "#f4f6fa": "#1e2128",  # window and chat background
    "#dfeaff": "#2a3d5e",  # your messages, selected conversation
    "#c3d6fb": "#3b5584",  # their border
    "#ffffff": "#2a2e37",  # the assistant's messages, text fields, lists
    "#dde2ea": "#3a404c",  # borders
    "#56627a": "#a3adbf",  # muted text
    "#7a6a00": "#e0c75a",  # "interrupted" footers
    "#b3261e": "#f2b8b5",  # error text
    "#fdecea": "#4a2321",  # error notice background
    "#8c1d18": "#ffdad6",  # error notice text
    "#f3b7b1": "#7a3a35",  # error notice border
    "#fff6dd": "#3f3419",  # warning notice background
    "#6b5200": "#f5dc8a",  # warning notice text
    "#f1d98b": "#6b5a2a",  # warning notice border
    "#c9d1de": "#4a5160",  # text field borders
    "#2f6fde": "#4f86ea",  # accent: Send, "Generating…"
    "#c62828": "#c62828",  # Stop (white text on it in both)
    "#8a5a00": "#f0b75a",  # dialog warnings
    "#eef1f5": "#2f343e",  # code blocks, list separators
    "#1f2633": "#e3e7ef",  # text
    "#eef1f6": "#23262e",  # camera panel
    "#1d2129": "#111318",  # camera preview (dark in both)
    "#aab2c0": "#aab2c0",  # camera preview text
    "#d93025": "#ff6b5e",  # "LIVE"
    "#7a8499": "#8f99ad",  # small print (a reply's figures)
    "#0b2a66": "#dce6ff",  # keyboard focus ring on buttons (Send, Stop, attach)
}

# Code blocks in replies (``ui/panels/chat.py``'s markdown): the light value is today's.
CODE_BACKGROUND = {"light": "#eef1f5", "dark": DARK_COLORS["#eef1f5"]}

_HEX = re.compile(r"#[0-9a-fA-F]{6}\b")

# QPalette roles for each look (the disabled text colours are set separately).
_PALETTES = {
    "light": {
        QPalette.ColorRole.Window: "#f4f6fa",
        QPalette.ColorRole.WindowText: "#1f2633",
        QPalette.ColorRole.Base: "#ffffff",
        QPalette.ColorRole.AlternateBase: "#f0f2f6",
        QPalette.ColorRole.ToolTipBase: "#ffffe8",
        QPalette.ColorRole.ToolTipText: "#1f2633",
        QPalette.ColorRole.PlaceholderText: "#7a8394",
        QPalette.ColorRole.Text: "#1f2633",
        QPalette.ColorRole.Button: "#eceff4",
        QPalette.ColorRole.ButtonText: "#1f2633",
        QPalette.ColorRole.BrightText: "#ffffff",
        QPalette.ColorRole.Light: "#ffffff",
        QPalette.ColorRole.Midlight: "#e3e7ee",
        QPalette.ColorRole.Mid: "#8a93a5",
        QPalette.ColorRole.Dark: "#a0a7b4",
        QPalette.ColorRole.Shadow: "#5a5f6a",
        QPalette.ColorRole.Highlight: "#2f6fde",
        QPalette.ColorRole.HighlightedText: "#ffffff",
        QPalette.ColorRole.Link: "#2f6fde",
        QPalette.ColorRole.LinkVisited: "#7442c8",
    },
    "dark": {
        QPalette.ColorRole.Window: "#1e2128",
        QPalette.ColorRole.WindowText: "#e3e7ef",
        QPalette.ColorRole.Base: "#2a2e37",
        QPalette.ColorRole.AlternateBase: "#30343e",
        QPalette.ColorRole.ToolTipBase: "#2a2e37",
        QPalette.ColorRole.ToolTipText: "#e3e7ef",
        QPalette.ColorRole.PlaceholderText: "#8b93a3",
        QPalette.ColorRole.Text: "#e3e7ef",
        QPalette.ColorRole.Button: "#2c3039",
        QPalette.ColorRole.ButtonText: "#e3e7ef",
        QPalette.ColorRole.BrightText: "#ff6b5e",
        QPalette.ColorRole.Light: "#3a3f4a",
        QPalette.ColorRole.Midlight: "#343842",
        QPalette.ColorRole.Mid: "#8b93a3",
        QPalette.ColorRole.Dark: "#15171c",
        QPalette.ColorRole.Shadow: "#000000",
        QPalette.ColorRole.Highlight: "#3d6fd0",
        QPalette.ColorRole.HighlightedText: "#ffffff",
        QPalette.ColorRole.Link: "#7aa7ff",
        QPalette.ColorRole.LinkVisited: "#b59cff",
    },
}
_DISABLED_TEXT = {"light": "#9aa1ad", "dark": "#6b7280"}


def light_style_sheet() -> str:
    """The app's stylesheet as written (light colours); empty when the file cannot be read."""
    try:
        return STYLE_FILE.read_text(encoding="utf-8")
    except OSError:
        return ""


def themed(text: str, mode: str | None = None) -> str:
    """``text`` (a stylesheet or rich text written in the light colours) in ``mode``'s colours
    (default: the look in use).  For a widget that styles itself: re-apply it on ``changed``."""
    if (mode or current_mode()) != "dark":
        return text
    return _HEX.sub(lambda m: DARK_COLORS.get(m.group(0).lower(), m.group(0)), text)


def style_sheet(mode: str) -> str:
    """The app's stylesheet for ``mode`` ("light" or "dark")."""
    return themed(light_style_sheet(), mode)


def palette(mode: str) -> QPalette:
    """The QPalette for ``mode`` ("light" or "dark")."""
    result = QPalette()
    for role, color in _PALETTES[mode].items():
        result.setColor(role, QColor(color))
    for role in (QPalette.ColorRole.Text, QPalette.ColorRole.WindowText, QPalette.ColorRole.ButtonText):
        result.setColor(QPalette.ColorGroup.Disabled, role, QColor(_DISABLED_TEXT[mode]))
    return result


def system_mode() -> str:
    """What the desktop asks for now: "dark" or "light" (light when it does not say)."""
    return "dark" if QGuiApplication.styleHints().colorScheme() == Qt.ColorScheme.Dark else "light"


def resolve(choice: str, system: Qt.ColorScheme | None = None) -> str:
    """The look a ``theme`` setting means now: "light" or "dark"."""
    if choice in ("light", "dark"):
        return choice
    if system is None:
        return system_mode()
    return "dark" if system == Qt.ColorScheme.Dark else "light"


class ThemeManager(QObject):
    """Keeps the application's palette and stylesheet in the chosen look, and follows the
    desktop's light/dark switch while the choice is "system"."""

    changed = Signal(str)  # the look now in use: "light" or "dark"

    def __init__(self, app: QApplication, choice: str = "system") -> None:
        super().__init__(app)
        self._app = app
        self.choice = "system"
        self.mode = ""
        app.styleHints().colorSchemeChanged.connect(self.system_changed)
        self.set_choice(choice)

    def set_choice(self, choice: str) -> None:
        """Use the ``theme`` setting ``choice``; an unknown value means "system"."""
        self.choice = choice if choice in THEMES else "system"
        hints = self._app.styleHints()
        # Ask the platform for the same look (native title bars and dialogs follow where it can);
        # "system" hands the choice back to the desktop.  Where the platform cannot, nothing happens.
        wanted = {"light": Qt.ColorScheme.Light, "dark": Qt.ColorScheme.Dark}.get(self.choice)
        if wanted is None:
            hints.unsetColorScheme()
        elif hints.colorScheme() != wanted:
            hints.setColorScheme(wanted)
        self._use(resolve(self.choice))

    def system_changed(self, scheme: Qt.ColorScheme) -> None:
        """The desktop switched between light and dark (``colorSchemeChanged``)."""
        if self.choice == "system":
            self._use(resolve("system", scheme))

    def _use(self, mode: str) -> None:
        if mode == self.mode:
            return
        self.mode = mode
        app = self._app
        if mode == "dark" and app.style().name().lower() == "windowsvista":
            app.setStyle("Fusion")  # the Windows Vista style paints light whatever the palette says
        app.setPalette(palette(mode))
        app.setStyleSheet(style_sheet(mode))
        self.changed.emit(mode)


_manager: ThemeManager | None = None


def install(app: QApplication, choice: str = "system") -> ThemeManager:
    """Give ``app`` its look (once; a second call just applies ``choice``)."""
    global _manager
    if _manager is None or not shiboken6.isValid(_manager) or _manager.parent() is not app:
        _manager = ThemeManager(app, choice)
    else:
        _manager.set_choice(choice)
    return _manager


def manager() -> ThemeManager | None:
    """The installed manager (None before ``install``)."""
    return _manager


def apply(choice: str) -> None:
    """Use the ``theme`` setting ``choice`` (installs the manager on the running app if needed)."""
    app = QApplication.instance()
    if app is None:
        return
    install(app, choice)


def current_mode() -> str:
    """The look in use: "light" or "dark" ("light" before ``install``)."""
    if _manager is None or not shiboken6.isValid(_manager):
        return "light"
    return _manager.mode or "light"


def code_background(mode: str | None = None) -> str:
    """The shading of code blocks in replies, for ``mode`` (default: the look in use)."""
    return CODE_BACKGROUND[mode or current_mode()]
