"""The command line, as a user runs it: real subprocesses of main.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from assistant.settings import AppPaths, Settings, load_settings, save_settings
from tests.conftest import ROOT


def run(*args, stdin: str | None = None, timeout: int = 120):
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONWARNINGS="default")
    return subprocess.run(
        [sys.executable, str(ROOT / "main.py"), *map(str, args)],
        capture_output=True, text=True, timeout=timeout, env=env, input=stdin,
    )


def test_ask_streams_an_answer_about_an_image(tiny_models, image_file, data_dir):
    done = run("--ask", "What is in this picture?", "--image", image_file, "--model", tiny_models["idefics3"],
               "--device", "cpu", "--max-new-tokens", "12", "--data-dir", data_dir)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()  # the streamed answer
    assert done.stderr == ""  # no library chatter, no progress bars, no warnings


def test_ask_reads_the_question_from_stdin(tiny_models, data_dir):
    done = run("--ask", "-", "--model", tiny_models["idefics3"], "--max-new-tokens", "5", "--data-dir", data_dir,
               stdin="Summarize: the meeting is at ten.")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()


@pytest.mark.parametrize(
    "case, expected",
    [
        ("missing-model", "does not exist"),
        ("broken-image", "is damaged"),
        ("not-an-image", "not an image file"),
        ("uncached-hub-id", "offline mode is on"),
        ("image-for-text-model", "reads text only"),
    ],
)
def test_failures_print_one_clear_line(case, expected, tiny_models, broken_image, image_file, tmp_path, data_dir):
    model, images = tiny_models["idefics3"], []
    if case == "missing-model":
        model = tmp_path / "nowhere"
    elif case == "broken-image":
        images = [broken_image]
    elif case == "not-an-image":
        (tmp_path / "notes.jpg").write_text("hello")
        images = [tmp_path / "notes.jpg"]
    elif case == "uncached-hub-id":
        model = "SomeOrg/not-downloaded"
    elif case == "image-for-text-model":
        model, images = tiny_models["causal_lm"], [image_file]
    args = ["--ask", "hi", "--model", model, "--data-dir", data_dir]
    for image in images:
        args += ["--image", image]
    done = run(*args)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""


def test_usage_errors_exit_2(data_dir, image_file):
    assert run("--image", image_file, "--data-dir", data_dir).returncode == 2  # --image without --ask
    assert run("--device", "tpu", "--ask", "x").returncode == 2


def test_settings_file_is_used_and_flags_override_it_without_saving(tiny_models, data_dir):
    paths = AppPaths.under(data_dir)
    save_settings(paths, Settings(model=str(tiny_models["causal_lm"]), max_new_tokens=4, system_prompt="Be brief."))
    done = run("--ask", "hello", "--data-dir", data_dir)
    assert done.returncode == 0, done.stderr
    done = run("--ask", "hello", "--data-dir", data_dir, "--model", data_dir / "nope")
    assert done.returncode == 1 and "nope" in done.stderr
    assert load_settings(paths).settings.model == str(tiny_models["causal_lm"])  # the flag was not saved
    assert json.loads(paths.settings_file.read_text())["system_prompt"] == "Be brief."


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_ask_interrupted_keeps_the_partial_answer_as_stopped(tiny_models, data_dir, sig):
    """Ctrl+C or SIGTERM ends --ask like Stop: the partial answer is saved, marked stopped."""
    import signal

    code = f"""
import sys, time
sys.path.insert(0, {str(ROOT)!r})
from assistant.generators import transformers_backend as tb
real = tb.TransformersBackend.generate
def slow(self, messages, params, on_text, cancel):  # a long, paced reply
    self.generate_kwargs = {{"min_new_tokens": 600}}
    return real(self, messages, params, lambda t: (time.sleep(0.01), on_text(t)), cancel)
tb.TransformersBackend.generate = slow
import main
sys.exit(main.main(["--ask", "tell me a long story", "--model", {str(tiny_models["causal_lm"])!r},
                    "--max-new-tokens", "600", "--data-dir", {str(data_dir)!r}]))
"""
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env, cwd=ROOT)
    printed = b""
    while len(printed) < 100:
        piece = proc.stdout.read1(4096)
        assert piece, proc.stderr.read().decode()
        printed += piece
    proc.send_signal(getattr(signal, sig))
    rest, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err.decode()
    assert b"interrupted" in err and b"Traceback" not in err
    from assistant.store.history import open_history

    store, _ = open_history(AppPaths.under(data_dir).data)
    try:
        reply = store.messages(store.last_conversation_id())[-1]
        assert reply.role == "assistant" and reply.status == "stopped" and not reply.meta.get("interrupted")
        assert len(reply.text) >= 50 and (printed + rest).decode(errors="replace").startswith(reply.text[:50])
    finally:
        store.close()


@pytest.mark.parametrize("flags", [["--ask", "hi"], ["--headless"], ["--chat"]])
def test_a_camera_that_cannot_exist_is_a_usage_error(flags, data_dir):
    done = run(*flags, "--camera", "-1", "--data-dir", data_dir)
    assert done.returncode == 2 and done.stderr.startswith("error: --camera: Camera number -1")
    assert "Traceback" not in done.stderr
