"""Search by meaning and by pictures in the window: the search thread loads the image search
model, indexes the saved chats in the background, and the sidebar shows what it finds.

The real window (``main_window``) with a tiny random CLIP (``tests/tiny_models.py``) as the
search model and the tiny vision-language model answering: random weights rank at random,
so these tests check the plumbing (indexing, progress, results with pictures, "Use in this
chat", closing mid-indexing, the download offer), never which picture comes first.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtWidgets import QAbstractButton, QAbstractItemView, QLineEdit, QWidget

from assistant.settings import DEFAULT_SEARCH_MODEL, Settings
from assistant.store.history import open_history
from assistant.store.vectors import VectorTable

WAIT = 30_000  # ms: generous, a loaded CI machine is slow


@pytest.fixture
def history(paths):
    """The window's history (closed after the window: this fixture comes first in the tests)."""
    store, _ = open_history(paths.data)
    yield store
    store.close()


def picture(folder: Path, name: str, colour: tuple[int, int, int], size=(120, 80)) -> Path:
    from PIL import Image

    path = folder / f"{name}.png"
    Image.new("RGB", size, colour).save(path)
    return path


def png_bytes(colour, size=(64, 48)) -> bytes:
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, "PNG")
    return out.getvalue()


def ask(qtbot, window, text: str, images=()) -> None:
    if images:
        window.attach_files([str(p) for p in images])
    window.prompt.setPlainText(text)
    window.send()
    qtbot.waitUntil(lambda: not window.bridge.busy, timeout=WAIT)


def indexed(store, model: str) -> bool:
    return VectorTable(store, model).count_pending() == (0, 0)


def record_states(window) -> list:
    """Every SearchState the window shows, with whether the sidebar's progress bar showed."""
    seen = []
    line = window.sidebar.search_line
    window.search_worker.state_changed.connect(
        lambda s: seen.append((s, line.isVisible(), line.progress.isVisible(), line.label.text())))
    return seen


def test_pictures_are_indexed_found_with_thumbnails_and_used_in_this_chat(
        qtbot, history, main_window, tiny_models, tiny_search_models, tmp_path):
    clip = str(tiny_search_models["clip"])
    settings = Settings(model=str(tiny_models["idefics3"]), device="cpu", max_new_tokens=2, search_model=clip)
    window = main_window(settings, store=history, persist_settings=False)
    assert window.bridge.engine.encoder_loads_on_use is False  # the search thread loads it, never a reply
    seen = record_states(window)
    sidebar = window.sidebar

    red, blue = picture(tmp_path, "red", (220, 30, 30)), picture(tmp_path, "blue", (30, 30, 220))
    ask(qtbot, window, "what is on this red card?", [red])
    window.new_chat_action.trigger()
    ask(qtbot, window, "and on this blue one?", [blue])
    qtbot.waitUntil(lambda: window.search_worker.state.phase == "ready" and indexed(history, clip), timeout=WAIT)
    qtbot.waitUntil(lambda: sidebar.list.count() == 2, timeout=WAIT)

    # Indexing showed its progress in the sidebar's one line, and the line went when it ended.
    indexing = [(s, shown, bar, text) for s, shown, bar, text in seen if s.phase == "indexing"]
    assert indexing, [s for s, *_ in seen]
    assert all(shown and bar and text.startswith("Meaning search: indexing") for _, shown, bar, text in indexing)
    assert any(s.total >= 1 for s, *_ in indexing)
    assert seen[-1][0].phase == "ready" and not sidebar.search_line.isVisible()
    assert window.chat.notices == []  # nothing about search in the chat

    # A search shows merged results: pictures with their thumbnail, titles, how each matched.
    sidebar.search.setText("a red card")
    qtbot.waitUntil(lambda: any(r.result.kind == "image" for r in sidebar.result_rows()), timeout=WAIT)
    rows = sidebar.result_rows()
    images = [r for r in rows if r.result.kind == "image"]
    assert len(images) == 2 and sidebar.showing_search
    titles = {"what is on this red card?", "and on this blue one?"}
    for row in images:
        assert row.picture.pixmap() is not None and not row.picture.pixmap().isNull()
        assert max(row.picture.pixmap().width(), row.picture.pixmap().height()) <= 48
        assert row.title.full_text in titles
        assert "picture" in row.result.matched_by and "picture" in row.how.full_text
        assert row.how.toolTip().startswith("Found by")
        assert row.use_button is not None and row.use_button.accessibleName()
        assert Path(row.result.image_path).is_file()
    assert {r.result.conversation_title for r in rows} <= titles
    for i in range(sidebar.list.count()):  # a screen reader says each result
        assert sidebar.list.item(i).data(Qt.ItemDataRole.AccessibleTextRole)

    # "Use in this chat" attaches that picture to the next question (the chat open stays open).
    open_before = window.bridge.engine.conversation_id
    qtbot.mouseClick(images[0].use_button, Qt.MouseButton.LeftButton)
    assert len(window.attachments.items) == 1
    attached, preview = window.attachments.items[0]
    assert attached.path == Path(images[0].result.image_path) and preview is not None and not preview.isNull()
    assert window.bridge.engine.conversation_id == open_before
    # ... and so does Ctrl+Enter on a picture result in the list.
    sidebar.list.setFocus()
    sidebar.list.setCurrentRow(sidebar.list.row(next(
        sidebar.list.item(i) for i in range(sidebar.list.count())
        if sidebar.list.itemWidget(sidebar.list.item(i)) is images[1])))
    with qtbot.assertNotEmitted(sidebar.open_requested):  # uses the picture; does not open its chat
        qtbot.keyClick(sidebar.list, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    assert [item.path for item, _ in window.attachments.items] == [attached.path, Path(images[1].result.image_path)]
    window.attachments.take()

    # Clicking a result opens its chat.
    other = next(r for r in images if r.result.conversation_id != open_before)
    with qtbot.waitSignal(window.bridge.conversation_opened, timeout=WAIT) as opened:
        qtbot.mouseClick(other.title, Qt.MouseButton.LeftButton, pos=QPoint(5, 5))
    assert opened.args[0].conversation_id == other.result.conversation_id

    # A question sent with a found picture is saved and indexed like any other.
    sidebar.search.setText("")
    qtbot.waitUntil(lambda: not sidebar.showing_search and sidebar.list.count() == 2, timeout=WAIT)
    window.new_chat_action.trigger()
    window.use_found_picture(other.result)
    ask(qtbot, window, "is this the same card?")
    qtbot.waitUntil(lambda: sidebar.list.count() == 3, timeout=WAIT)
    qtbot.waitUntil(lambda: window.search_worker.state.phase == "ready" and indexed(history, clip), timeout=WAIT)

    # Every new control has a name for screen readers and a tooltip.
    for widget in sidebar.findChildren(QWidget):
        if isinstance(widget.parent(), QLineEdit):
            continue  # the search box's own clear button
        interactive = isinstance(widget, (QAbstractButton, QAbstractItemView, QLineEdit))
        if interactive and not widget.objectName().startswith("qt_"):
            assert widget.accessibleName(), widget
            assert widget.toolTip() or isinstance(widget, QAbstractItemView), widget
    for row in sidebar.result_rows():
        if row.use_button is not None:
            assert row.use_button.toolTip()


def test_stale_answers_are_dropped_and_words_still_match(qtbot, history, main_window, tiny_models,
                                                        tiny_search_models):
    conversation = history.create_conversation()
    history.add_message(conversation, "user", "where did I park the bicycle?")
    history.add_message(conversation, "assistant", "Next to the bakery.")
    clip = str(tiny_search_models["clip"])
    window = main_window(Settings(model=str(tiny_models["causal_lm"]), device="cpu", search_model=clip),
                         store=history, persist_settings=False)
    qtbot.waitUntil(lambda: window.search_worker.state.phase == "ready", timeout=WAIT)
    sidebar = window.sidebar
    answers = []
    window.search_worker.answered.connect(answers.append)
    sidebar.search.setText("bakery")
    qtbot.waitUntil(lambda: bool(sidebar.result_rows()), timeout=WAIT)
    texts = [r.result for r in sidebar.result_rows()]
    assert any("words" in r.matched_by and "bakery" in r.snippet for r in texts)  # full-text hits merged in
    # An answer to an older query never replaces the newer one's.
    sidebar.search.setText("bicycle")
    qtbot.waitUntil(lambda: any(a.query == "bicycle" for a in answers), timeout=WAIT)
    shown = [r.result.message_id for r in sidebar.result_rows()]
    window.on_search_answer(next(a for a in answers if a.query == "bakery"))
    assert [r.result.message_id for r in sidebar.result_rows()] == shown


def test_closing_mid_indexing_stops_and_joins_the_search_thread(qtbot, history, main_window, tiny_models,
                                                               tiny_search_models, monkeypatch):
    from assistant.encoders.contrastive import ContrastiveEncoder
    from ui.workers import running_threads

    conversation = history.create_conversation("Many pictures")
    for i in range(60):
        history.add_message(conversation, "user", f"picture {i}", images=[png_bytes((i * 4, 100, 200 - i * 3))])
    embed = ContrastiveEncoder.embed_images

    def slow_embed(self, images, keys=None):  # a real model on a slow computer: ~0.3 s a batch
        time.sleep(0.3)
        return embed(self, images, keys)

    monkeypatch.setattr(ContrastiveEncoder, "embed_images", slow_embed)
    clip = str(tiny_search_models["clip"])
    window = main_window(Settings(model=str(tiny_models["causal_lm"]), device="cpu", search_model=clip),
                         store=history, persist_settings=False)
    qtbot.waitUntil(lambda: window.search_worker.state.phase == "indexing" and window.search_worker.state.done > 0,
                    timeout=WAIT)
    thread = window.search_worker._thread
    started = time.monotonic()
    window.close()
    assert time.monotonic() - started < 5
    assert thread.isFinished() and window.bridge._thread.isFinished() and running_threads() == []
    # What was indexed stays indexed; the rest is indexed next time.
    images, texts = VectorTable(history, clip).count_pending()
    assert 0 < images + texts < 120


def test_indexing_waits_while_a_reply_is_written(qtbot, history, main_window, tiny_models, tiny_search_models):
    from tests.conftest import paced_factory

    clip = str(tiny_search_models["clip"])
    window = main_window(Settings(model=str(tiny_models["causal_lm"]), device="cpu", search_model=clip,
                                  max_new_tokens=400),
                         store=history, persist_settings=False,
                         backend_factory=paced_factory(delay=0.02, min_new_tokens=400))
    qtbot.waitUntil(lambda: window.search_worker.state.phase == "ready", timeout=WAIT)
    window.prompt.setPlainText("tell me a long story about a red bicycle")
    window.send()
    qtbot.waitUntil(lambda: bool(window.chat.messages[-1].text), timeout=WAIT)
    time.sleep(0.5)  # the question is saved: the search thread would index it now, but waits
    qtbot.wait(300)
    assert window.bridge.busy
    assert VectorTable(history, clip).count_pending()[1] >= 1  # the question is not indexed yet
    # Search still answers while the reply is being written.
    window.sidebar.search.setText("bicycle")
    qtbot.waitUntil(lambda: window.sidebar.showing_search, timeout=WAIT)
    assert window.bridge.busy
    window.stop()
    qtbot.waitUntil(lambda: not window.bridge.busy, timeout=WAIT)
    qtbot.waitUntil(lambda: indexed(history, clip), timeout=WAIT)


def test_a_model_not_downloaded_is_offered_once_in_the_sidebar_and_words_still_work(
        qtbot, history, main_window, tiny_models, tiny_search_models, monkeypatch):
    from tests.fake_hub import FakeHub, use_fake_hub

    conversation = history.create_conversation()
    history.add_message(conversation, "user", "where did I park the bicycle?", images=[png_bytes((10, 200, 10))])
    settings = Settings(model=str(tiny_models["causal_lm"]), device="cpu")
    assert settings.search_model == DEFAULT_SEARCH_MODEL  # never downloaded in tests (HF_HUB_OFFLINE)
    window = main_window(settings, store=history, persist_settings=False)
    seen = record_states(window)
    sidebar, line = window.sidebar, window.sidebar.search_line
    qtbot.waitUntil(lambda: window.search_worker.state.phase == "missing", timeout=WAIT)
    qtbot.waitUntil(lambda: line.isVisible() and line.offer is not None, timeout=WAIT)
    [button] = [b for b in line.findChildren(QAbstractButton) if b.isVisible()]
    assert button.text() == "Download (≈ 605.0 MB)" and button.accessibleName() and button.toolTip()
    assert DEFAULT_SEARCH_MODEL in button.toolTip()
    assert "needs its model" in line.label.text()

    # Word search works exactly as before.
    sidebar.search.setText("bicycle")
    qtbot.waitUntil(lambda: sidebar.showing_search and sidebar.list.count() == 1, timeout=WAIT)
    assert "bicycle" in sidebar.list.item(0).text() and sidebar.result_rows() == []
    # Said once: asking again (other settings, the same model) neither repeats it nor says it in the chat.
    window.apply_settings(window.settings.replace(camera_frames=3))
    window.search_worker.retry()
    qtbot.wait(500)
    assert [b for b in line.findChildren(QAbstractButton) if b.isVisible()] == [button]
    assert window.chat.notices == [] and len([s for s, *_ in seen if s.phase == "failed"]) == 0

    # Download: progress in the sidebar, Cancel stops it; downloaded, it loads and indexes.
    with FakeHub() as hub:
        hub.add_repo(DEFAULT_SEARCH_MODEL, tiny_search_models["clip"])
        use_fake_hub(monkeypatch, hub, chunk_size=4096)
        hub.throttle(bytes_per_second=40_000)
        qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: line.offer is not None and line.offer is not button, timeout=WAIT)
        offer = line.offer
        qtbot.waitUntil(lambda: offer.progress.isVisible() and offer.progress.maximum() == 1000
                        and offer.progress.value() > 0, timeout=WAIT)
        assert offer.cancel_button.isVisible() and not offer.download_button.isEnabled()
        qtbot.mouseClick(offer.cancel_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: offer.download_button.isEnabled(), timeout=WAIT)
        assert offer.download_button.text() == "Download again" and "cancelled" in offer.status.text()
        assert window.search_worker.state.phase == "missing" and window.chat.notices == []
        hub.throttle(None)
        qtbot.mouseClick(offer.download_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: window.search_worker.state.phase == "ready", timeout=WAIT)
    qtbot.waitUntil(lambda: indexed(history, DEFAULT_SEARCH_MODEL), timeout=WAIT)
    assert line.offer is None and not line.isVisible()
    assert any(s.phase == "loading" for s, *_ in seen)
    # The search shown is asked again by meaning: the picture is among the results.
    qtbot.waitUntil(lambda: any(r.result.kind == "image" for r in sidebar.result_rows()), timeout=WAIT)
    assert window.chat.notices == []


def test_a_search_model_downloaded_on_the_models_page_loads_and_the_offer_goes(
        qtbot, history, main_window, tiny_models, tiny_search_models, monkeypatch):
    """The sidebar offers the search model; the user downloads it on the Models page instead:
    search loads it at once (no Try again, no restart) and the sidebar stops offering it."""
    from tests.fake_hub import FakeHub, use_fake_hub

    conversation = history.create_conversation()
    history.add_message(conversation, "user", "the red kite", images=[png_bytes((200, 10, 10))])
    window = main_window(Settings(model=str(tiny_models["causal_lm"]), device="cpu"), store=history,
                         persist_settings=False)
    line = window.sidebar.search_line
    qtbot.waitUntil(lambda: window.search_worker.state.phase == "missing" and line.offer is not None, timeout=WAIT)
    with FakeHub() as hub:
        hub.add_repo(DEFAULT_SEARCH_MODEL, tiny_search_models["clip"])
        use_fake_hub(monkeypatch, hub, chunk_size=65536)
        window.models_action.trigger()
        page = window.models_page
        assert page is not None and page.isVisible()
        assert page.download(DEFAULT_SEARCH_MODEL)
        qtbot.waitUntil(lambda: window.search_worker.state.phase == "ready", timeout=WAIT)
    qtbot.waitUntil(lambda: indexed(history, DEFAULT_SEARCH_MODEL), timeout=WAIT)
    assert line.offer is None and window.chat.notices == []
    page.close()


def test_switching_search_off_and_on_in_the_settings(qtbot, history, main_window, tiny_models, tiny_search_models):
    conversation = history.create_conversation()
    history.add_message(conversation, "user", "a green leaf", images=[png_bytes((10, 200, 10))])
    clip = str(tiny_search_models["clip"])
    window = main_window(Settings(model=str(tiny_models["causal_lm"]), device="cpu", search_model=clip),
                         store=history, persist_settings=False)
    qtbot.waitUntil(lambda: window.search_worker.state.phase == "ready", timeout=WAIT)
    assert window.bridge.engine.encoder.get() is not None  # frame relevance can use it now
    window.apply_settings(window.settings.replace(search_model=""))
    qtbot.waitUntil(lambda: window.search_worker.state.phase == "off", timeout=WAIT)
    assert window.bridge.engine.encoder.get() is None
    sidebar = window.sidebar
    sidebar.search.setText("leaf")
    qtbot.waitUntil(lambda: sidebar.showing_search and sidebar.list.count() == 1, timeout=WAIT)
    assert sidebar.result_rows() == [] and "meaning search is off" in sidebar.search_line.label.text()
    assert sidebar.search_line.isVisible()
    window.apply_settings(window.settings.replace(search_model=clip))
    qtbot.waitUntil(lambda: any(r.result.kind == "image" for r in sidebar.result_rows()), timeout=WAIT)
