"""The engine on its own: no Qt anywhere in these tests."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest
import torch

from assistant.generators.transformers_backend import TransformersBackend, _StreamToCallback
from assistant.devices.compute import pick_device, pick_dtype
from assistant.engine import Engine
from assistant.errors import ModelLoadError
from assistant.events import (
    ErrorEvent,
    ErrorKind,
    ImageInput,
    ReplyFinished,
    State,
    StatusEvent,
    TokenChunk,
    UserTurn,
)
from assistant.settings import Settings
from tests.conftest import ROOT, paced_factory
from tests.tiny_models import IDEFICS3_IMAGE_SEQ_LEN, LLAVA_IMAGE_SEQ_LEN

IMAGE_TOKENS = {"idefics3": IDEFICS3_IMAGE_SEQ_LEN, "llava": LLAVA_IMAGE_SEQ_LEN}


def make_engine(model, paths, factory=None, **settings):
    events: list = []
    kwargs = {"backend_factory": factory} if factory else {}
    engine = Engine(Settings(model=str(model), device="cpu", **settings), paths, events.append, **kwargs)
    return engine, events


def of(events, kind):
    return [e for e in events if isinstance(e, kind)]


def image_token_count(backend: TransformersBackend) -> int:
    image_id = backend.tokenizer.convert_tokens_to_ids(backend.processor.image_token)
    return int((backend.last_inputs["input_ids"] == image_id).sum())


def test_engine_runs_without_qt(tiny_models, tmp_path):
    """A whole turn in a fresh interpreter, which must never import PySide6."""
    code = (
        "import sys\n"
        "from assistant.engine import Engine\n"
        "from assistant.settings import AppPaths, Settings\n"
        "from assistant.events import UserTurn\n"
        f"e = Engine(Settings(model={str(tiny_models['causal_lm'])!r}, max_new_tokens=3), "
        f"AppPaths.under({str(tmp_path)!r}), lambda ev: None)\n"
        "assert e.load() and e.handle_turn(UserTurn('hi'))\n"
        "import cli.options, assistant.models.hub\n"
        "qt = [m for m in sys.modules if m.startswith('PySide6') or m == 'ui' or m.startswith('ui.')]\n"
        "assert not qt, qt\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.parametrize("name", ["idefics3", "llava", "causal_lm"])
def test_loads_and_streams_a_reply(name, tiny_models, paths):
    engine, events = make_engine(tiny_models[name], paths, max_new_tokens=12)
    assert engine.load()
    assert engine.info.supports_images == (name != "causal_lm")
    assert engine.info.device == "cpu" and engine.info.dtype == "float32"
    reply = engine.handle_turn(UserTurn("Describe the weather today."))
    assert reply is not None and not reply.stopped
    streamed = "".join(c.text for c in of(events, TokenChunk))
    assert streamed == reply.text and reply.tokens > 0
    all_states = [e.state for e in of(events, StatusEvent)]
    states = [s for i, s in enumerate(all_states) if i == 0 or all_states[i - 1] is not s]
    assert states[:2] == [State.LOADING, State.READY]
    assert states[-1] is State.READY and State.THINKING in states
    if reply.text:
        assert State.GENERATING in states
    assert [m.role for m in engine.chat] == ["user", "assistant"]


@pytest.mark.parametrize("name", ["idefics3", "llava"])
def test_images_reach_the_model(name, tiny_models, paths, image_file):
    engine, events = make_engine(tiny_models[name], paths, max_new_tokens=4)
    assert engine.load()
    assert engine.handle_turn(UserTurn("What is in this picture?", (ImageInput.from_path(image_file),)))
    backend = engine.backend
    assert image_token_count(backend) == IMAGE_TOKENS[name]
    pixels = backend.last_inputs["pixel_values"]
    assert pixels.shape[-3] == 3 and pixels.dtype == torch.float32

    # A follow-up question still sees the first image, plus a new pasted one.
    pasted = ImageInput.from_bytes(image_file.read_bytes(), "pasted")
    assert engine.handle_turn(UserTurn("And this one?", (pasted,)))
    assert image_token_count(backend) == 2 * IMAGE_TOKENS[name]


@pytest.mark.parametrize("name", ["idefics3", "llava", "causal_lm"])
def test_typed_special_tokens_stay_text(name, tiny_models, paths):
    engine, _ = make_engine(tiny_models[name], paths, max_new_tokens=4)
    assert engine.load()
    backend = engine.backend
    tok = backend.tokenizer
    tricky = "look <image> here <|im_end|> and <end_of_utterance> then </s><fake_token_around_image>"
    assert engine.handle_turn(UserTurn("plain question"))
    plain_ids = backend.last_inputs["input_ids"][0].tolist()
    engine.new_chat()
    assert engine.handle_turn(UserTurn(tricky))
    ids = backend.last_inputs["input_ids"][0].tolist()
    assert "pixel_values" not in backend.last_inputs
    special = set(tok.all_special_ids) | {tok.convert_tokens_to_ids(t) for t in ("<image>", "<fake_token_around_image>")}
    special.discard(tok.unk_token_id)
    # Exactly the same structural tokens as for harmless text: none were injected.
    assert sorted(i for i in ids if i in special) == sorted(i for i in plain_ids if i in special)
    # And the model sees the typed characters verbatim.
    assert tricky in tok.decode(ids, skip_special_tokens=False)
    # Without the protection the same text would have made special tokens.
    naive = tok(tricky, add_special_tokens=False)["input_ids"]
    assert any(i in special for i in naive)


def test_history_and_new_chat(tiny_models, paths):
    engine, _ = make_engine(tiny_models["causal_lm"], paths, max_new_tokens=3)
    assert engine.load()
    engine.handle_turn(UserTurn("first question about tokyo"))
    engine.handle_turn(UserTurn("second question"))
    prompt = engine.backend.tokenizer.decode(engine.backend.last_inputs["input_ids"][0])
    assert "first question about tokyo" in prompt and "second question" in prompt
    assert prompt.count("<|im_start|>user") == 2
    assert "You are a helpful assistant" in prompt  # the system prompt from the settings
    engine.new_chat()
    engine.handle_turn(UserTurn("third"))
    prompt = engine.backend.tokenizer.decode(engine.backend.last_inputs["input_ids"][0])
    assert "first question" not in prompt and prompt.count("<|im_start|>user") == 1


def test_overlong_history_drops_oldest_exchanges(tiny_models, paths):
    engine, events = make_engine(tiny_models["causal_lm"], paths, max_new_tokens=4)
    assert engine.load()
    limit = engine.info.context_length
    long_text = "word " * (limit // 6)
    for i in range(6):
        assert engine.handle_turn(UserTurn(f"turn {i} {long_text}")), of(events, ErrorEvent)
    assert engine.backend.last_inputs["input_ids"].shape[-1] <= limit
    assert "turn 5" in engine.chat[-2].text and "turn 0" not in engine.chat[0].text
    engine.new_chat()
    assert engine.handle_turn(UserTurn("x " * (limit * 2))) is None
    assert "too long" in of(events, ErrorEvent)[-1].message


def test_stop_from_another_thread_ends_generation_promptly(tiny_models, paths):
    engine, events = make_engine(
        tiny_models["idefics3"], paths, paced_factory(delay=0.01, min_new_tokens=400), max_new_tokens=400
    )
    assert engine.load()
    first_token = threading.Event()
    timer = {}

    def stopper():
        while not of(events, TokenChunk):
            time.sleep(0.005)
        time.sleep(0.05)
        timer["stop"] = time.monotonic()
        engine.cancel()
        first_token.set()

    threading.Thread(target=stopper, daemon=True).start()
    reply = engine.handle_turn(UserTurn("tell me a long story"))
    ended = time.monotonic()
    assert first_token.is_set()
    assert reply.stopped and 0 < reply.tokens < 400
    assert reply.text and reply.text == "".join(c.text for c in of(events, TokenChunk))
    assert ended - timer["stop"] < 0.5
    assert engine.chat[-1].text == reply.text  # the partial reply stays in the conversation
    # The engine is usable again at once.
    again = engine.handle_turn(UserTurn("short one"))
    assert again is not None and not again.stopped


def test_turn_queued_before_stop_is_dropped(tiny_models, paths):
    engine, events = make_engine(tiny_models["causal_lm"], paths, max_new_tokens=3)
    assert engine.load()
    epoch = engine.epoch
    engine.cancel()
    turn = UserTurn("queued earlier")
    assert engine.handle_turn(turn, epoch) is None
    assert engine.chat == []
    # It still ends, exactly once, so no front end waits on it ("Thinking…" forever).
    ends = [e for e in events if isinstance(e, (ReplyFinished, ErrorEvent)) and e.turn_id == turn.id]
    assert ends == [ReplyFinished(turn.id, "", stopped=True)]


def test_changing_a_setting_does_not_reload_a_model_unloaded_on_purpose(tiny_models, paths, tmp_path):
    engine, events = make_engine(tiny_models["causal_lm"], paths, max_new_tokens=3)
    assert engine.load()
    engine.unload(announce=True)
    loads = len([e for e in events if isinstance(e, StatusEvent) and e.state is State.LOADING])
    assert engine.apply_settings(engine.settings.replace(temperature=0.7, system_prompt="Be brief."))
    assert engine.backend is None  # still unloaded: the next question loads it
    assert len([e for e in events if isinstance(e, StatusEvent) and e.state is State.LOADING]) == loads
    assert engine.handle_turn(UserTurn("hello")) is not None and engine.backend is not None
    # A model that failed to load is not tried again by an unrelated change either.
    broken, broken_events = make_engine(tmp_path / "no-such-model", paths)
    assert not broken.load()
    failures = len(of(broken_events, ErrorEvent))
    broken.apply_settings(broken.settings.replace(temperature=0.3))
    assert len(of(broken_events, ErrorEvent)) == failures


def test_a_failed_switch_keeps_the_model_in_use(tiny_models, paths, tmp_path):
    """A mistyped name (found out before anything is unloaded) and a model whose weights
    cannot load (found out after): either way the model in use answers the next question,
    and ``ModelKept`` gives the front end the settings it runs with."""
    import shutil

    from assistant.events import ModelKept

    engine, events = make_engine(tiny_models["causal_lm"], paths, max_new_tokens=3)
    assert engine.load()
    backend = engine.backend
    loads = len([e for e in events if isinstance(e, StatusEvent) and e.state is State.LOADING])
    assert not engine.apply_settings(engine.settings.replace(model=str(tmp_path / "no-such-modle"), temperature=0.5))
    assert engine.backend is backend  # never unloaded
    kept = of(events, ModelKept)[-1]
    assert dict(kept.fields)["model"] == str(tiny_models["causal_lm"])
    assert "does not exist" in kept.message and "Still using" in kept.message
    assert engine.settings.model == str(tiny_models["causal_lm"]) and engine.settings.temperature == 0.5
    assert of(events, ErrorEvent)[-1].message == kept.message  # one message, once
    assert of(events, StatusEvent)[-1].state is State.READY
    assert engine.handle_turn(UserTurn("hello")) is not None
    assert len([e for e in events if isinstance(e, StatusEvent) and e.state is State.LOADING]) == loads + 1

    damaged = tmp_path / "damaged"
    shutil.copytree(tiny_models["llava"], damaged)
    for weights in damaged.glob("*.safetensors"):
        weights.write_bytes(b"not weights at all" * 10)
    assert not engine.apply_settings(engine.settings.replace(model=str(damaged)))
    assert engine.backend is not None and engine.info.model == str(tiny_models["causal_lm"])  # loaded again
    assert "Loading" in of(events, ModelKept)[-1].message and engine.settings.model == str(tiny_models["causal_lm"])
    assert of(events, StatusEvent)[-1].state is State.READY
    assert engine.handle_turn(UserTurn("hello again")) is not None
    engine.unload()


def test_bad_model_path_gives_a_clear_error(tmp_path, paths):
    engine, events = make_engine(tmp_path / "no-such-model", paths)
    assert not engine.load()
    error = of(events, ErrorEvent)[-1]
    assert error.kind is ErrorKind.MODEL_LOAD and "does not exist" in error.message
    assert of(events, StatusEvent)[-1].state is State.ERROR
    # A turn without a model reports it instead of crashing.
    assert engine.handle_turn(UserTurn("hello")) is None
    assert "No model is loaded" in of(events, ErrorEvent)[-1].message


def test_folder_that_is_not_a_model(tmp_path, paths):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "config.json").write_text('{"model_type": "bert"}')
    engine, events = make_engine(tmp_path / "notes", paths)
    assert not engine.load()
    assert "cannot chat" in of(events, ErrorEvent)[-1].message or "Could not" in of(events, ErrorEvent)[-1].message


def test_uncached_hub_model_offline(paths):
    engine, events = make_engine("SomeOrg/not-downloaded-model", paths)
    assert not engine.load()
    assert "offline" in of(events, ErrorEvent)[-1].message


def test_broken_image_is_reported_and_history_kept(tiny_models, paths, broken_image, tmp_path):
    engine, events = make_engine(tiny_models["idefics3"], paths, max_new_tokens=3)
    assert engine.load()
    assert engine.handle_turn(UserTurn("hello"))
    history = list(engine.chat)
    for bad in (ImageInput.from_path(broken_image), ImageInput.from_path(tmp_path / "missing.jpg"),
                ImageInput.from_bytes(b"not an image at all", "clip")):
        assert engine.handle_turn(UserTurn("what is this?", (bad,))) is None
        error = of(events, ErrorEvent)[-1]
        assert error.kind is ErrorKind.BAD_INPUT and bad.name in error.message
    assert engine.chat == history
    assert engine.handle_turn(UserTurn("still there?"))


def test_text_only_model_refuses_images_clearly(tiny_models, paths, image_file):
    engine, events = make_engine(tiny_models["causal_lm"], paths)
    assert engine.load()
    assert engine.handle_turn(UserTurn("look", (ImageInput.from_path(image_file),))) is None
    assert "text only" in of(events, ErrorEvent)[-1].message


def test_stream_decoder_never_splits_characters(tiny_models):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_models["idefics3"])
    text = "Tokyo 東京は晴れ 🌤️ — naïve café, 12.50 $"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    out: list[str] = []
    streamer = _StreamToCallback(tok, out.append)
    streamer.put(torch.tensor([[0]]))  # the prompt, skipped
    for i in ids:
        streamer.put(torch.tensor([i]))
    streamer.end()
    assert "".join(out) == text
    assert not any("\ufffd" in piece for piece in out)


def test_device_and_dtype_choice():
    assert pick_device("cpu").type == "cpu"
    assert pick_dtype(torch.device("cpu")) == torch.float32
    assert pick_dtype(torch.device("cpu"), "bfloat16") == torch.bfloat16
    if not torch.cuda.is_available():
        assert pick_device("auto").type in ("cpu", "mps")
        with pytest.raises(ModelLoadError, match="no CUDA GPU"):
            pick_device("cuda")


def test_settings_round_trip_and_validation(tmp_path):
    from assistant.settings import AppPaths, SettingsError, load_settings, save_settings

    paths = AppPaths.under(tmp_path / "d")
    assert paths.settings_file == (tmp_path / "d" / "config" / "settings.json").resolve()
    assert load_settings(paths).settings == Settings()  # no file yet: defaults
    custom = Settings(model="org/model", device="cpu", dtype="bfloat16", max_new_tokens=77, temperature=0.7,
                      system_prompt="Réponds en français 🙂", extra={"future_feature": {"index": 1}})
    save_settings(paths, custom)
    loaded = load_settings(paths).settings
    assert loaded == custom and loaded.extra == {"future_feature": {"index": 1}}  # other features' keys survive
    with pytest.raises(SettingsError):
        Settings(device="tpu")
    with pytest.raises(SettingsError):
        Settings(max_new_tokens=0)


@pytest.mark.parametrize("content", [
    b"{not json",
    b'["a list"]',
    b'{"model": "caf\xe9"}',  # not UTF-8
    '{"model": "x"}'.encode("utf-16"),  # UTF-16 with its byte-order mark
    b"[" * 100_000 + b"]" * 100_000,  # nested too deeply for the parser
], ids=["bad-json", "not-an-object", "latin-1", "utf-16", "deep"])
def test_unreadable_settings_file_is_kept_aside_and_the_app_starts(tmp_path, content):
    from assistant.settings import AppPaths, load_settings

    paths = AppPaths.under(tmp_path)
    paths.settings_file.parent.mkdir(parents=True)
    paths.settings_file.write_bytes(content)
    loaded = load_settings(paths)
    assert loaded.settings == Settings() and "unusable" in loaded.warning
    backups = list(paths.config.glob("settings.json.broken-*"))
    assert len(backups) == 1 and backups[0].read_bytes() == content
    assert not paths.settings_file.exists()


def test_one_bad_setting_does_not_throw_away_the_good_ones(tmp_path):
    import json

    from assistant.settings import AppPaths, load_settings, save_settings

    paths = AppPaths.under(tmp_path)
    paths.settings_file.parent.mkdir(parents=True)
    saved = {"model": "org/kept", "temperature": 0.4, "device": "tpu", "speech_rate": 9999, "future": [1]}
    paths.settings_file.write_text(json.dumps(saved))
    loaded = load_settings(paths)
    assert (loaded.settings.model, loaded.settings.temperature) == ("org/kept", 0.4)
    assert (loaded.settings.device, loaded.settings.speech_rate) == ("auto", Settings().speech_rate)
    assert loaded.settings.extra == {"future": [1]}
    assert "device" in loaded.warning and "speech_rate" in loaded.warning
    assert paths.settings_file.exists() and not list(paths.config.glob("*.broken-*"))
    save_settings(paths, loaded.settings)  # and a save leaves no temporary file behind
    assert sorted(p.name for p in paths.config.iterdir()) == ["settings.json"]


def test_text_is_cleaned_once_at_the_boundary(tiny_models, paths):
    from assistant.store.history import open_history

    store, _ = open_history(paths.data)
    try:
        for saved in (store, None):  # with a history, and with --no-history
            engine, events = make_engine(tiny_models["causal_lm"], paths, max_new_tokens=3)
            engine.store = saved
            assert engine.load()
            reply = engine.handle_turn(UserTurn("half an emoji \ud83d, a NUL\x00 and a bell\x07 here"))
            assert reply is not None and not of(events, ErrorEvent)
            assert engine.chat[0].text == "half an emoji \ufffd, a NUL and a bell here"
        stored = store.messages(store.last_conversation_id())
        assert stored[0].text == "half an emoji \ufffd, a NUL and a bell here"
    finally:
        store.close()


def test_undecodable_command_line_bytes_do_not_crash_ask(tiny_models, data_dir):
    import os

    env = dict(os.environ, HF_HUB_OFFLINE="1")
    done = subprocess.run(
        [sys.executable, str(ROOT / "main.py"), "--ask", b"caf\xe9 \xff question", "--model",
         str(tiny_models["causal_lm"]), "--max-new-tokens", "3", "--data-dir", str(data_dir)],
        capture_output=True, env=env, timeout=120,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]
    assert b"Traceback" not in done.stderr


def test_frames_that_cannot_be_used_end_the_turn_with_one_clear_error(tiny_models, paths):
    import numpy as np

    from assistant.devices.camera import Frame

    engine, events = make_engine(tiny_models["idefics3"], paths, max_new_tokens=3)
    assert engine.load()
    broken = tuple(Frame(np.zeros((12, 16, 5), np.uint8), t=i * 0.25, index=70_000 + i) for i in range(3))  # 5 channels
    turn = UserTurn("what am I holding?", frames=broken)
    assert engine.handle_turn(turn) is None  # no exception escapes
    ends = [e for e in events if isinstance(e, (ReplyFinished, ErrorEvent)) and e.turn_id == turn.id]
    assert len(ends) == 1 and ends[0].kind is ErrorKind.BAD_INPUT and "camera frames" in ends[0].message
    assert engine.handle_turn(UserTurn("still there?")) is not None


def test_a_model_with_damaged_weights_is_reported_not_answered_blank(tiny_models, paths):
    engine, events = make_engine(tiny_models["causal_lm"], paths, max_new_tokens=5)
    assert engine.load()
    with torch.no_grad():
        next(engine.backend.model.parameters()).fill_(float("nan"))  # scribbled weights
    turn = UserTurn("hello")
    assert engine.handle_turn(turn) is None
    ends = [e for e in events if isinstance(e, (ReplyFinished, ErrorEvent)) and e.turn_id == turn.id]
    assert len(ends) == 1 and ends[0].kind is ErrorKind.GENERATION and "invalid numbers" in ends[0].message
