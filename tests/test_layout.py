"""The window's layout and state: panels that fold and hide, a chat that keeps its room, a layout
that comes back after a restart, controls that show one truth, drops that attach."""

from __future__ import annotations

import json

import pytest
from PySide6.QtCore import QMimeData, QPoint, QPointF, QRect, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent, QGuiApplication
from PySide6.QtWidgets import QApplication, QWidget

from assistant.events import State
from assistant.settings import Settings
from tests.test_camera_app import write_video
from ui.layout_state import WindowLayout, clamp_to_screen, layout_file, load_layout, save_layout
from ui.main_window import CHAT_MIN_WIDTH
from ui.panels.devices import BAR_WIDTH

WAIT = 15_000
LONG_WAV = ("/home/someone/Recordings/" + "a folder with a rather long name/" * 6
            + "the user asking about the weather on a windy afternoon.wav")


@pytest.fixture
def store(paths):
    from assistant.store.history import open_history

    history, _ = open_history(paths.data)
    yield history
    history.close()  # after the windows (set up later, so torn down first)


@pytest.fixture
def open_window(main_window, tiny_models):
    def open_(persist: bool = False, store=None, **settings):
        kwargs = {"persist_settings": persist}
        if store is not None:
            kwargs["store"] = store
        settings.setdefault("max_new_tokens", 4)
        return main_window(Settings(model=str(tiny_models["causal_lm"]), device="cpu", **settings), State.READY,
                           **kwargs)

    return open_


def settle(qtbot, ms: int = 50) -> None:
    qtbot.wait(ms)
    QApplication.processEvents()


# -- panels ---------------------------------------------------------------------------------


def test_the_devices_column_folds_to_a_bar_and_comes_back(qtbot, open_window):
    window = open_window()
    window.resize(1100, 700)
    settle(qtbot)
    devices, chat = window.devices, window.chat_column
    before_devices, before_chat = devices.width(), chat.width()
    assert before_devices > 200 and devices.content.isVisible()

    devices.fold_button.click()
    qtbot.waitUntil(lambda: devices.width() <= BAR_WIDTH, timeout=WAIT)
    assert devices.collapsed and not devices.content.isVisible() and devices.fold_button.isVisible()
    assert chat.width() >= before_chat + before_devices - BAR_WIDTH - 2  # the chat got the room
    assert not window.devices_action.isChecked()
    assert devices.fold_button.accessibleName() == "Show camera and microphone"

    devices.fold_button.click()
    qtbot.waitUntil(lambda: devices.content.isVisible(), timeout=WAIT)
    settle(qtbot)
    assert abs(devices.width() - before_devices) <= 2 and abs(chat.width() - before_chat) <= 2
    assert window.devices_action.isChecked() and not devices.collapsed

    window.devices_action.trigger()  # the menu/shortcut way (Ctrl+Shift+D)
    qtbot.waitUntil(lambda: devices.width() <= BAR_WIDTH, timeout=WAIT)
    window.devices_action.trigger()
    qtbot.waitUntil(lambda: abs(devices.width() - before_devices) <= 2, timeout=WAIT)


def test_the_sidebar_hides_and_comes_back_by_action_and_shortcut(qtbot, open_window, store):
    window = open_window(store=store)
    window.resize(1100, 700)
    window.activateWindow()
    settle(qtbot)
    sidebar = window.sidebar
    assert sidebar.isVisible() and window.sidebar_action.isChecked()
    assert window.sidebar_action.shortcut().toString() == "Ctrl+B"
    assert window.sidebar_action in window.findChild(QWidget, "mainToolbar").actions()
    chat_before = window.chat_column.width()

    toolbar = window.findChild(QWidget, "mainToolbar")
    assert window.new_chat_action not in toolbar.actions()  # the sidebar has its + New chat
    window.sidebar_action.trigger()
    assert not sidebar.isVisible() and not window.sidebar_action.isChecked()
    assert window.new_chat_action in toolbar.actions()  # still one click away
    settle(qtbot)
    assert window.chat_column.width() > chat_before  # the chat took the room
    window.sidebar_action.trigger()
    assert sidebar.isVisible() and window.sidebar_action.isChecked()
    assert window.new_chat_action not in toolbar.actions()

    qtbot.waitUntil(lambda: window.isActiveWindow(), timeout=WAIT)
    window.prompt.setFocus()
    qtbot.keyClick(window.prompt, Qt.Key.Key_B, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: not sidebar.isVisible(), timeout=WAIT)
    assert not window.sidebar_action.isChecked()
    qtbot.keyClick(window.prompt, Qt.Key.Key_B, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: sidebar.isVisible(), timeout=WAIT)


def test_no_drag_or_long_path_squeezes_the_chat(qtbot, open_window, store, paths):
    window = open_window(persist=True, store=store, mic=LONG_WAV)
    window.resize(900, 600)
    settle(qtbot, 200)
    mic = window.mic_panel.source
    assert mic.currentData() == LONG_WAV
    assert window.chat_column.width() >= CHAT_MIN_WIDTH + 40  # the side panels gave way first
    assert mic.width() < 300 and window.devices.width() < 360  # the path never widened the column
    assert LONG_WAV in mic.toolTip() and mic.itemData(mic.currentIndex(), Qt.ItemDataRole.ToolTipRole) == LONG_WAV
    camera = window.camera_panel.source
    camera.setEditText("/media/videos/" + "long folder/" * 20 + "clip.mp4")
    settle(qtbot)
    assert "clip.mp4" in camera.toolTip() and window.chat_column.width() >= CHAT_MIN_WIDTH

    # Dragging either handle as far as it goes leaves the chat its minimum.
    splitter = window.splitter
    devices_at = splitter.indexOf(window.devices)
    splitter.moveSplitter(0, devices_at)
    settle(qtbot)
    assert window.chat_column.width() >= CHAT_MIN_WIDTH
    splitter.moveSplitter(splitter.width(), splitter.indexOf(window.chat_column))
    settle(qtbot)
    assert window.chat_column.width() >= CHAT_MIN_WIDTH

    # After a restart at 900×600, the same.
    window.resize(900, 600)
    settle(qtbot)
    window.close()
    again = open_window(persist=True, store=store, mic=LONG_WAV)
    again.resize(900, 600)
    settle(qtbot, 200)
    assert again.mic_panel.source.currentData() == LONG_WAV
    assert again.chat_column.width() >= CHAT_MIN_WIDTH


# -- persistence ------------------------------------------------------------------------------


def test_geometry_splitter_and_panels_come_back_after_a_restart(qtbot, open_window, store, paths):
    window = open_window(persist=True, store=store)
    screen = QGuiApplication.primaryScreen().availableGeometry()
    window.setGeometry(6, 40, max(700, window.minimumSizeHint().width()), 560)
    settle(qtbot, 100)
    assert screen.contains(window.frameGeometry())  # inside the (offscreen) screen
    sizes = window.splitter.sizes()
    sizes[0] += 30  # the user widened the sidebar and narrowed the devices column
    sizes[2] -= 30
    window.splitter.setSizes(sizes)
    settle(qtbot)
    sizes = window.splitter.sizes()
    devices_width = window.devices.width()
    window.sidebar_action.trigger()
    window.devices.fold_button.click()
    settle(qtbot)
    geometry = window.geometry()
    window.close()

    saved = json.loads(layout_file(paths.config).read_text())
    assert saved["sidebar_visible"] is False and saved["devices_collapsed"] is True
    assert saved["devices_width"] == devices_width

    again = open_window(persist=True, store=store)
    settle(qtbot, 100)
    assert again.geometry() == geometry
    assert not again.sidebar.isVisible() and not again.sidebar_action.isChecked()
    assert again.devices.collapsed and again.devices.width() <= BAR_WIDTH
    again.sidebar_action.trigger()
    again.devices.fold_button.click()
    settle(qtbot, 100)
    assert again.splitter.sizes() == sizes  # the panels as they were before they were hidden

    # A window that does not persist its settings neither reads nor writes the layout.
    layout_file(paths.config).unlink()
    third = open_window(persist=False, store=store)
    settle(qtbot)
    assert third.sidebar.isVisible() and not third.devices.collapsed
    third.close()
    assert not layout_file(paths.config).exists()


def test_a_damaged_layout_is_ignored_and_an_off_screen_one_is_brought_back(qtbot, open_window, paths):
    path = layout_file(paths.config)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('{"version": 1, "geometry": "not base64!", "devices_collapsed": "yes", "splitter_count"')
    assert load_layout(path) == WindowLayout()
    window = open_window(persist=True)
    settle(qtbot)
    assert not window.devices.collapsed and window.isVisible()

    window.setGeometry(3000, 2500, 2400, 1800)  # another, bigger screen that has gone since
    settle(qtbot)
    window.close()
    assert load_layout(path).geometry  # written on close, readable again
    again = open_window(persist=True)
    settle(qtbot)
    screen = QGuiApplication.primaryScreen().availableGeometry()
    assert screen.contains(again.frameGeometry()), (again.frameGeometry(), screen)


def test_clamping_keeps_a_window_on_its_screen():
    screen = QRect(0, 0, 1280, 800)
    assert clamp_to_screen(QRect(100, 100, 800, 600), screen) == QRect(100, 100, 800, 600)
    assert clamp_to_screen(QRect(-500, 2000, 800, 600), screen) == QRect(0, 200, 800, 600)
    assert clamp_to_screen(QRect(50, 50, 3000, 2000), screen) == QRect(0, 0, 1280, 800)


def test_layout_file_round_trip_and_bad_fields(tmp_path):
    path = tmp_path / "config" / "window.json"
    layout = WindowLayout(b"\x01\x02geometry", b"state", 3, False, True, 287)
    save_layout(path, layout)
    assert load_layout(path) == layout
    data = json.loads(path.read_text())
    data["devices_width"] = True  # a bool is no width
    data["sidebar_visible"] = 0
    path.write_text(json.dumps(data))
    loaded = load_layout(path)
    assert loaded.devices_width == 0 and loaded.sidebar_visible is True and loaded.splitter == b"state"
    path.write_text(json.dumps({**data, "version": 99}))
    assert load_layout(path) == WindowLayout()
    assert load_layout(tmp_path / "missing.json") == WindowLayout()


# -- one truth per device -------------------------------------------------------------------------


@pytest.mark.parametrize("source", ["7", "missing video.avi"])
def test_a_camera_that_fails_shows_one_state_and_snapshot_cannot_act(qtbot, open_window, tmp_path, source):
    if source.endswith(".avi"):
        source = str(tmp_path / source)
    window = open_window(camera=source)
    panel = window.camera_panel
    assert panel.toggle.text() == "Turn camera on" and panel.preview.text() == "Camera is off"
    assert not panel.snapshot.isEnabled()
    panel.toggle.click()
    qtbot.waitUntil(lambda: panel.state == "retrying", timeout=WAIT)
    assert panel.is_on and panel.toggle.isChecked() and panel.toggle.text() == "Turn camera off"
    assert not panel.live.isVisible()  # no "● LIVE" beside a camera that is not there
    assert panel.preview.text() == "No picture"  # not "Camera is off"
    assert panel.status.isVisible() and "retrying" in panel.status.text() and "not found" in panel.status.text()
    assert not panel.snapshot.isEnabled() and panel.frames_for_question() == ()
    panel.take_snapshot()
    assert window.attachments.items == []
    texts = [panel.toggle.text(), panel.preview.text(), panel.status.text()]
    assert not any(t == "Camera is off" for t in texts)

    panel.toggle.click()
    assert panel.state == "off" and panel.toggle.text() == "Turn camera on"
    assert panel.preview.text() == "Camera is off" and not panel.status.isVisible() and not panel.live.isVisible()
    assert not panel.snapshot.isEnabled()


def test_a_live_camera_enables_snapshot_and_frames_go_with_each_question(qtbot, open_window, tmp_path):
    video = write_video(tmp_path / "scene.avi")
    window = open_window(camera=str(video))
    panel = window.camera_panel
    assert panel.include.text() == "Send frames with each question"
    assert panel.include.accessibleName() == "Send camera frames with each question"
    panel.toggle.click()
    qtbot.waitUntil(lambda: panel.state == "live" and panel.snapshot.isEnabled(), timeout=WAIT)
    assert panel.live.isVisible() and not panel.status.isVisible() and panel.toggle.text() == "Turn camera off"
    qtbot.waitUntil(lambda: len(panel.frames_for_question()) > 0, timeout=WAIT)
    panel.snapshot.click()
    assert len(window.attachments.items) == 1
    window.devices.set_collapsed(True)  # folded away, the camera still watches
    shown = panel.frames_shown
    qtbot.wait(300)
    assert panel.state == "live" and panel.frames_shown == shown and len(panel.frames_for_question()) > 0
    window.devices.set_collapsed(False)
    qtbot.waitUntil(lambda: panel.frames_shown > shown, timeout=WAIT)
    panel.include.setChecked(False)
    assert panel.frames_for_question() == ()


def test_the_mic_toggle_names_its_action(qtbot, open_window):
    window = open_window()
    toggle = window.mic_panel.toggle
    assert toggle.text() == "Turn mic on" and not toggle.isChecked()
    window.mic_panel.set_on(True)
    assert toggle.text() == "Turn mic off" and toggle.isChecked()
    window.mic_panel.set_on(False)
    assert toggle.text() == "Turn mic on"


def test_a_passing_status_notice_clears(qtbot, open_window, store, tmp_path):
    window = open_window(store=store)
    window.status_notice_ms = 1500
    window.prompt.setPlainText("hello there")
    window.send()
    qtbot.waitUntil(lambda: not window.bridge.busy and window.state_label.text() == "Ready", timeout=WAIT)
    target = tmp_path / "chat.json"
    window.bridge.export_conversation(window.bridge.engine.conversation_id, "json", target)
    qtbot.waitUntil(lambda: window.state_label.text().startswith("Ready — Exported to"), timeout=WAIT)
    assert target.exists()
    qtbot.wait(300)
    assert "Exported" in window.state_label.text()  # it stays long enough to be read
    qtbot.waitUntil(lambda: window.state_label.text() == "Ready", timeout=WAIT)
    assert "chat.json" in str(target)


# -- keyboard and screen readers ------------------------------------------------------------------


def next_focus(widget: QWidget) -> QWidget:
    """The widget Tab moves to from ``widget``."""
    candidate = widget.nextInFocusChain()
    while candidate is not widget:
        if (candidate.focusPolicy() & Qt.FocusPolicy.TabFocus and candidate.isVisible()
                and candidate.isEnabled()):
            return candidate
        candidate = candidate.nextInFocusChain()
    return widget


def test_tab_order_accessible_names_and_a_real_attach_button(qtbot, open_window, store):
    window = open_window(store=store)
    assert next_focus(window.prompt) is window.send_button
    assert next_focus(window.send_button) is window.attach_button  # Stop is hidden while idle
    assert next_focus(window.attach_button) is window.devices.fold_button
    assert next_focus(window.devices.fold_button) is window.camera_panel.toggle
    window.on_busy(True)
    assert next_focus(window.prompt) is window.stop_button
    assert next_focus(window.stop_button) is window.attach_button
    window.on_busy(False)

    button = window.attach_button
    assert button.objectName() == "attachButton" and button.text() == "Attach image…"
    assert not button.icon().isNull() and not button.isFlat()
    camera, mic, sidebar = window.camera_panel, window.mic_panel, window.sidebar
    controls = [camera.toggle, camera.source, camera.browse, camera.mirror, camera.include, camera.snapshot,
                camera.preview, camera.status, mic.toggle, mic.source, sidebar.new_button, sidebar.search,
                sidebar.list, window.prompt, window.send_button, window.stop_button, button,
                window.devices.fold_button, window.findChild(QWidget, "mainToolbar")]
    unnamed = [c.objectName() or type(c).__name__ for c in controls if not c.accessibleName().strip()]
    assert not unnamed


def test_send_shows_clearly_when_it_has_the_focus(qtbot, open_window):
    from ui import theme

    window = open_window()
    window.activateWindow()
    qtbot.waitUntil(lambda: window.isActiveWindow(), timeout=WAIT)
    for mode in ("light", "dark"):
        window.send_button.setStyleSheet(theme.style_sheet(mode))
        window.prompt.setFocus()
        qtbot.waitUntil(lambda: window.prompt.hasFocus(), timeout=WAIT)
        unfocused = window.send_button.grab().toImage()
        window.send_button.setFocus()
        qtbot.waitUntil(lambda: window.send_button.hasFocus(), timeout=WAIT)
        window.send_button.style().unpolish(window.send_button)
        window.send_button.style().polish(window.send_button)
        focused = window.send_button.grab().toImage()
        assert focused != unfocused, mode
        edge = focused.pixelColor(1, focused.height() // 2)
        inside = focused.pixelColor(focused.width() // 2, 4)
        assert abs(edge.lightness() - inside.lightness()) > 40, mode  # a ring that stands out
    window.send_button.setStyleSheet("")


# -- drag and drop ------------------------------------------------------------------------------------


def drop(window, mime: QMimeData) -> tuple[bool, bool]:
    """Drag ``mime`` over the window and drop it, as the platform does; (enter accepted, drop accepted)."""
    point = QPoint(window.width() // 2, window.height() // 2)
    enter = QDragEnterEvent(point, Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                            Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(window, enter)
    if not enter.isAccepted():
        return False, False
    dropped = QDropEvent(QPointF(point), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                         Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(window, dropped)
    return True, dropped.isAccepted()


def test_dropping_an_image_file_on_the_window_attaches_it(qtbot, open_window, image_file, tmp_path):
    window = open_window()
    text_file = tmp_path / "notes.txt"
    text_file.write_text("not a picture")
    other = QMimeData()
    other.setUrls([QUrl.fromLocalFile(str(text_file))])
    assert drop(window, other) == (False, False)
    assert window.attachments.items == []

    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(image_file))])
    assert drop(window, mime) == (True, True)
    assert [item.name for item, _ in window.attachments.items] == [image_file.name]
    qtbot.waitUntil(lambda: window.attachments.isVisible(), timeout=WAIT)
    image, preview = window.attachments.items[0]
    assert image.path == image_file and preview is not None and preview.width() == 100
