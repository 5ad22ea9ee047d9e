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
