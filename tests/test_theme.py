"""Light and dark looks: the palette, the stylesheet, and following the desktop's switch."""

from __future__ import annotations

import re

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication, QLabel, QWidget

from assistant.settings import Settings, SettingsError
from ui import theme


@pytest.fixture
def app(qapp):
    """The test application, given back as it was (palette, stylesheet, no manager)."""
    palette, sheet = QPalette(qapp.palette()), qapp.styleSheet()
    yield qapp
    manager = theme.manager()
    if manager is not None:
        qapp.styleHints().colorSchemeChanged.disconnect(manager.system_changed)
        manager.deleteLater()
        theme._manager = None
    qapp.styleHints().unsetColorScheme()
    qapp.setStyleSheet(sheet)
    qapp.setPalette(palette)


def window_color(qtbot) -> QColor:
    """The colour a fresh window is painted with (grabbed, as a user would see it)."""
    widget = QWidget()
    qtbot.addWidget(widget)
    widget.setAutoFillBackground(True)
    widget.resize(40, 40)
    return QColor(widget.grab().toImage().pixel(20, 20))


def test_dark_and_light_paint_the_window(qtbot, app):
    manager = theme.install(app, "dark")
    assert manager.mode == "dark" and theme.current_mode() == "dark"
    assert app.palette().color(QPalette.ColorRole.Window).lightness() < 60
    assert app.palette().color(QPalette.ColorRole.WindowText).lightness() > 200
    assert window_color(qtbot).lightness() < 60
    assert "#1e2128" in app.styleSheet() and "#f4f6fa" not in app.styleSheet()  # the chat's background
    assert theme.code_background() == theme.DARK_COLORS["#eef1f5"]

    theme.apply("light")
    assert theme.current_mode() == "light"
    assert app.palette().color(QPalette.ColorRole.Window).lightness() > 200
    assert window_color(qtbot).lightness() > 200
    assert "#f4f6fa" in app.styleSheet() and "#1e2128" not in app.styleSheet()
    assert theme.code_background() == "#eef1f5"


def test_dark_text_is_readable_on_its_background(app):
    """Text and the backgrounds behind it differ clearly in the dark look (the light colours swapped)."""
    theme.install(app, "dark")
    sheet = app.styleSheet()
    rules = dict(re.findall(r"(#\w+)\s*\{([^}]*)\}", sheet))
    notice = rules["#notice"]
    background = QColor(re.search(r"background:\s*(#[0-9a-f]{6})", notice).group(1))
    text = QColor(re.search(r"\bcolor:\s*(#[0-9a-f]{6})", notice).group(1))
    assert text.lightness() - background.lightness() > 120
    palette = app.palette()
    assert palette.color(QPalette.ColorRole.Text).lightness() - palette.color(QPalette.ColorRole.Base).lightness() > 120


def test_every_colour_of_the_stylesheet_has_a_dark_twin():
    light = theme.light_style_sheet()
    colours = {c.lower() for c in re.findall(r"#[0-9a-fA-F]{6}\b", light)}
    assert colours, "the stylesheet was not found"
    missing = colours - set(theme.DARK_COLORS)
    assert not missing, f"add a dark colour for {sorted(missing)} to ui/theme.py DARK_COLORS"
    dark = theme.style_sheet("dark")
    left = {c.lower() for c in re.findall(r"#[0-9a-fA-F]{6}\b", dark)} - set(theme.DARK_COLORS.values())
    assert not left


def test_system_follows_the_desktops_switch(app):
    manager = theme.install(app, "system")
    seen = []
    manager.changed.connect(seen.append)
    # The offscreen platform cannot switch its scheme: deliver the signal's argument as the desktop would.
    manager.system_changed(Qt.ColorScheme.Dark)
    assert manager.mode == "dark" and app.palette().color(QPalette.ColorRole.Window).lightness() < 60
    label = QLabel("hello")  # a widget made now takes the look too
    assert label.palette().color(QPalette.ColorRole.WindowText).lightness() > 200
    manager.system_changed(Qt.ColorScheme.Light)
    assert manager.mode == "light" and app.palette().color(QPalette.ColorRole.Window).lightness() > 200
    assert seen == ["dark", "light"]

    assert theme.install(app, "light") is manager  # one manager per application
    theme.apply("dark")  # a fixed choice ignores the desktop
    manager.system_changed(Qt.ColorScheme.Light)
    assert manager.mode == "dark"
    theme.apply("system")  # and "system" follows it again (offscreen reports no scheme: light)
    assert manager.choice == "system" and manager.mode == theme.system_mode()
    assert seen[-1] == manager.mode


def test_the_manager_is_connected_to_the_platforms_signal(app):
    """``colorSchemeChanged`` reaches the manager (emitted here as the platform emits it)."""
    manager = theme.install(app, "system")
    app.styleHints().colorSchemeChanged.emit(Qt.ColorScheme.Dark)
    assert manager.mode == "dark"
    app.styleHints().colorSchemeChanged.emit(Qt.ColorScheme.Light)
    assert manager.mode == "light"


def test_theme_setting_is_validated_and_chosen_in_the_dialog(qtbot):
    from ui.dialogs.settings import SettingsDialog

    assert Settings().theme == "system"
    with pytest.raises(SettingsError, match="theme"):
        Settings(theme="purple")
    settings, bad = Settings.salvage({"theme": "purple", "speech_rate": 200})
    assert settings.theme == "system" and bad == ["theme"]
    dialog = SettingsDialog(Settings(theme="dark"))
    qtbot.addWidget(dialog)
    assert dialog.theme.currentData() == "dark"
    labels = [dialog.theme.itemText(i) for i in range(dialog.theme.count())]
    assert labels == ["Follow the system", "Light", "Dark"]
    dialog.theme.setCurrentIndex(dialog.theme.findData("light"))
    assert dialog.result_settings().theme == "light"


def test_create_app_gives_the_app_its_look(app):
    from ui.app import create_app

    assert create_app([], theme_choice="dark") is app
    assert theme.current_mode() == "dark" and "#1e2128" in app.styleSheet()
    assert QApplication.instance().palette().color(QPalette.ColorRole.Window).lightness() < 60


def test_a_widgets_own_colours_follow_the_look(app):
    """What a widget styles itself (written in the light colours) is put into the look in use."""
    own = "#welcome { background: #ffffff; border: 1px solid #dde2ea; } #x { color: #123456; }"
    theme.install(app, "light")
    assert theme.themed(own) == own
    theme.apply("dark")
    dark = theme.themed(own)
    assert "#ffffff" not in dark and theme.DARK_COLORS["#ffffff"] in dark and "#123456" in dark  # unknown: kept
    assert theme.themed(own, "light") == own


def test_the_chat_follows_the_look(qtbot):
    """Code shading painted into rendered text, and the styled parts of the chat (code blocks,
    the welcome card), change with the look (light ↔ dark)."""
    from PySide6.QtWidgets import QApplication

    from ui import theme
    from ui.panels.chat import ChatView, markdown_to_html

    if theme.manager() is None:
        theme.install(QApplication.instance(), "light")
    theme.apply("light")
    view = ChatView()
    qtbot.addWidget(view)
    restyled = []
    reply = view.add_assistant(1)
    reply.restyle = lambda: restyled.append(True)
    fenced = "```\nx = 1\n```"
    assert theme.code_background("light") in markdown_to_html(fenced)
    try:
        theme.apply("dark")
        assert restyled  # the replies on screen were rendered again
        assert theme.code_background("dark") in markdown_to_html(fenced)
        assert theme.code_background("light") not in markdown_to_html(fenced)
        sheet = QApplication.instance().styleSheet()
        assert "#codeBlock { background: #2f343e" in sheet and "#welcome { background: #2a2e37" in sheet
    finally:
        theme.apply("light")
