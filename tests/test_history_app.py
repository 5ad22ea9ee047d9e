"""Saved conversations through the engine, the command line and the real window."""

from __future__ import annotations

import json
import threading

from assistant.engine import Engine
from assistant.store.history import open_history
from assistant.events import ConversationOpened, ConversationsListed, ImageInput, State, UserTurn
from assistant.settings import Settings
from tests.conftest import scripted_factory
from tests.test_cli import run


def prompt_text(engine) -> str:
    backend = engine.backend
    return backend.tokenizer.decode(backend.last_inputs["input_ids"][0])


def test_turns_are_saved_and_a_reopened_chat_restores_the_models_context(tiny_models, paths, image_file):
    store, warning = open_history(paths.data)
    events = []
    engine = Engine(Settings(model=str(tiny_models["idefics3"]), max_new_tokens=4), paths, events.append,
                    store=store)
    assert warning is None and engine.load()
    engine.handle_turn(UserTurn("first about tokyo", (ImageInput.from_path(image_file),)))
    engine.handle_turn(UserTurn("second question"))
    first_chat = engine.conversation_id
    engine.new_chat()
    engine.handle_turn(UserTurn("another chat entirely"))
    assert engine.conversation_id != first_chat
    listed = [e for e in events if isinstance(e, ConversationsListed)][-1]
    assert [c.title for c in listed.items] == ["another chat entirely", "first about tokyo"]

    assert engine.open_conversation(first_chat)
    opened = [e for e in events if isinstance(e, ConversationOpened)][-1]
    assert [m.role for m in opened.messages] == ["user", "assistant", "user", "assistant"]
    assert opened.messages[0].images and opened.messages[0].images[0].path.read_bytes() == image_file.read_bytes()
    engine.handle_turn(UserTurn("third"))
    prompt = prompt_text(engine)
    assert "first about tokyo" in prompt and "second question" in prompt and "another chat" not in prompt
    image_id = engine.backend.tokenizer.convert_tokens_to_ids("<image>")
    assert int((engine.backend.last_inputs["input_ids"] == image_id).sum()) == 16  # the saved image came back
    store.close()

    # After a restart everything is still there.
    store, _ = open_history(paths.data)
    assert [m.text for m in store.messages(first_chat) if m.role == "user"] == [
        "first about tokyo", "second question", "third"]
    store.close()


def test_stopped_replies_are_saved_as_such(paths):
    store, _ = open_history(paths.data)
    engine = Engine(Settings(model="scripted"), paths, lambda e: None,
                    scripted_factory("One. Two. Three. " * 50, chunk_delay=0.002), store=store)
    assert engine.load()
    epoch = engine.epoch
    threading.Timer(0.05, engine.cancel).start()
    reply = engine.handle_turn(UserTurn("long one"), epoch)
    assert reply.stopped
    saved = store.messages(engine.conversation_id)
    assert saved[-1].status == "stopped" and saved[-1].text == reply.text
    store.close()


def test_ask_is_saved_and_exported(tiny_models, data_dir, image_file):
    done = run("--ask", "What is in this picture?", "--image", image_file, "--model", tiny_models["idefics3"],
               "--max-new-tokens", "6", "--data-dir", data_dir)
    assert done.returncode == 0, done.stderr
    exported = run("--export-chat", "last", "--format", "json", "--data-dir", data_dir)
    assert exported.returncode == 0, exported.stderr
    data = json.loads(exported.stdout)
    assert [m["role"] for m in data["messages"]] == ["user", "assistant"]
    assert data["messages"][0]["text"] == "What is in this picture?"
    assert data["messages"][1]["text"] == done.stdout.strip()
    assert len(data["messages"][0]["images"]) == 1
    markdown = run("--export-chat", "last", "--data-dir", data_dir)
    assert markdown.returncode == 0 and "What is in this picture?" in markdown.stdout and "![image 1](file://" in markdown.stdout
    # --no-history leaves nothing behind; a bad id is a clear error.
    run("--ask", "secret", "--model", tiny_models["idefics3"], "--max-new-tokens", "3", "--data-dir", data_dir,
        "--no-history")
    again = json.loads(run("--export-chat", "last", "--format", "json", "--data-dir", data_dir).stdout)
    assert again["messages"][0]["text"] == "What is in this picture?"
    missing = run("--export-chat", "999", "--data-dir", data_dir)
    assert missing.returncode == 1 and missing.stderr.startswith("error: ") and "999" in missing.stderr


def test_sidebar_switches_conversations_and_the_model_follows(qtbot, paths, tiny_models):
    from ui.main_window import MainWindow

    store, _ = open_history(paths.data)
    window = MainWindow(Settings(model=str(tiny_models["causal_lm"]), max_new_tokens=3), paths, store=store)
    try:
        window.show()
        window.bridge.load()
        qtbot.waitUntil(lambda: window.bridge.status.state is State.READY, timeout=20_000)

        def ask(text):
            window.prompt.setPlainText(text)
            window.send()
            qtbot.waitUntil(lambda: not window.bridge.busy, timeout=20_000)

        ask("remember the word pineapple")
        window.new_chat_action.trigger()
        ask("remember the word volcano")
        sidebar = window.sidebar
        qtbot.waitUntil(lambda: sidebar.list.count() == 2, timeout=5000)
        titles = [sidebar.list.item(i).text().splitlines()[0] for i in range(2)]
        assert titles == ["remember the word volcano", "remember the word pineapple"]

        # Open the older chat from the sidebar.
        with qtbot.waitSignal(window.bridge.conversation_opened, timeout=5000):
            sidebar.list.itemClicked.emit(sidebar.list.item(1))
        assert [m.text for m in window.chat.messages][0] == "remember the word pineapple"
        assert len(window.chat.messages) == 2
        ask("which word?")
        prompt = window.bridge.engine.backend.tokenizer.decode(window.bridge.engine.backend.last_inputs["input_ids"][0])
        assert "pineapple" in prompt and "volcano" not in prompt

        # Search finds it, in any script.
        ask("今天天气很好")
        sidebar.search.setText("天气")
        qtbot.waitUntil(lambda: sidebar.showing_search and sidebar.list.count() == 1, timeout=5000)
        assert "天气" in sidebar.list.item(0).text()
        sidebar.search.setText("")
        qtbot.waitUntil(lambda: not sidebar.showing_search and sidebar.list.count() == 2, timeout=5000)

        # Rename and delete (the confirmation is the dialog's; here it is accepted).
        pineapple_id = sidebar.list.item(0).data(256)
        sidebar.rename_requested.emit(pineapple_id, "Fruit chat")
        qtbot.waitUntil(lambda: sidebar.list.item(0).text().startswith("Fruit chat"), timeout=5000)
        sidebar.delete(pineapple_id, confirm=False)
        qtbot.waitUntil(lambda: sidebar.list.count() == 1, timeout=5000)
        assert window.chat.messages == []  # the open chat was the one deleted
    finally:
        window.close()
        window.deleteLater()
        store.close()


def test_failed_turn_is_saved_but_not_replayed_to_the_model(tiny_models, paths):
    from tests.conftest import failing_factory

    store, _ = open_history(paths.data)
    engine = Engine(Settings(model=str(tiny_models["idefics3"]), max_new_tokens=50), paths, lambda e: None,
                    failing_factory(after_chunks=3), store=store)
    assert engine.load()
    assert engine.handle_turn(UserTurn("this one breaks")) is None
    saved = store.messages(engine.conversation_id)
    assert [(m.role, m.status) for m in saved] == [("user", "complete"), ("assistant", "failed")]
    assert "device-side assert" in saved[1].meta["error"] and saved[1].text  # the partial text is kept
    conversation = engine.conversation_id
    engine.new_chat()
    assert engine.open_conversation(conversation) and engine.chat == []
    store.close()


def test_a_model_that_answers_nothing_is_reported_not_shown_blank(tiny_models, paths):
    """Damaged weights that always pick the end token: the turn is an error that says so
    (saved as failed), not an empty reply; nothing empty goes into the model's context."""
    from assistant.engine import EMPTY_ANSWER
    from assistant.events import ErrorEvent, ReplyFinished

    store, _ = open_history(paths.data)
    events = []
    engine = Engine(Settings(model=str(tiny_models["causal_lm"]), max_new_tokens=20), paths, events.append,
                    store=store)
    assert engine.load()
    eos = engine.backend.tokenizer.eos_token_id
    engine.backend.generate_kwargs = {"sequence_bias": {(eos,): 1e4}}  # the end token always wins
    assert engine.handle_turn(UserTurn("say something")) is None
    assert [e.message for e in events if isinstance(e, ErrorEvent)] == [EMPTY_ANSWER]
    assert not [e for e in events if isinstance(e, ReplyFinished)]
    saved = store.messages(engine.conversation_id)
    assert [(m.role, m.status) for m in saved] == [("user", "complete"), ("assistant", "failed")]
    assert engine.chat == []
    store.close()


def test_export_and_import_through_the_engine(tiny_models, paths, image_file, tmp_path):
    store, _ = open_history(paths.data)
    events = []
    engine = Engine(Settings(model=str(tiny_models["idefics3"]), max_new_tokens=4), paths, events.append,
                    store=store)
    assert engine.load()
    engine.handle_turn(UserTurn("look at this", (ImageInput.from_path(image_file),)))
    conversation = engine.conversation_id
    md = engine.export_conversation(conversation, "md", tmp_path / "md")
    assert md.read_text().startswith("# look at this") and "## You" in md.read_text()
    linked = [line for line in md.read_text().splitlines() if line.startswith("![")]
    assert linked and (md.parent / linked[0].split("(")[1].rstrip(")")).read_bytes() == image_file.read_bytes()
    exported = engine.export_conversation(conversation, "json", tmp_path / "chat.json")
    imported = engine.import_conversation(exported)
    assert imported != conversation and engine.conversation_id == imported
    assert [m.text for m in store.messages(imported)] == [m.text for m in store.messages(conversation)]
    (tmp_path / "bad.json").write_text('{"format": "something else"}')
    assert engine.import_conversation(tmp_path / "bad.json") is None
    assert "could not be imported" in events[-1].message
    store.close()


def test_sigkill_mid_reply_keeps_every_completed_message(tiny_models, tmp_path):
    """The app's own process is killed while a reply streams: what was complete survives,
    and so does the part of the reply that had streamed (marked interrupted on the next start)."""
    import os
    import signal
    import subprocess
    import sys

    from tests.conftest import ROOT

    code = f"""
import sys
sys.path.insert(0, {str(ROOT)!r})
import tests.conftest as c
from assistant.engine import Engine
from assistant.store.history import open_history
from assistant.events import TokenChunk, UserTurn
from assistant.settings import AppPaths, Settings
paths = AppPaths.under({str(tmp_path / 'app')!r})
store, _ = open_history(paths.data)
def emit(e):
    if isinstance(e, TokenChunk):
        print("token", flush=True)
engine = Engine(Settings(model={str(tiny_models['idefics3'])!r}, max_new_tokens=400), paths, emit,
                c.paced_factory(delay=0.01, min_new_tokens=400), store=store)
engine.load()
engine.backend.generate_kwargs = {{"min_new_tokens": 3}}
engine.settings = engine.settings.replace(max_new_tokens=3)
for q in ("first question", "second question"):
    engine.handle_turn(UserTurn(q))
    print("done", q, flush=True)
engine.settings = engine.settings.replace(max_new_tokens=400)
engine.backend.generate_kwargs = {{"min_new_tokens": 400}}
engine.handle_turn(UserTurn("third question, never answered"))
"""
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    seen_done, tokens_after = 0, 0
    for line in proc.stdout:
        if line.startswith("done"):
            seen_done += 1
        elif seen_done == 2:
            tokens_after += 1
            if tokens_after >= 150:  # more than a second of streaming: it has been saved
                break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    store, warning = open_history(tmp_path / "app" / "data")
    assert warning is None
    assert store._conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    messages = store.messages(store.last_conversation_id())
    assert [(m.role, m.text) for m in messages if m.role == "user"] == [
        ("user", "first question"), ("user", "second question"), ("user", "third question, never answered")]
    replies = [m for m in messages if m.role == "assistant"]
    assert [m.status for m in replies] == ["complete", "complete", "stopped"]
    assert replies[-1].text and replies[-1].meta == {"interrupted": True}
    store.close()


def test_search_answers_while_a_reply_is_being_generated(qtbot, paths, tiny_models):
    from tests.conftest import paced_factory
    from ui.main_window import MainWindow

    store, _ = open_history(paths.data)
    conversation = store.create_conversation()
    store.add_message(conversation, "user", "where did I park the bicycle?")
    window = MainWindow(Settings(model=str(tiny_models["idefics3"]), max_new_tokens=1000), paths, store=store,
                        backend_factory=paced_factory(delay=0.02, min_new_tokens=1000), persist_settings=False)
    try:
        window.show()
        window.bridge.load()
        qtbot.waitUntil(lambda: window.bridge.status.state is State.READY, timeout=20_000)
        window.prompt.setPlainText("tell me a long story")
        window.send()
        qtbot.waitUntil(lambda: bool(window.chat.messages[-1].text), timeout=10_000)
        window.sidebar.search.setText("bicycle")
        qtbot.waitUntil(lambda: window.sidebar.showing_search, timeout=3000)
        assert window.bridge.busy  # answered while the model is still writing
        assert "bicycle" in window.sidebar.list.item(0).text()
    finally:
        window.close()
        window.deleteLater()
        store.close()
