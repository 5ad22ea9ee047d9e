"""The conversation view on its own: nothing clips or widens it, copy, images, welcome, figures, captions."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtGui import QColor, QImage
from PySide6.QtWidgets import QApplication

from ui.panels.chat import ChatView
from ui.panels.image_viewer import ImageViewer
from ui.panels.markdown import split_markdown
from ui.panels.message import figures_text, frame_captions, percent_shares
from ui.panels.text_view import CodeBlock

LONG_WORD = "x" * 2000
LONG_URL = "https://example.com/" + "/".join(f"segment{i}" for i in range(120)) + "?q=" + "a" * 300
CODE_LINE = "value = " + "+".join(f"v{i:03d}" for i in range(60))  # 300+ columns, one line
WIDE_TABLE = (
    "| " + " | ".join(f"heading_number_{i}" for i in range(10)) + " |\n"
    + "|" + "---|" * 10 + "\n"
    + "| " + " | ".join("cell" + "z" * 40 for _ in range(10)) + " |\n"
)
REPLY = (
    f"Here is a long word: {LONG_WORD}\n\nAnd a link: {LONG_URL}\n\n"
    f"```python\n{CODE_LINE}\nprint(value)\n```\n\n{WIDE_TABLE}\nThat is all."
)

SIZES = [(800, 560), (1024, 700), (1600, 1000)]


@pytest.fixture
def chat(qtbot):
    view = ChatView(model_info=lambda: ("HuggingFaceTB/SmolVLM-256M-Instruct", "cpu"))
    qtbot.addWidget(view)
    view.resize(800, 560)
    view.show()
    qtbot.waitExposed(view)
    return view


def settle(qtbot, chat) -> None:
    """Let posted layout requests and resizes run (the machine may be slow)."""
    for _ in range(5):
        QApplication.processEvents()
        qtbot.wait(20)


def fits(chat) -> bool:
    content, viewport = chat.content, chat.viewport()
    messages_fit = all(m.geometry().right() <= content.width() for m in chat.messages)
    return (
        content.width() <= viewport.width()
        and chat.horizontalScrollBar().maximum() == 0
        and messages_fit
    )


def assert_fits(qtbot, chat, size) -> None:
    chat.resize(*size)
    settle(qtbot, chat)
    qtbot.waitUntil(lambda: chat.viewport().width() >= size[0] - 40, timeout=5000)
    qtbot.waitUntil(lambda: fits(chat), timeout=5000)
    settle(qtbot, chat)
    assert chat.content.width() <= chat.viewport().width(), size
    assert chat.horizontalScrollBar().maximum() == 0, size
    assert chat.content.minimumSizeHint().width() <= chat.viewport().width(), size


def finished_reply(qtbot, chat, text: str, turn_id: int = 1):
    chat.add_user(turn_id, "show me", [])
    reply = chat.add_assistant(turn_id)
    reply.set_text(text)
    reply.finish("done")
    settle(qtbot, chat)
    return reply


# -- never clips ------------------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
def test_an_unbroken_word_wraps_and_never_widens_the_chat(qtbot, chat, size):
    user = chat.add_user(1, LONG_WORD, [])
    reply = chat.add_assistant(1)
    reply.set_text(f"{LONG_WORD}\n\n{LONG_URL}")
    reply.finish("done")
    assert_fits(qtbot, chat, size)
    # Wrapped onto many lines (not cut off, not scrolled sideways).
    line = user.body.fontMetrics().lineSpacing()
    qtbot.waitUntil(lambda: user.body.height() > 8 * line, timeout=5000)
    assert user.body.horizontalScrollBar().maximum() == 0
    assert user.body.width() <= user.width()
    assert user.body.text() == LONG_WORD  # the text itself is untouched (no inserted break characters)


@pytest.mark.parametrize("size", SIZES)
def test_code_blocks_and_tables_stay_inside_the_reply(qtbot, chat, size):
    reply = finished_reply(qtbot, chat, REPLY)
    assert_fits(qtbot, chat, size)
    (block,) = reply.code_blocks()
    assert block.code == f"{CODE_LINE}\nprint(value)"
    # The long line scrolls sideways inside its block, which is no wider than the message.
    qtbot.waitUntil(lambda: block.view.horizontalScrollBar().maximum() > 0, timeout=5000)
    assert block.geometry().width() <= reply.width()
    # Both lines are visible without scrolling up or down.
    assert block.view.verticalScrollBar().maximum() == 0
    # The table is a piece of its own: it fits, or scrolls sideways alone, never widening the reply.
    (table,) = [w for s, w in reply.body.pieces if s.kind == "table"]
    assert table.geometry().width() <= reply.width()
    assert table.verticalScrollBar().maximum() == 0
    assert "heading_number_9" in table.text()
    assert table.horizontalScrollBar().value() == 0  # a table too wide shows its first columns


def test_a_narrow_chat_still_fits_everything(qtbot, chat, image_file):
    chat.add_user(1, LONG_WORD, [(f"photo-{i}.png", QImage(str(image_file))) for i in range(6)])
    finished_reply(qtbot, chat, REPLY, turn_id=2)
    frames = [(QImage(str(image_file)), 10.0 + i, 0.1 * (i + 1)) for i in range(4)]
    chat.messages[0].add_frames(frames, candidates=12)
    chat.add_notice("Could not read " + "/very/long/path/" + "p" * 400 + ".png")
    assert_fits(qtbot, chat, (300, 560))
    assert_fits(qtbot, chat, (800, 560))


def test_streaming_updates_only_the_piece_that_changed(qtbot, chat):
    chat.add_user(1, "code please", [])
    reply = chat.add_assistant(1)
    settle(qtbot, chat)
    assert reply.thinking.isVisible() and not reply.copy_button.isVisible()
    text = "Intro paragraph.\n\n```python\nfor i in range(3):\n    print(i)\n```\n\nOutro."
    for end in range(1, len(text) + 1):
        reply.append(text[end - 1])
    first_piece = reply.body.pieces[0][1]
    reply.append(" More words.")
    assert reply.body.pieces[0][1] is first_piece  # the intro was not rebuilt
    assert [s.kind for s, _ in reply.body.pieces] == ["markdown", "code", "markdown"]
    assert reply.code_blocks()[0].code == "for i in range(3):\n    print(i)"
    settle(qtbot, chat)
    assert not reply.thinking.isVisible() and reply.copy_button.isVisible()
    assert_fits(qtbot, chat, (800, 560))


def test_split_markdown_finds_fences_and_keeps_prose():
    segments = split_markdown("a\n\n1. step\n   ```sh\n   ls -l\n   ```\n2. next\n\n~~~\nraw\n")
    assert [(s.kind, s.text, s.language, s.closed) for s in segments] == [
        ("markdown", "a\n\n1. step", "", True),
        ("code", "ls -l", "sh", True),
        ("markdown", "2. next\n", "", True),
        ("code", "raw\n", "", False),  # still streaming
    ]
    assert split_markdown("inline ```code``` stays prose")[0].kind == "markdown"
    table = split_markdown("Look:\n| a | b |\n|:--|--:|\n| 1 | 2 |\n\nAfter.")
    assert [(s.kind, s.text) for s in table] == [
        ("markdown", "Look:"), ("table", "| a | b |\n|:--|--:|\n| 1 | 2 |"), ("markdown", "\nAfter."),
    ]
    assert [s.kind for s in split_markdown("a | b\n---\ntext")] == ["markdown"]  # a heading, not a table


# -- copy -----------------------------------------------------------------------------------


def test_copy_puts_the_replys_markdown_on_the_clipboard(qtbot, chat):
    reply = finished_reply(qtbot, chat, REPLY)
    QApplication.clipboard().setText("something else")
    assert reply.copy_button.isVisible() and reply.copy_button.accessibleName() == "Copy reply"
    qtbot.mouseClick(reply.copy_button, Qt.MouseButton.LeftButton)
    assert QApplication.clipboard().text() == REPLY
    assert reply.copy_button.text() == "Copied"
    qtbot.waitUntil(lambda: reply.copy_button.text() == "Copy", timeout=5000)


def test_a_code_blocks_copy_copies_its_code_only(qtbot, chat):
    text = "First:\n\n```python\nprint('one')\n```\n\nSecond:\n\n```\nls -la\n```\n"
    reply = finished_reply(qtbot, chat, text)
    first, second = reply.code_blocks()
    QApplication.clipboard().setText("")
    qtbot.mouseClick(second.copy_button, Qt.MouseButton.LeftButton)
    assert QApplication.clipboard().text() == "ls -la"
    qtbot.mouseClick(first.copy_button, Qt.MouseButton.LeftButton)
    assert QApplication.clipboard().text() == "print('one')"
    assert first.copy_button.accessibleName() == "Copy python code"


def test_copy_buttons_are_reachable_with_tab(qtbot, chat):
    reply = finished_reply(qtbot, chat, "Text.\n\n```\ncode\n```\n")
    block = reply.code_blocks()[0]
    reply.setFocus()
    qtbot.waitUntil(reply.hasFocus, timeout=5000)
    seen = []
    for _ in range(4):
        qtbot.keyClick(QApplication.focusWidget(), Qt.Key.Key_Tab)
        seen.append(QApplication.focusWidget())
    assert reply.copy_button in seen and block.copy_button in seen
    # Ctrl+C on a focused message copies it whole.
    reply.setFocus()
    qtbot.waitUntil(reply.hasFocus, timeout=5000)
    qtbot.keyClick(reply, Qt.Key.Key_C, Qt.KeyboardModifier.ControlModifier)
    assert QApplication.clipboard().text() == "Text.\n\n```\ncode\n```\n"


def test_arrow_keys_move_between_messages(qtbot, chat):
    user = chat.add_user(1, "hello", [])
    reply = finished_reply(qtbot, chat, "hi", turn_id=2)
    first_user = chat.messages[0]
    assert first_user is user
    reply.setFocus()
    qtbot.waitUntil(reply.hasFocus, timeout=5000)
    qtbot.keyClick(reply, Qt.Key.Key_Up)
    qtbot.waitUntil(lambda: chat.messages[-2].hasFocus(), timeout=5000)
    assert user.accessibleName() == "Your message" and reply.accessibleName() == "Assistant's reply"
    assert "hi" in reply.accessibleDescription()


# -- images -------------------------------------------------------------------------------


def test_clicking_a_thumbnail_opens_the_image_full_size(qtbot, chat):
    image = QImage(1200, 900, QImage.Format.Format_RGB32)
    image.fill(QColor("teal"))
    user = chat.add_user(1, "what is this?", [("photo.png", image)])
    settle(qtbot, chat)
    (thumb,) = user.thumbnails
    assert thumb.accessibleName() == "Image photo.png"
    qtbot.mouseClick(thumb, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: chat.viewer is not None and chat.viewer.isVisible(), timeout=5000)
    viewer = chat.viewer
    assert isinstance(viewer, ImageViewer) and viewer.windowTitle() == "photo.png"
    qtbot.waitUntil(lambda: not viewer.shown_size().isEmpty(), timeout=5000)
    shown = viewer.shown_size()
    assert shown.width() <= 1200 and shown.height() <= 900
    assert abs(shown.width() / shown.height() - 1200 / 900) < 0.02  # scaled, not stretched
    screen = viewer.screen().availableGeometry()
    assert viewer.width() <= screen.width() and viewer.height() <= screen.height()
    qtbot.keyClick(viewer, Qt.Key.Key_Escape)
    qtbot.waitUntil(lambda: chat.viewer is None, timeout=5000)


def test_an_unreadable_image_has_no_viewer(qtbot, chat):
    user = chat.add_user(1, "broken", [("broken.png", QImage())])
    (thumb,) = user.thumbnails
    assert not thumb.isEnabled()
    assert chat.show_image(QImage()) is None and chat.viewer is None


# -- welcome ------------------------------------------------------------------------------


def test_welcome_shows_when_empty_and_hides_after_a_message(qtbot, chat):
    qtbot.waitUntil(chat.welcome.isVisible, timeout=5000)
    text = chat.welcome.text.text()
    for words in ("Ctrl+O", "Ctrl+N", "Esc", "Ctrl+,", "F1", "Hands-free", "push-to-talk", "camera",
                  "SmolVLM-256M-Instruct on cpu"):
        assert words in text, words
    chat.add_user(1, "hello", [])
    qtbot.waitUntil(lambda: not chat.welcome.isVisible(), timeout=5000)
    chat.clear()
    qtbot.waitUntil(chat.welcome.isVisible, timeout=5000)
    chat.add_notice("A warning", "warning")
    qtbot.waitUntil(lambda: not chat.welcome.isVisible(), timeout=5000)


def test_welcome_follows_the_model_in_use(qtbot, chat):
    model = ["first-model", "cpu"]
    chat.set_model_info(lambda: tuple(model))
    assert "first-model on cpu" in chat.welcome.text.text()
    model[:] = ["server model", "http://localhost:8000/v1"]
    chat.clear()  # a new chat shows the welcome again, with what is in use now
    chat.welcome.refresh()
    assert "server model on http://localhost:8000/v1" in chat.welcome.text.text()


# -- figures ------------------------------------------------------------------------------


def test_reply_figures_are_hidden_by_default_and_shown_on_request(qtbot, chat):
    reply = finished_reply(qtbot, chat, "An answer.")
    reply.set_figures(120, 0.82 + 119 / 14.1, 0.82)
    assert not reply.figures.isVisible()
    chat.set_show_figures(True)
    qtbot.waitUntil(reply.figures.isVisible, timeout=5000)
    assert reply.figures.text() == "first word 0.82 s · 14.1 tokens/s · 120 tokens"
    later = finished_reply(qtbot, chat, "Another.", turn_id=2)
    later.set_figures(1, 0.5, 0.5)
    assert later.figures.isVisible() and later.figures.text() == "first word 0.50 s · 2.0 tokens/s · 1 token"
    unknown = finished_reply(qtbot, chat, "Restored.", turn_id=3)
    unknown.set_figures(0, 0.0, None)
    assert not unknown.figures.isVisible() and unknown.figures.text() == ""
    chat.set_show_figures(False)
    assert not reply.figures.isVisible() and not later.figures.isVisible()


def test_figures_text_says_nothing_when_unknown():
    assert figures_text(0, 3.0, 0.5) == ""
    assert figures_text(10, 0.0, None) == ""
    assert figures_text(10, float("nan"), None) == ""
    assert figures_text(10, 2.0, None) == "5.0 tokens/s · 10 tokens"
    assert figures_text(11, 3.0, 1.0) == "first word 1.00 s · 5.0 tokens/s · 11 tokens"


# -- camera frame captions --------------------------------------------------------------------


def test_frame_captions_explain_themselves_and_sum_to_100_percent(qtbot, chat, image_file):
    user = chat.add_user(1, "what did I show you?", [])
    weights = [0.11, 0.07, 0.09]  # softmax weights over all 12 candidates: they sum to 0.27
    user.add_frames([(QImage(str(image_file)), t, w) for t, w in zip([27.9, 28.3, 28.7], weights)], candidates=12)
    shares = [int(c.rsplit("weight ", 1)[1].rstrip(" %")) for c in user.frame_captions]
    assert sum(shares) == 100 and shares == [41, 26, 33]
    assert user.frame_captions[0] == "0.8 s before the newest · weight 41 %"
    assert user.frame_captions[2] == "the newest · weight 33 %"
    assert all(t.accessibleName().startswith("Camera frame") for t in user.thumbnails)
    qtbot.mouseClick(user.thumbnails[1], Qt.MouseButton.LeftButton, pos=QPoint(10, 10))
    qtbot.waitUntil(lambda: chat.viewer is not None, timeout=5000)


def test_percent_shares_always_sum_to_100():
    for weights in ([1 / 3] * 3, [0.5, 0.25, 0.125, 0.125], [1e-9, 2e-9], [0.0, 0.0], [0.07], [0.2] * 7):
        shares = percent_shares(weights)
        assert sum(shares) == 100 and len(shares) == len(weights), weights
    assert percent_shares([0.5, 0.5]) == [50, 50]
    assert frame_captions([1.0, 1.4], [0.3, 0.1], asked_at=1.8) == [
        "0.8 s before you asked · weight 75 %",
        "0.4 s before you asked · weight 25 %",
    ]


def test_notices_wrap_and_keep_their_text(qtbot, chat):
    path = "/tmp/" + "n" * 600 + ".png"
    notice = chat.add_notice(f"{path} is not an image.")
    assert notice.text() == f"{path} is not an image." and chat.notices == [notice]
    assert_fits(qtbot, chat, (800, 560))


def test_code_block_widget_is_a_code_block():
    block = CodeBlock("rust")
    block.set_code("fn main() {}")
    assert block.code == "fn main() {}" and block.language.text() == "rust"
    block.deleteLater()


# -- in the real window -------------------------------------------------------------------------


def test_the_window_at_its_smallest_streams_a_wide_reply_without_clipping(qtbot, main_window):
    from assistant.settings import Settings
    from tests.conftest import scripted_factory

    window = main_window(Settings(model="scripted", device="cpu"), backend_factory=scripted_factory(REPLY, 0.0))
    window.resize(800, 560)
    chat = window.chat
    qtbot.waitUntil(chat.welcome.isVisible, timeout=5000)
    assert "scripted on cpu" in chat.welcome.text.text()
    window.prompt.setFocus()
    qtbot.keyClicks(window.prompt, "Show me everything")
    qtbot.keyClick(window.prompt, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: len(chat.messages) == 2 and chat.messages[1].state == "done", timeout=20_000)
    reply = chat.messages[1]
    assert reply.text == REPLY and not chat.welcome.isVisible()
    assert_fits(qtbot, chat, (chat.width(), chat.height()))
    assert chat.content.width() <= chat.viewport().width()
    # The figures came with the reply, hidden until asked for.
    assert reply.figures.text().endswith("tokens") and not reply.figures.isVisible()
    chat.set_show_figures(True)
    qtbot.waitUntil(reply.figures.isVisible, timeout=5000)
    window.new_chat()
    qtbot.waitUntil(lambda: chat.welcome.isVisible() and not chat.messages, timeout=5000)


def test_the_window_shows_reply_figures_when_asked(qtbot, main_window, tiny_models, paths):
    """Off by default; the toolbar's "Reply figures" (Ctrl+Shift+F) shows them under every
    reply, now and after a restart (saved)."""
    from assistant.settings import Settings, load_settings

    window = main_window(Settings(model=str(tiny_models["causal_lm"]), device="cpu", max_new_tokens=5))
    window.prompt.setPlainText("hello")
    with qtbot.waitSignal(window.bridge.reply_finished, timeout=60_000):
        window.send()
    reply = [m for m in window.chat.messages if m.role == "assistant"][-1]
    figures = reply.figures
    assert not figures.isVisible() and "tokens/s" in figures.text()
    window.figures_action.trigger()
    assert figures.isVisible() and load_settings(paths).settings.show_reply_figures
    window.figures_action.trigger()
    assert not figures.isVisible() and not load_settings(paths).settings.show_reply_figures
