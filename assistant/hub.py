"""Finding a model: a local folder, the Hugging Face cache, or a download with progress."""

from __future__ import annotations

import importlib
import io
import json
import logging
import os
import threading
import time
from pathlib import Path

from tqdm.std import tqdm

from .backends.base import CancelToken, Progress, ProgressCallback
from .errors import Cancelled, ModelLoadError

log = logging.getLogger(__name__)

# Only what transformers needs to run the model: no ONNX/GGUF/PyTorch-pickle copies.
ALLOW_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model", "*.jinja", "*.tiktoken"]
# Speech recognition models come in either format: transformers, or CTranslate2 (faster-whisper)
# whose weights are one ``model.bin`` (a PyTorch pickle is ``pytorch_model.bin``: not matched).
ASR_ALLOW_PATTERNS = [*ALLOW_PATTERNS, "model.bin"]


def looks_like_path(model: str) -> bool:
    """A hub id is ``name`` or ``owner/name``; anything else is meant as a folder."""
    return (
        model.startswith((".", "~", os.sep))
        or (os.altsep is not None and os.altsep in model)
        or model.count("/") > 1
        or (len(model) > 1 and model[1] == ":")  # C:\...
        or os.path.exists(model)
    )


def offline_mode() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _complete(folder: Path) -> bool:
    """A usable snapshot has its config and every weight file it names."""
    if not (folder / "config.json").is_file():
        return False
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            shards = set(json.loads(index.read_text())["weight_map"].values())
        except (OSError, ValueError, KeyError):
            return False
        return all((folder / s).is_file() for s in shards)
    return any(folder.glob("*.safetensors")) or (folder / "model.bin").is_file()  # model.bin: CTranslate2


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


class _DownloadMeter:
    """Collects the byte counters of huggingface_hub's progress bars into one figure."""

    def __init__(self, model: str, progress: ProgressCallback, cancel: CancelToken) -> None:
        self.model = model
        self.progress = progress
        self.cancel = cancel
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self._last_report = 0.0
        self._fraction = 0.0

    def tqdm_class(self) -> type:
        meter = self

        class _Bar(tqdm):  # huggingface_hub drives it like any tqdm; it prints nowhere
            def __init__(self, *args, **kwargs):
                kwargs.pop("name", None)
                kwargs["file"] = io.StringIO()
                kwargs["disable"] = False
                super().__init__(*args, **kwargs)

            def update(self, n=1):
                if meter.cancel.cancelled:
                    raise Cancelled("Download cancelled.")
                result = super().update(n)
                if self.unit == "B":
                    meter.report(self.n, self.total)
                return result

        return _Bar

    def report(self, done: float, total: float | None) -> None:
        # Called from huggingface_hub's worker threads, by two bars (network and disk bytes)
        # whose total grows as each file starts (8 at a time): serialize, never go backwards,
        # and leave 100 % to resolve_model, once every file is in.
        with self._lock:
            now = time.monotonic()
            if now - self._last_report < 0.2:
                return
            self._last_report = now
            elapsed = max(now - self.started, 1e-6)
            speed = done / elapsed
            if total:
                self._fraction = max(self._fraction, min(done / total, 0.99))
                left = (total - done) / speed if speed > 0 else float("inf")
                eta = f", {left:.0f} s left" if left != float("inf") else ""
                detail = f"Downloading {self.model}: {human_bytes(done)} of {human_bytes(total)} ({human_bytes(speed)}/s{eta})"
                self.progress(Progress("download", self._fraction, detail))
            else:
                self.progress(Progress("download", None, f"Downloading {self.model}: {human_bytes(done)}"))

    def finished(self) -> None:
        self.progress(Progress("download", 1.0, f"Downloading {self.model}: done"))


def _network_errors() -> tuple[type[BaseException], ...]:
    """Transport errors of the HTTP client huggingface_hub uses (httpx2 for 2.x, httpx for 1.x)."""
    found = []
    for module, name in (("httpx2", "TransportError"), ("httpx", "TransportError")):
        try:
            found.append(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError):
            pass
    return tuple(found)


def resolve_model(
    model: str,
    cache_dir: Path | None,
    progress: ProgressCallback,
    cancel: CancelToken,
    allow_patterns: list[str] = ALLOW_PATTERNS,
) -> Path:
    """Return a local folder holding ``model``, downloading it on first use.

    A folder is used as it is.  A hub id is taken from the cache when complete
    (so later runs work offline) and downloaded otherwise, with progress.
    """
    if looks_like_path(model):
        folder = Path(model).expanduser()
        if not folder.is_dir():
            raise ModelLoadError(f"Model folder '{model}' does not exist.")
        if not (folder / "config.json").is_file():
            raise ModelLoadError(f"'{model}' is not a model folder (it has no config.json).")
        return folder

    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    cache = str(cache_dir) if cache_dir else None
    try:
        cached = Path(snapshot_download(model, cache_dir=cache, local_files_only=True, allow_patterns=allow_patterns))
        if _complete(cached):
            return cached
    except (LocalEntryNotFoundError, FileNotFoundError, OSError, ValueError):
        pass
    if offline_mode():
        raise ModelLoadError(
            f"Model '{model}' is not downloaded yet and offline mode is on (HF_HUB_OFFLINE); "
            "connect to the internet once or choose a local model folder."
        )
    from huggingface_hub import constants

    # Progress and cancellation are checked once per chunk: keep chunks at 1 MB
    # (the library's default is 10 MB, which makes Cancel slow on a slow line).
    constants.DOWNLOAD_CHUNK_SIZE = min(constants.DOWNLOAD_CHUNK_SIZE, 1 << 20)
    meter = _DownloadMeter(model, progress, cancel)
    progress(Progress("download", None, f"Downloading {model}…"))
    try:
        path = snapshot_download(
            model, cache_dir=cache, allow_patterns=allow_patterns, tqdm_class=meter.tqdm_class()
        )
    except Cancelled:
        raise
    except GatedRepoError:
        raise ModelLoadError(
            f"Model '{model}' is gated on the Hugging Face hub: accept its licence there and log in "
            "with `hf auth login`."
        ) from None
    except RepositoryNotFoundError:
        raise ModelLoadError(f"Model '{model}' was not found on the Hugging Face hub; check the name.") from None
    except LocalEntryNotFoundError:
        raise ModelLoadError(
            f"Model '{model}' could not be downloaded (no connection to the Hugging Face hub) "
            "and it is not in the cache."
        ) from None
    except HfHubHTTPError as exc:
        raise ModelLoadError(f"Downloading model '{model}' failed: {str(exc).splitlines()[0]}") from None
    except OSError as exc:
        reason = exc.strerror or str(exc).splitlines()[0]
        raise ModelLoadError(f"Downloading model '{model}' failed: {reason}") from None
    except _network_errors() as exc:
        reason = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise ModelLoadError(
            f"Downloading model '{model}' failed: the connection to the Hugging Face hub was lost ({reason}). "
            "Check the connection and try again."
        ) from None
    meter.finished()
    folder = Path(path)
    if not _complete(folder):
        raise ModelLoadError(f"Model '{model}' has no safetensors weights that this app can load.")
    return folder
