"""``--chat``: a conversation in the terminal, as a user (or a script) runs it."""

from __future__ import annotations

import re

from assistant.settings import AppPaths
from assistant.store.history import open_history
from tests.test_cli import run

TIMING = re.compile(r"^turn=(\d+) ttft=(\d+\.\d{3}) tokens=(\d+) seconds=(\d+\.\d{3})$")


def test_chat_answers_each_line_in_one_conversation_with_timings(tiny_models, image_file, data_dir, tmp_path):
    script = "\n".join([
        "hello there",
        f"/image {image_file}",
        "what is in this picture?",
        "/image " + str(tmp_path / "missing.png"),  # a bad path: a clear error, the chat goes on
        "and the colours?",
        "/new",
        "a fresh start",
    ]) + "\n"
    done = run("--chat", "--timings", "--model", tiny_models["idefics3"], "--max-new-tokens", "6",
               "--data-dir", data_dir, stdin=script, timeout=300)
    assert done.returncode == 0, done.stderr
    timings = [TIMING.match(line) for line in done.stderr.splitlines() if line.startswith("turn=")]
    assert all(timings) and [int(m.group(1)) for m in timings] == [1, 2, 3, 4]
    for m in timings:
        ttft, tokens, seconds = float(m.group(2)), int(m.group(3)), float(m.group(4))
        assert 0 < ttft <= seconds and 1 <= tokens <= 6
    assert "error: " in done.stderr and "missing.png" in done.stderr
    assert "Traceback" not in done.stderr
    store, _ = open_history(AppPaths.under(data_dir).data)
    try:
        newest, first = store.list_conversations()[:2]
        asked = [m for m in store.messages(first.id) if m.role == "user"]
        assert [m.text for m in asked] == ["hello there", "what is in this picture?", "and the colours?"]
        assert [len(m.images) for m in asked] == [0, 1, 0]  # the image went with the next question only
        assert [m.role for m in store.messages(first.id)] == ["user", "assistant"] * 3
        assert [m.text for m in store.messages(newest.id) if m.role == "user"] == ["a fresh start"]
    finally:
        store.close()


def test_timings_need_chat_and_front_ends_do_not_mix(data_dir):
    assert run("--timings", "--data-dir", data_dir).returncode == 2
    both = run("--chat", "--ask", "hi", "--data-dir", data_dir)
    assert both.returncode == 2 and both.stderr.startswith("error: ")
