"""Regenerate the last reply and edit a question: versions in the history, the model's
context cut where the conversation changed, replies that equal a fresh run's, and the window."""

from __future__ import annotations

import pytest

from assistant.engine import Engine
from assistant.events import (
    ConversationOpened,
    ErrorEvent,
    ImageInput,
    MessageVersions,
    ReplyFinished,
    UserTurn,
    next_turn_id,
)
from assistant.settings import Settings
from assistant.store.history import open_history

WAIT_MS = 60_000  # model work on two shared cores


def of(events, kind):
    return [e for e in events if isinstance(e, kind)]


def make(model, paths, store=None, reuse=True, **settings):
    events: list = []
    engine = Engine(Settings(model=str(model), device="cpu", **settings), paths, events.append, store=store)
    assert engine.load()
    engine.backend.reuse = reuse
    return engine, events


def image_tokens(engine) -> int:
    backend = engine.backend
    image_id = backend.tokenizer.convert_tokens_to_ids(backend.processor.image_token)
    return int((backend.last_inputs["input_ids"] == image_id).sum())


def shown(store, conversation):
    return [(m.role, m.text) for m in store.messages(conversation)]


# -- the store ----------------------------------------------------------------------------------


def test_versions_in_the_store(tmp_path):
    from assistant.store.history import HistoryStore

    store = HistoryStore(tmp_path / "h.sqlite3", tmp_path / "images")
    conv = store.create_conversation()
    q1 = store.add_message(conv, "user", "q1")
    a1 = store.add_message(conv, "assistant", "a1")
    q2 = store.add_message(conv, "user", "q2", meta={"frames": [{"t": 1.0, "weight": 1.0}]})
    store.add_message(conv, "assistant", "a2")
    q2b = store.add_version(q2, "q2 edited")  # meta (the camera frames) kept
    store.add_message(conv, "assistant", "a2b")
    a2c = store.add_version(store.messages(conv)[-1].id, "a2c", (), "complete", {})
    saved = store.messages(conv)
    assert [m.text for m in saved] == ["q1", "a1", "q2 edited", "a2c"]
    assert [(m.version, m.versions) for m in saved] == [(1, 1), (1, 1), (2, 2), (2, 2)]
    assert saved[2].meta == {"frames": [{"t": 1.0, "weight": 1.0}]} and saved[3].meta == {}
    assert store.versions(q2b) == [q2, q2b] and store.versions(a2c)[-1] == a2c and store.versions(999) == []
    store.select_version(q2)  # the old question, and the reply it had
    assert [m.text for m in store.messages(conv)] == ["q1", "a1", "q2", "a2"]
    store.add_message(conv, "user", "q3")  # asking on continues the branch shown
    assert [m.text for m in store.messages(conv)] == ["q1", "a1", "q2", "a2", "q3"]
    store.select_version(q2b)
    assert [m.text for m in store.messages(conv)] == ["q1", "a1", "q2 edited", "a2c"]
    assert store.versions(q1) == [q1] and a1
    store.close()


def test_a_history_from_before_versions_reads_as_one_line_and_salvage_keeps_versions(tmp_path):
    import sqlite3

    from assistant.store.history import HistoryStore
    from assistant.store.salvage import set_aside_and_salvage
    from assistant.store.schema import MIGRATIONS

    db = tmp_path / "history.sqlite3"
    raw = sqlite3.connect(db)
    for statement in MIGRATIONS[0]:
        raw.execute(statement)
    raw.execute("INSERT INTO conversations (id, title, created, updated) VALUES (1, 'old', 1, 1)")
    for n, (role, text) in enumerate([("user", "q1"), ("assistant", "a1"), ("user", "q2"), ("assistant", "a2")]):
        raw.execute("INSERT INTO messages (conversation_id, role, text, created) VALUES (1, ?, ?, ?)", (role, text, n))
    raw.execute("PRAGMA user_version = 1")
    raw.commit()
    raw.close()
    store = HistoryStore(db, tmp_path / "images")  # migrated: the messages hang one under the other
    assert [m.text for m in store.messages(1)] == ["q1", "a1", "q2", "a2"]
    store.add_version(store.messages(1)[-1].id, "a2 again", (), "complete", {})
    store.close()
    set_aside_and_salvage(db, tmp_path / "images")
    store = HistoryStore(db, tmp_path / "images")
    saved = store.messages(1)
    assert [m.text for m in saved] == ["q1", "a1", "q2", "a2 again"] and saved[-1].versions == 2
    store.close()


# -- the engine and the history ---------------------------------------------------------------


def test_regenerate_keeps_both_replies_and_the_model_sees_the_one_shown(tiny_models, paths):
    store, _ = open_history(paths.data)
    engine, events = make(tiny_models["causal_lm"], paths, store, max_new_tokens=4)
    engine.handle_turn(UserTurn("first question"))
    first = engine.handle_turn(UserTurn("second question"))
    conversation = engine.conversation_id
    engine.settings = engine.settings.replace(max_new_tokens=9)  # greedy: a longer answer is another one
    again = engine.regenerate(first.turn_id, next_turn_id())
    assert isinstance(again, ReplyFinished) and again.text and again.text != first.text

    # The model's context holds exactly the reply shown, once.
    assert [m.role for m in engine.chat] == ["user", "assistant", "user", "assistant"]
    assert engine.chat[-2].text == "second question" and engine.chat[-1].text == again.text
    prompt = engine.backend.tokenizer.decode(engine.backend.last_inputs["input_ids"][0])
    assert prompt.count("second question") == 1 and prompt.count("first question") == 1
    # The history shows the new reply as version 2 of 2; the first is kept.
    saved = store.messages(conversation)
    assert [m.role for m in saved] == ["user", "assistant", "user", "assistant"]
    assert saved[-1].text == again.text and (saved[-1].version, saved[-1].versions) == (2, 2)
    assert of(events, MessageVersions)[-1] == MessageVersions(again.turn_id, "assistant", 2, 2)

    # ‹ 1/2 ›: the first reply is shown again, and the model's context follows.
    assert engine.show_version("assistant", again.turn_id, -1)
    opened = of(events, ConversationOpened)[-1]
    assert opened.messages[-1].text == first.text and (opened.messages[-1].version, opened.messages[-1].versions) == (1, 2)
    assert engine.chat[-1].text == first.text and len(engine.chat) == 4
    assert not engine.show_version("assistant", opened.messages[-1].turn_id, -1)  # there is no version 0
    # Only the last reply can be answered again.
    turn = next_turn_id()
    assert engine.regenerate(opened.messages[1].turn_id, turn) is None
    assert of(events, ErrorEvent)[-1].turn_id == turn and "last reply" in of(events, ErrorEvent)[-1].message
    store.close()

    # After a restart the version chosen last is the one shown.
    store, _ = open_history(paths.data)
    assert shown(store, conversation)[-1] == ("assistant", first.text)
    assert store.messages(conversation)[-1].versions == 2
    store.close()


def test_edit_replaces_what_followed_and_keeps_the_images(tiny_models, paths, image_file):
    store, _ = open_history(paths.data)
    engine, events = make(tiny_models["idefics3"], paths, store, max_new_tokens=4)
    asked = UserTurn("what colour is this", (ImageInput.from_path(image_file),))
    engine.handle_turn(asked)
    engine.handle_turn(UserTurn("and the roof"))
    engine.handle_turn(UserTurn("thanks"))
    conversation = engine.conversation_id
    before = shown(store, conversation)
    assert len(before) == 6

    edited = UserTurn("what shape is this")
    reply = engine.edit(asked.id, edited)
    assert isinstance(reply, ReplyFinished) and reply.turn_id == edited.id
    # The model's context is cut at the edit: the new question (its image still attached) and its answer.
    assert [(m.role, m.text) for m in engine.chat] == [("user", "what shape is this"), ("assistant", reply.text)]
    assert len(engine.chat[0].images) == 1 and image_tokens(engine) == 16
    prompt = engine.backend.tokenizer.decode(engine.backend.last_inputs["input_ids"][0])
    assert "colour" not in prompt and "roof" not in prompt and "thanks" not in prompt
    # The history holds exactly the new branch as current; the edited question keeps its image.
    saved = store.messages(conversation)
    assert [(m.role, m.text) for m in saved] == [("user", "what shape is this"), ("assistant", reply.text)]
    assert saved[0].images[0].path.read_bytes() == image_file.read_bytes()
    assert (saved[0].version, saved[0].versions) == (2, 2) and saved[1].versions == 1
    assert of(events, MessageVersions)[-1] == MessageVersions(edited.id, "user", 2, 2)

    # Reopened (after a restart), the conversation shows the new branch and the model sees it.
    store.close()
    store, _ = open_history(paths.data)
    engine.store = store
    engine.new_chat()
    assert engine.open_conversation(conversation)
    opened = of(events, ConversationOpened)[-1]
    assert [(m.role, m.text) for m in opened.messages] == [("user", "what shape is this"), ("assistant", reply.text)]
    assert [(m.role, m.text) for m in engine.chat] == [("user", "what shape is this"), ("assistant", reply.text)]
    # The old question comes back with everything that followed it.
    assert engine.show_version("user", opened.messages[0].turn_id, -1)
    assert [(m.role, m.text) for m in of(events, ConversationOpened)[-1].messages] == before
    assert len(engine.chat) == 6 and engine.chat[2].text == "and the roof"
    # Asking on from there continues that branch.
    engine.handle_turn(UserTurn("one more"))
    assert [text for _, text in shown(store, conversation)][:6] == [text for _, text in before]
    assert shown(store, conversation)[6] == ("user", "one more")
    store.close()


def test_edit_of_a_later_question_keeps_what_came_before(tiny_models, paths):
    store, _ = open_history(paths.data)
    engine, _ = make(tiny_models["causal_lm"], paths, store, max_new_tokens=3)
    engine.handle_turn(UserTurn("alpha"))
    second = UserTurn("beta")
    engine.handle_turn(second)
    engine.handle_turn(UserTurn("gamma"))
    reply = engine.edit(second.id, UserTurn("delta"))
    texts = [m.text for m in engine.chat]
    assert texts[0] == "alpha" and texts[2:] == ["delta", reply.text] and len(texts) == 4
    assert [m.text for m in store.messages(engine.conversation_id)] == texts
    store.close()


def test_without_a_history_both_replace(tiny_models, paths):
    engine, events = make(tiny_models["causal_lm"], paths, max_new_tokens=3)
    first = UserTurn("alpha")
    engine.handle_turn(first)
    reply = engine.handle_turn(UserTurn("beta"))
    again = engine.regenerate(reply.turn_id, next_turn_id())
    assert [m.text for m in engine.chat] == ["alpha", engine.chat[1].text, "beta", again.text]
    edited = engine.edit(first.id, UserTurn("gamma"))
    assert [m.text for m in engine.chat] == ["gamma", edited.text]
    assert not of(events, MessageVersions)


@pytest.mark.parametrize("name", ["idefics3", "llava"])  # (the tiny causal LM answers newlines whatever it is asked)
def test_replies_after_edit_and_regenerate_equal_a_fresh_run(name, tiny_models, paths, image_file):
    """Greedy: with the conversation KV cache cropped where the conversation changed, every reply
    is token for token the reply of an engine that reads the whole conversation again."""
    cached, _ = make(tiny_models[name], paths, reuse=True, max_new_tokens=8)
    plain, _ = make(tiny_models[name], paths, reuse=False, max_new_tokens=8)
    images = (ImageInput.from_path(image_file),)
    steps = [
        ("ask", "Describe this picture.", images),
        ("ask", "What else?", ()),
        ("ask", "And then?", ()),
        ("edit", 1, "Something different?"),  # the second question: the third exchange goes
        ("regenerate",),
        ("ask", "Last one.", ()),
        ("edit", 0, "Start over."),  # the first question: its image stays
        ("regenerate",),
    ]
    asked: dict[int, list[int]] = {id(cached): [], id(plain): []}
    for n, step in enumerate(steps):
        replies = []
        for engine in (cached, plain):
            questions = asked[id(engine)]
            if step[0] == "ask":
                turn = UserTurn(step[1], step[2])
                questions.append(turn.id)
                replies.append(engine.handle_turn(turn))
            elif step[0] == "edit":
                turn = UserTurn(step[2])
                replies.append(engine.edit(questions[step[1]], turn))
                del questions[step[1]:]
                questions.append(turn.id)
            else:
                last = engine._said[-1].turn_id
                replies.append(engine.regenerate(last, next_turn_id()))
        got, expected = replies
        assert got is not None and expected is not None, f"step {n + 1}"
        assert got.text == expected.text and got.tokens == expected.tokens, f"step {n + 1}: {step}"
        assert [m.text for m in cached.chat] == [m.text for m in plain.chat]
        if step[0] != "ask":
            # The cache was cropped where the conversation changed, not thrown away.
            prompt = cached.backend.last_inputs["input_ids"].shape[-1]
            assert 0 < cached.backend.conversation.reused_tokens < prompt, f"step {n + 1}"
    assert image_tokens(cached) > 0 and len(cached.chat[0].images) == 1  # the edited first question kept its image


# -- the window -------------------------------------------------------------------------------


def _ask(qtbot, window, text):
    window.prompt.setPlainText(text)
    window.send()
    qtbot.waitUntil(lambda: not window.bridge.busy, timeout=WAIT_MS)


def _click(qtbot, button):
    from PySide6.QtCore import Qt

    qtbot.waitUntil(button.isVisible, timeout=5000)  # (a widget just added is shown by the event loop)
    assert button.isEnabled(), button.accessibleName()
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def test_the_window_regenerates_edits_and_shows_versions(qtbot, main_window, paths, tiny_models, image_file):
    store, _ = open_history(paths.data)
    window = main_window(Settings(model=str(tiny_models["idefics3"]), max_new_tokens=4), store=store)
    chat, engine = window.chat, window.bridge.engine
    window.attach_files([str(image_file)])
    _ask(qtbot, window, "what colour is this")
    _ask(qtbot, window, "and the roof")
    question, _, second, reply = chat.messages
    # Regenerate is on the last reply only; Edit on every question; all named for screen readers.
    assert reply.regenerate_button.isVisible() and reply.regenerate_button.accessibleName() == "Regenerate reply"
    assert not chat.messages[1].regenerate_button.isVisible()
    assert question.edit_button.isVisible() and second.edit_button.accessibleName() == "Edit question"
    assert not reply.previous_version.isVisible()  # one version: no ‹ ›

    first_text = reply.text
    window.apply_settings(window.settings.replace(max_new_tokens=9))  # greedy: a longer reply is another one
    _click(qtbot, reply.regenerate_button)
    # While it is written, nothing else can be regenerated or edited.
    assert window.bridge.busy and not question.edit_button.isEnabled() and not second.edit_button.isEnabled()
    assert not chat.messages[-1].regenerate_button.isVisible()
    qtbot.waitUntil(lambda: not window.bridge.busy, timeout=WAIT_MS)
    new = chat.messages[-1]
    assert len(chat.messages) == 4 and new is not reply and new.text and new.text != first_text
    qtbot.waitUntil(lambda: new.versions == (2, 2), timeout=5000)
    assert new.previous_version.isVisible() and new.previous_version.isEnabled()
    assert not new.next_version.isEnabled() and new.version_label.accessibleName() == "Version 2 of 2"
    assert new.previous_version.accessibleName() == "Previous version"
    assert engine.chat[-1].text == new.text and len(engine.chat) == 4

    # ‹ shows the first reply again, and the model's context follows.
    with qtbot.waitSignal(window.bridge.conversation_opened, timeout=WAIT_MS):
        _click(qtbot, new.previous_version)
    shown_now = chat.messages[-1]
    assert shown_now.text == first_text and shown_now.versions == (1, 2) and shown_now.next_version.isEnabled()
    qtbot.waitUntil(shown_now.regenerate_button.isVisible, timeout=5000)
    qtbot.waitUntil(lambda: engine.chat[-1].text == first_text, timeout=5000)

    # Edit the first question: its image stays, everything after it is replaced.
    question = chat.messages[0]
    _click(qtbot, question.edit_button)
    assert question.editing and question.editor.toPlainText() == "what colour is this"
    assert question.editor.accessibleName() == "Edit your question"
    from PySide6.QtCore import Qt

    qtbot.keyClick(question.editor, Qt.Key.Key_Escape)  # Esc cancels the edit (it does not stop anything)
    assert not question.editing and question.text == "what colour is this"
    _click(qtbot, question.edit_button)
    assert question.editing
    question.editor.setPlainText("what shape is this")
    from PySide6.QtWidgets import QPushButton

    _click(qtbot, question.findChild(QPushButton, "sendEditButton"))
    qtbot.waitUntil(lambda: not window.bridge.busy, timeout=WAIT_MS)
    qtbot.waitUntil(lambda: question.versions == (2, 2), timeout=5000)
    assert [m.role for m in chat.messages] == ["user", "assistant"] and chat.messages[0] is question
    assert question.text == "what shape is this" and not question.editing and len(question.thumbnails) == 1
    answer = chat.messages[1].text
    conversation = engine.conversation_id
    assert [(m.role, m.text) for m in engine.chat] == [("user", "what shape is this"), ("assistant", answer)]
    assert shown(store, conversation) == [("user", "what shape is this"), ("assistant", answer)]

    # Reopened from the sidebar, the conversation shows the current versions and their ‹ n/m ›.
    window.new_chat()
    sidebar = window.sidebar
    qtbot.waitUntil(lambda: sidebar.list.count() == 1, timeout=5000)
    with qtbot.waitSignal(window.bridge.conversation_opened, timeout=WAIT_MS):
        sidebar.list.itemClicked.emit(sidebar.list.item(0))
    reopened = chat.messages
    assert [m.text for m in reopened] == ["what shape is this", answer]
    assert reopened[0].versions == (2, 2) and len(reopened[0].thumbnails) == 1
    qtbot.waitUntil(lambda: reopened[0].previous_version.isVisible() and reopened[1].regenerate_button.isVisible(),
                    timeout=5000)


def test_regenerate_and_edit_wait_while_a_reply_is_written(qtbot, main_window, tiny_models):
    window = main_window(Settings(model=str(tiny_models["causal_lm"]), max_new_tokens=3))
    _ask(qtbot, window, "first")
    window.apply_settings(window.settings.replace(max_new_tokens=400))
    window.prompt.setPlainText("a long one")
    window.send()
    question, reply = window.chat.messages[0], window.chat.messages[1]
    try:
        assert window.bridge.busy
        assert not question.edit_button.isEnabled() and not reply.regenerate_button.isVisible()
        # Even asked directly, nothing happens while busy.
        window.edit_question(question, "changed")
        window.regenerate(window.chat.messages[-1])
        assert question.text == "first" and len(window.chat.messages) == 4
    finally:
        window.stop()
        qtbot.waitUntil(lambda: not window.bridge.busy, timeout=WAIT_MS)
    assert question.edit_button.isEnabled() and window.chat.messages[-1].regenerate_button.isVisible()
