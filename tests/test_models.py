"""Model management without a window: the cache, downloads, offline, quantization, memory.

Downloads use the real huggingface_hub against the local fake hub (tests/fake_hub.py);
nothing here touches the internet.
"""

from __future__ import annotations

import gc
import json
import threading
import time
import weakref

import pytest
import torch

from assistant.generators.base import BackendInfo
from assistant.progress import NeverCancelled, Progress
from assistant.generators.transformers_backend import TransformersBackend
from assistant.engine import Engine
from assistant.errors import Cancelled, ModelLoadError
from assistant.events import (
    ErrorEvent,
    ErrorKind,
    ReplyFinished,
    State,
    StatusEvent,
    UserTurn,
)
from assistant.models.cache import ModelStoreError, delete_cached, download, list_cached
from cli.options import build_parser, settings_from
from assistant.settings import (
    QUANTIZATIONS,
    Settings,
    SettingsError,
    load_settings,
    save_settings,
)
from tests.fake_hub import go_offline
from tests.conftest import wrapping_factory
from tests.test_download import REPO, serve_tiny_vlm, wanted_files

REPO_DIR = "models--TestOrg--tiny-vlm"



@pytest.fixture
def hub(tiny_models, monkeypatch):
    yield from serve_tiny_vlm(tiny_models, monkeypatch)


class Token:
    def __init__(self) -> None:
        self.event = threading.Event()

    @property
    def cancelled(self) -> bool:
        return self.event.is_set()


def byte_reports(reports: list[Progress]) -> list[Progress]:
    return [p for p in reports if p.done_bytes is not None and p.fraction != 1.0]


def wanted_size(hub) -> int:
    return sum(hub.files(REPO)[p].size for p in wanted_files(hub))


def of(events, kind):
    return [e for e in events if isinstance(e, kind)]


# -- downloading: progress, cancel, resume ---------------------------------------------------


def test_download_reports_bytes_speed_and_time_left(hub, paths):
    hub.throttle(bytes_per_second=400_000)  # the ~0.35 MB of wanted files take about a second
    reports: list[Progress] = []
    started = time.monotonic()
    folder = download(REPO, paths.models, reports.append, NeverCancelled())
    elapsed = time.monotonic() - started

    assert (folder / "config.json").is_file()
    total = wanted_size(hub)
    moving = byte_reports(reports)
    assert len(moving) >= 3, reports
    # The total is known from the first byte on (one listing request), not discovered file by file.
    assert all(p.total_bytes == total for p in moving), [p.total_bytes for p in moving]
    done = [p.done_bytes for p in moving]
    assert done == sorted(done) and 0 < done[0] < done[-1] < total
    speeds = [p.bytes_per_second for p in moving if p.bytes_per_second is not None]
    assert speeds and all(100_000 < s < 1_500_000 for s in speeds), speeds  # throttled at 400 KB/s
    left = [p.seconds_left for p in moving if p.seconds_left is not None]
    assert left[0] > left[-1] >= 0 and left[0] < 10, left
    assert all(0 < p.fraction < 1 for p in moving)
    assert "of " in moving[-1].detail and "/s" in moving[-1].detail and "left" in moving[-1].detail
    last = reports[-1]
    assert (last.fraction, last.done_bytes, last.total_bytes, last.seconds_left) == (1.0, total, total, 0.0)
    assert 0 < last.bytes_per_second < 1_500_000 and elapsed > 0.5

    # Downloading it again is immediate: it is already there.
    hub.reset_stats()
    again: list[Progress] = []
    assert download(REPO, paths.models, again.append, NeverCancelled()) == folder
    assert hub.requests == [] and again[-1].fraction == 1.0 and "already downloaded" in again[-1].detail


def test_cancel_then_resume_downloads_only_the_rest(hub, paths):
    hub.throttle(bytes_per_second=150_000)
    token = Token()
    reports: list[Progress] = []

    def on_progress(p: Progress) -> None:
        reports.append(p)
        if p.done_bytes and p.done_bytes > 120_000:
            token.event.set()  # as the Cancel button does, from another thread

    with pytest.raises(Cancelled):
        download(REPO, paths.models, on_progress, token)
    cut_at = max(p.done_bytes for p in byte_reports(reports))
    assert cut_at < wanted_size(hub)

    # The partial download is listed as such, with what it takes on disk.
    (partial,) = list_cached(paths.models).models
    assert partial.repo_id == REPO and not partial.complete and partial.partial_bytes > 0
    assert partial.size_bytes == sum(p.stat().st_size for p in (paths.models / REPO_DIR / "blobs").iterdir())

    # Resuming: the weights continue from where they stopped (a Range request), and the
    # progress starts from the bytes already there.
    hub.throttle(bytes_per_second=1_000_000)
    before = hub.request_count
    resumed: list[Progress] = []
    folder = download(REPO, paths.models, resumed.append, Token())
    ranged = [r for r in hub.requests[before:] if r.range and r.path.endswith("/model.safetensors")]
    assert [r.status for r in ranged] == [206], hub.requests[before:]
    assert int(ranged[0].range.removeprefix("bytes=").removesuffix("-")) > 0
    assert byte_reports(resumed)[0].done_bytes >= partial.partial_bytes
    assert resumed[-1].fraction == 1.0
    weights = hub.files(REPO)["model.safetensors"]
    assert (folder / "model.safetensors").read_bytes() == weights.read()
    (model,) = list_cached(paths.models).models
    assert model.complete and model.partial_bytes == 0


def test_download_refuses_folders_and_empty_names(paths, tmp_path):
    with pytest.raises(ModelLoadError, match="folder on this computer"):
        download(str(tmp_path), paths.models, lambda p: None, NeverCancelled())
    with pytest.raises(ModelLoadError, match="model id"):
        download("  ", paths.models, lambda p: None, NeverCancelled())


# -- the cache: sizes, delete -----------------------------------------------------------------


def test_cache_listing_sizes_match_the_files_and_delete_removes_them(hub, paths):
    assert list_cached(paths.models).models == ()  # no folder yet: an empty list, not an error
    download(REPO, paths.models, lambda p: None, NeverCancelled())
    listing = list_cached(paths.models)
    (model,) = listing.models
    blobs = list((paths.models / REPO_DIR / "blobs").iterdir())
    assert model.repo_id == REPO and model.complete and model.partial_bytes == 0
    assert model.size_bytes == sum(b.stat().st_size for b in blobs) == wanted_size(hub)
    assert model.files == len(wanted_files(hub))
    assert listing.folder == paths.models and listing.size_bytes == model.size_bytes

    freed = delete_cached(paths.models, REPO)
    assert freed >= model.size_bytes
    assert not (paths.models / REPO_DIR).exists()
    assert list_cached(paths.models).models == ()
    with pytest.raises(ModelStoreError, match="is not in the model folder"):
        delete_cached(paths.models, REPO)
    with pytest.raises(ModelStoreError):
        delete_cached(paths.models, "../../etc")


# -- offline ---------------------------------------------------------------------------------


def test_offline_setting_refuses_to_download_but_loads_from_the_cache(hub, paths):
    events: list = []
    engine = Engine(Settings(model=REPO, device="cpu", offline=True, max_new_tokens=3), paths, events.append)
    assert not engine.load()
    (error,) = of(events, ErrorEvent)
    assert error.kind is ErrorKind.MODEL_LOAD
    assert "not downloaded yet" in error.message and "offline" in error.message
    assert hub.requests == []  # the hub is up, and was not asked anything
    with pytest.raises(ModelLoadError, match="offline"):
        download(REPO, paths.models, lambda p: None, NeverCancelled(), offline=True)
    assert hub.requests == []

    download(REPO, paths.models, lambda p: None, NeverCancelled())
    hub.reset_stats()
    events.clear()
    assert engine.load(), of(events, ErrorEvent)
    assert isinstance(engine.handle_turn(UserTurn("hi")), ReplyFinished)
    assert hub.requests == []


def test_offline_environment_variable_is_honoured_too(hub, paths, monkeypatch):
    go_offline(monkeypatch)
    with pytest.raises(ModelLoadError, match="HF_HUB_OFFLINE"):
        download(REPO, paths.models, lambda p: None, NeverCancelled())
    assert hub.requests == []


# -- settings ---------------------------------------------------------------------------------


def test_new_settings_round_trip_and_are_validated(paths):
    settings = Settings(model="some/model", device="cpu", dtype="bfloat16", quantization="4bit", offline=True)
    save_settings(paths, settings)
    on_disk = json.loads(paths.settings_file.read_text())
    assert on_disk["quantization"] == "4bit" and on_disk["offline"] is True
    loaded = load_settings(paths)
    assert loaded.warning is None and loaded.settings == settings
    assert Settings().quantization == "none" and Settings().offline is False
    assert QUANTIZATIONS == ("none", "8bit", "4bit")
    with pytest.raises(SettingsError, match="quantization"):
        Settings(quantization="3bit")
    with pytest.raises(SettingsError, match="offline"):
        Settings(offline="yes")
    assert Settings(quantization="8bit").model_key() != Settings().model_key()
    assert Settings(offline=True).model_key() == Settings().model_key()  # no reload needed


def test_command_line_offline_and_quantization():
    parser = build_parser()
    args = parser.parse_args(["--offline", "--quantization", "8bit"])
    result = settings_from(args, Settings())
    assert result.offline is True and result.quantization == "8bit"
    plain = settings_from(parser.parse_args([]), Settings(offline=True, quantization="4bit"))
    assert plain.offline is True and plain.quantization == "4bit"  # no flag: the saved choice stays
    with pytest.raises(SystemExit):
        parser.parse_args(["--quantization", "2bit"])


# -- quantization ------------------------------------------------------------------------------


@pytest.mark.parametrize("bits", ["8bit", "4bit"])
def test_quantization_without_cuda_is_a_clear_error(bits, tiny_models, paths, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    events: list = []
    engine = Engine(Settings(model=str(tiny_models["causal_lm"]), quantization=bits), paths, events.append)
    assert not engine.load()
    (error,) = of(events, ErrorEvent)
    assert error.kind is ErrorKind.MODEL_LOAD
    assert "CUDA GPU" in error.message and "no CUDA GPU is available" in error.message
    assert "quantization 'none'" in error.message
    assert engine.backend is None and of(events, StatusEvent)[-1].state is State.ERROR


def test_quantization_on_the_cpu_device_says_so_before_downloading(hub, paths, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a GPU, but the user chose the CPU
    events: list = []
    engine = Engine(Settings(model=REPO, device="cpu", quantization="4bit"), paths, events.append)
    assert not engine.load()
    (error,) = of(events, ErrorEvent)
    assert "device is set to 'cpu'" in error.message and "device 'cuda'" in error.message
    assert hub.requests == []  # said before a (long) download


def test_quantization_without_bitsandbytes_is_a_clear_error(tiny_models, monkeypatch):
    import importlib.util

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "bitsandbytes" else real_find_spec(name, *a)
    )
    backend = TransformersBackend(str(tiny_models["causal_lm"]), "cuda", "float16", quantization="8bit")
    with pytest.raises(ModelLoadError, match="bitsandbytes package, which is not installed"):
        backend.load(lambda p: None, NeverCancelled())


@pytest.mark.parametrize("bits", ["8bit", "4bit"])
def test_quantization_with_cuda_and_bitsandbytes_loads_through_bitsandbytes(bits, tiny_models, monkeypatch):
    """Where both are there, the weights are loaded with a BitsAndBytesConfig on the GPU."""
    import importlib.util
    from importlib.machinery import ModuleSpec

    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec",
        lambda name, *a: ModuleSpec("bitsandbytes", None) if name == "bitsandbytes" else real_find_spec(name, *a),
    )
    seen: dict = {}

    class Reached(Exception):
        pass

    def from_pretrained(folder, **kwargs):
        seen.update(kwargs)
        raise Reached("stop before touching a GPU")

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", from_pretrained)
    backend = TransformersBackend(str(tiny_models["causal_lm"]), "auto", quantization=bits)
    with pytest.raises(ModelLoadError, match="stop before touching a GPU"):
        backend.load(lambda p: None, NeverCancelled())
    config = seen["quantization_config"]
    assert isinstance(config, BitsAndBytesConfig)
    assert (config.load_in_8bit, config.load_in_4bit) == (bits == "8bit", bits == "4bit")
    if bits == "4bit":
        assert config.bnb_4bit_compute_dtype == torch.bfloat16 and config.bnb_4bit_quant_type == "nf4"
    assert seen["device_map"] == {"": 0} and seen["dtype"] == torch.bfloat16


# -- out of memory -------------------------------------------------------------------------------


def oom() -> torch.cuda.OutOfMemoryError:
    return torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 7.79 GiB total)")


def assert_offers_cpu_or_smaller(message: str) -> None:
    assert "ran out of memory" in message and "'cpu'" in message and "smaller model" in message
    assert "\n" not in message and "Tried to allocate" not in message


def test_out_of_memory_while_loading_offers_cpu_or_a_smaller_model(tiny_models, paths, monkeypatch):
    from transformers import AutoModelForCausalLM

    def from_pretrained(*args, **kwargs):
        raise oom()

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", from_pretrained)
    events: list = []
    engine = Engine(Settings(model=str(tiny_models["causal_lm"]), device="cpu"), paths, events.append)
    assert not engine.load()
    (error,) = of(events, ErrorEvent)
    assert error.kind is ErrorKind.MODEL_LOAD
    assert_offers_cpu_or_smaller(error.message)
    assert engine.backend is None


def test_out_of_memory_while_answering_offers_cpu_or_a_smaller_model(tiny_models, paths):
    class GreedyModel:
        def __init__(self, model):
            self._model = model

        def __getattr__(self, name):
            return getattr(self._model, name)

        def generate(self, **kwargs):
            raise oom()

    factory = wrapping_factory(GreedyModel)

    events: list = []
    engine = Engine(Settings(model=str(tiny_models["causal_lm"]), device="cpu"), paths, events.append, factory)
    assert engine.load()
    assert engine.handle_turn(UserTurn("hello")) is None
    (error,) = of(events, ErrorEvent)
    assert error.kind is ErrorKind.GENERATION and error.turn_id is not None
    assert_offers_cpu_or_smaller(error.message)
    assert engine.backend is not None  # the model stays: a shorter chat may still fit


def test_out_of_memory_from_any_backend_gets_the_same_message(paths):
    class Starved:
        def load(self, progress, cancel):
            return BackendInfo("big/model", "cuda:0", "float16", False)

        def generate(self, *args):
            raise oom()

        def unload(self):
            pass

    events: list = []
    engine = Engine(Settings(model="big/model"), paths, events.append, lambda s, p: Starved())
    assert engine.load()
    assert engine.handle_turn(UserTurn("hello")) is None
    assert_offers_cpu_or_smaller(of(events, ErrorEvent)[0].message)


# -- memory: shown, and freed on unload or switch ---------------------------------------------------


def test_memory_taken_is_reported(tiny_models, paths):
    events: list = []
    engine = Engine(Settings(model=str(tiny_models["causal_lm"]), device="cpu"), paths, events.append)
    assert engine.load()
    model = engine.backend.model
    expected = sum(p.numel() * p.element_size() for p in model.parameters())
    expected += sum(b.numel() * b.element_size() for b in model.buffers())
    assert engine.info.memory_bytes == expected > 0
    ready = of(events, StatusEvent)[-1]
    assert ready.state is State.READY and ready.memory_bytes == expected
    assert ready.dtype == "float32" and ready.quantization == "none"


def test_unload_and_switch_release_the_old_model(tiny_models, paths):
    events: list = []
    engine = Engine(Settings(model=str(tiny_models["idefics3"]), device="cpu", max_new_tokens=3), paths, events.append)
    assert engine.load()
    assert isinstance(engine.handle_turn(UserTurn("hi")), ReplyFinished)
    first = weakref.ref(engine.backend.model)
    first_backend = weakref.ref(engine.backend)

    # Switching models: the old one is garbage before the new one is loaded.
    assert engine.apply_settings(engine.settings.replace(model=str(tiny_models["causal_lm"])))
    gc.collect()
    assert first() is None and first_backend() is None
    second = weakref.ref(engine.backend.model)
    assert isinstance(engine.handle_turn(UserTurn("hi")), ReplyFinished)

    # Unloading, as the Models page's button does.
    events.clear()
    engine.unload(announce=True)
    gc.collect()
    assert second() is None and engine.backend is None and engine.info is None
    (status,) = of(events, StatusEvent)
    assert status.state is State.UNLOADED and "unloaded" in status.detail and status.memory_bytes is None
    # The next question loads it again.
    assert isinstance(engine.handle_turn(UserTurn("hi")), ReplyFinished)


def test_changing_quantization_reloads_but_offline_does_not(tiny_models, paths):
    loads: list = []

    def factory(settings, paths_):
        loads.append(settings)
        return TransformersBackend(settings.model, settings.device, settings.dtype, cache_dir=paths_.models,
                                   quantization=settings.quantization, offline=settings.offline)

    engine = Engine(Settings(model=str(tiny_models["causal_lm"]), device="cpu"), paths, lambda e: None, factory)
    assert engine.load()
    assert engine.apply_settings(engine.settings.replace(offline=True)) and len(loads) == 1
    assert not engine.apply_settings(engine.settings.replace(quantization="8bit"))  # reloads (and fails: no CUDA)
    assert len(loads) == 2 and loads[-1].quantization == "8bit"
