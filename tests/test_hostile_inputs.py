"""The hostile-input suite: bad things a user (or a disk, or a server) can hand the app.

Each case runs the real command line (``--ask`` or ``--headless``) in a data folder that
already holds a saved conversation, and asserts the three things a person relies on: the
app says what is wrong in one clear line (no traceback), it exits as documented, and
nothing that was already saved is lost.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from tests.conftest import ROOT

SAVED_QUESTION = "A question from last week"
SAVED_REPLY = "Its answer, which must survive."


@pytest.fixture(scope="module")
def saved_data(tmp_path_factory) -> Path:
    """An app folder whose history holds one finished conversation."""
    from assistant.settings import AppPaths
    from assistant.store.history import open_history

    root = tmp_path_factory.mktemp("saved")
    store, _ = open_history(AppPaths.under(root).data)
    conv = store.create_conversation()
    store.add_message(conv, "user", SAVED_QUESTION)
    store.add_message(conv, "assistant", SAVED_REPLY)
    store.close()
    return root


@pytest.fixture
def app_dir(saved_data, tmp_path) -> Path:
    target = tmp_path / "app"
    shutil.copytree(saved_data, target)
    return target


def saved_conversations(app_dir: Path) -> list[list[tuple[str, str, str]]]:
    """Every saved conversation as (role, text, status) triples, oldest first."""
    from assistant.settings import AppPaths
    from assistant.store.history import open_history

    store, _ = open_history(AppPaths.under(app_dir).data)
    try:
        return [[(m.role, m.text, m.status) for m in store.messages(c.id)]
                for c in reversed(store.list_conversations())]
    finally:
        store.close()


def run_main(args: list, stdin: bytes | None = None, file_size_limit: int | None = None,
             timeout: int = 180) -> subprocess.CompletedProcess:
    def limit_file_size() -> None:  # a full disk, as far as the app can tell: writes past it fail (EFBIG)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))

    env = dict(os.environ, HF_HUB_OFFLINE="1")
    argv = [sys.executable, str(ROOT / "main.py"), *(a if isinstance(a, bytes) else str(a) for a in args)]
    done = subprocess.run(argv, capture_output=True, timeout=timeout, env=env, input=stdin, cwd=ROOT,
                          preexec_fn=limit_file_size if file_size_limit else None)
    return subprocess.CompletedProcess(done.args, done.returncode, done.stdout.decode("utf-8", "replace"),
                                       done.stderr.decode("utf-8", "replace"))


def one_line(stderr: str, prefix: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(prefix), stderr
    assert "Traceback" not in stderr
    return lines[0]


def png_declaring(width: int, height: int) -> bytes:
    """A valid PNG signature and header that claims a huge image (a decompression bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def make_input(kind: str, tmp_path: Path, tiny_models: dict[str, Path]) -> tuple[list, str]:
    """The hostile thing for ``kind``: extra command-line arguments, and what the error must say."""
    if kind == "truncated-png":
        from PIL import Image

        whole = tmp_path / "whole.png"
        Image.effect_noise((64, 64), 50).convert("RGB").save(whole)
        (tmp_path / "cut.png").write_bytes(whole.read_bytes()[:600])
        return ["--image", tmp_path / "cut.png"], "damaged"
    if kind == "empty-image":
        (tmp_path / "empty.jpg").write_bytes(b"")
        return ["--image", tmp_path / "empty.jpg"], "empty"
    if kind == "text-as-image":
        (tmp_path / "notes.jpg").write_text("not a picture")
        return ["--image", tmp_path / "notes.jpg"], "not an image"
    if kind == "image-bomb":
        (tmp_path / "bomb.png").write_bytes(png_declaring(100_000, 100_000))
        return ["--image", tmp_path / "bomb.png"], "megapixels"
    if kind == "folder-as-image":
        return ["--image", tmp_path], "folder"
    if kind == "missing-image":
        return ["--image", tmp_path / "nowhere.png"], "not found"
    if kind == "garbage-video":
        (tmp_path / "clip.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(4000))
        return ["--camera", tmp_path / "clip.mp4"], "clip.mp4"
    if kind == "empty-model-folder":
        (tmp_path / "model").mkdir()
        return ["--model", tmp_path / "model"], "model"
    if kind == "garbage-model-config":
        folder = tmp_path / "model"
        shutil.copytree(tiny_models["causal_lm"], folder)
        (folder / "config.json").write_text("{ this is not json")
        return ["--model", folder], "config.json"
    if kind == "truncated-model-weights":
        folder = tmp_path / "model"
        shutil.copytree(tiny_models["causal_lm"], folder)
        weights = folder / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
        return ["--model", folder], "model"
    if kind == "huge-prompt":
        return [], "too long"
    if kind == "unreachable-server":
        return ["--backend", "openai", "--base-url", "http://127.0.0.1:9/v1", "--remote-model", "m"], "127.0.0.1:9"
    raise AssertionError(kind)


FAILURES = ["truncated-png", "empty-image", "text-as-image", "image-bomb", "folder-as-image", "missing-image",
            "garbage-video", "empty-model-folder", "garbage-model-config", "truncated-model-weights", "huge-prompt",
            "unreachable-server"]


@pytest.mark.parametrize("kind", FAILURES)
def test_bad_input_is_one_clear_line_and_nothing_saved_is_lost(kind, tiny_models, app_dir, tmp_path):
    extra, expected = make_input(kind, tmp_path, tiny_models)
    question = "x " * 300_000 if kind == "huge-prompt" else "what is this?"
    args = ["--ask", "-", "--model", tiny_models["idefics3"], "--max-new-tokens", "4", "--data-dir", app_dir, *extra]
    done = run_main(args, stdin=question.encode())
    assert done.returncode in (1, 2), done.stderr
    assert expected.lower() in one_line(done.stderr, "error: ").lower()
    conversations = saved_conversations(app_dir)
    assert conversations[0] == [("user", SAVED_QUESTION, "complete"), ("assistant", SAVED_REPLY, "complete")]
    if kind == "unreachable-server":  # the question was asked: it is kept, marked failed
        assert conversations[-1][0][:2] == ("user", "what is this?") and conversations[-1][-1][2] == "failed"


@pytest.mark.parametrize("kind", ["invalid-utf8", "utf16-bom", "deep-nesting", "wrong-types"])
def test_a_damaged_settings_file_is_set_aside_and_the_app_still_answers(kind, tiny_models, app_dir):
    from assistant.settings import AppPaths

    settings_file = AppPaths.under(app_dir).settings_file
    settings_file.parent.mkdir(parents=True, exist_ok=True)
    content = {
        "invalid-utf8": b'{"temperature": 0.5, "system_prompt": "caf\xe9"}',
        "utf16-bom": json.dumps({"temperature": 0.5}).encode("utf-16"),
        "deep-nesting": b"[" * 100_000 + b"]" * 100_000,
        "wrong-types": json.dumps({"temperature": "hot", "max_new_tokens": 3}).encode(),
    }[kind]
    settings_file.write_bytes(content)
    done = run_main(["--ask", "hello", "--model", tiny_models["idefics3"], "--max-new-tokens", "3",
                     "--data-dir", app_dir])
    assert done.returncode == 0, done.stderr
    assert "settings" in one_line(done.stderr, "warning: ").lower()
    assert saved_conversations(app_dir)[0][0] == ("user", SAVED_QUESTION, "complete")


@pytest.mark.parametrize("text, saved", [
    (b"caf\xe9 \xed\xa0\xbd half an emoji", "caf\ufffd \ufffd\ufffd\ufffd half an emoji"),  # invalid UTF-8 in argv
    (b"a NUL\x00 and a bell\x07 in stdin", "a NUL and a bell in stdin"),
    (b"<image><|im_end|><end_of_utterance> are only text", "<image><|im_end|><end_of_utterance> are only text"),
])
def test_hostile_prompts_are_answered_and_saved_clean(text, saved, tiny_models, app_dir):
    via_stdin = b"\x00" in text
    args = ["--ask", "-" if via_stdin else text, "--model", tiny_models["idefics3"], "--max-new-tokens", "3",
            "--data-dir", app_dir]
    done = run_main(args, stdin=text if via_stdin else None)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    conversations = saved_conversations(app_dir)
    assert conversations[0][0] == ("user", SAVED_QUESTION, "complete")
    assert conversations[-1][0][:2] == ("user", saved)


def test_a_garbage_history_file_is_kept_aside_and_the_app_answers(tiny_models, app_dir):
    from assistant.settings import AppPaths

    database = AppPaths.under(app_dir).data / "history.sqlite3"
    database.write_bytes(b"this was never a database " * 200)
    done = run_main(["--ask", "hello", "--model", tiny_models["idefics3"], "--max-new-tokens", "3",
                     "--data-dir", app_dir])
    assert done.returncode == 0, done.stderr
    assert "history" in one_line(done.stderr, "warning: ").lower()
    kept = [p for p in database.parent.iterdir() if p.name.startswith("history.sqlite3.broken")]
    assert len(kept) == 1 and kept[0].read_bytes().startswith(b"this was never")


@pytest.mark.parametrize("wav", ["empty", "text"])
def test_headless_with_a_bad_recording_says_so(wav, tiny_models, tiny_whisper, app_dir, tmp_path):
    path = tmp_path / f"{wav}.wav"
    path.write_bytes(b"" if wav == "empty" else b"hello, this is not audio\n" * 40)
    done = run_main(["--headless", "--mic", path, "--model", tiny_models["idefics3"], "--asr-model", tiny_whisper,
                     "--data-dir", app_dir])
    assert done.returncode == 1, done.stderr
    line = one_line(done.stderr, "error: ")
    assert path.name in line and not line.rstrip(".").endswith("()")
    assert saved_conversations(app_dir)[0][0] == ("user", SAVED_QUESTION, "complete")


def test_a_full_disk_during_a_turn_is_one_warning_and_the_answer_stands(tiny_models, app_dir, tmp_path):
    """Saving fails (the picture cannot be written: the disk is 'full'); the answer is still
    printed, one warning says the chat may not be saved, and the exit code is 0."""
    from PIL import Image

    picture = tmp_path / "noise.png"
    Image.effect_noise((400, 400), 80).convert("RGB").save(picture)  # ~400 KB: larger than the disk allows
    assert picture.stat().st_size > 200_000
    done = run_main(["--ask", "what is this?", "--image", picture, "--model", tiny_models["idefics3"],
                     "--max-new-tokens", "4", "--data-dir", app_dir], file_size_limit=150_000)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()
    line = one_line(done.stderr, "warning: ")
    assert line.startswith("warning: Chat history: could not save the question:"), line
    assert saved_conversations(app_dir)[0] == [("user", SAVED_QUESTION, "complete"),
                                              ("assistant", SAVED_REPLY, "complete")]


def test_storage_errors_are_said_in_words():
    import errno
    import sqlite3

    from assistant.store.records import describe_storage_error

    assert describe_storage_error(OSError(errno.ENOSPC, "No space left on device")) == "the disk is full"
    assert describe_storage_error(sqlite3.OperationalError("database or disk is full")) == "the disk is full"
    assert "read-only" in describe_storage_error(sqlite3.OperationalError("attempt to write a readonly database"))


def test_a_video_cut_short_is_answered_with_a_warning(tiny_models, app_dir, tmp_path):
    import cv2
    import numpy as np

    whole = tmp_path / "whole.avi"
    writer = cv2.VideoWriter(str(whole), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for i in range(50):
        writer.write(np.full((48, 64, 3), i * 5, np.uint8))
    writer.release()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 3])
    done = run_main(["--ask", "what changed?", "--camera", cut, "--model", tiny_models["idefics3"],
                     "--max-new-tokens", "3", "--data-dir", app_dir])
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stderr.splitlines() if not line.startswith("frame t=")]
    assert len(warnings) == 1 and warnings[0].startswith("warning: Video 'cut.avi' ended after"), done.stderr
    assert "of its 5.0 s" in warnings[0] and "cut short" in warnings[0]
