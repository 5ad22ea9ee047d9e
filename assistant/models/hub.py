"""Finding a model: a local folder, the Hugging Face cache, or a download with progress."""

from __future__ import annotations

import hashlib
import importlib
import io
import json
import logging
import os
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tqdm.std import tqdm

from assistant.progress import CancelToken, Progress, ProgressCallback
from assistant.errors import Cancelled, ModelLoadError

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


def offline_mode(offline: bool = False) -> bool:
    """Offline when the setting says so, or when ``HF_HUB_OFFLINE`` is set in the environment."""
    return offline or offline_from_environment()


def offline_from_environment() -> bool:
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


def human_duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def cache_folder(cache_dir: Path | None) -> Path:
    """The Hugging Face cache the app uses: its own folder, or the shared default one."""
    if cache_dir is not None:
        return Path(cache_dir)
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def repo_folder(model: str, cache_dir: Path | None) -> Path:
    return cache_folder(cache_dir) / ("models--" + model.replace("/", "--"))


class _DownloadMeter:
    """Turns huggingface_hub's progress bars into one byte count, speed and time left.

    ``snapshot_download`` drives two byte bars: one for the bytes that come over the
    network (``Downloading bytes``) and one for the bytes in the cache files
    (resumed parts included).  Files already complete in the cache are skipped
    without a bar: ``already`` counts them.  ``total`` is the size of every wanted
    file when it could be listed beforehand; otherwise the bars' totals, which grow
    as files start.  Speed is measured on network bytes over the last few seconds.
    """

    WINDOW_S = 3.0
    REPORT_EVERY_S = 0.2
    MIN_SPAN_S = 0.4  # a speed measured over less is noise

    def __init__(
        self,
        model: str,
        progress: ProgressCallback,
        cancel: CancelToken,
        total: int | None = None,
        already: int = 0,
    ) -> None:
        self.model = model
        self.progress = progress
        self.cancel = cancel
        self.started = time.monotonic()
        self.expected_total = total
        self.already = already
        self._lock = threading.Lock()
        self._last_report = 0.0
        self._fraction = 0.0
        self._disk = 0
        self._disk_total = 0
        self._net: int | None = None  # None until the network bar reports
        self._own = 0  # bytes fetched by _fetch_resumable (weights), outside snapshot_download's bars
        # (time, bytes received) over the last WINDOW_S: the speed, from the first byte on
        # (connecting and the first requests are not "slow downloading").
        self._samples: deque[tuple[float, int]] = deque()

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
                    meter.bar_moved(str(self.desc or ""), self.n, self.total)
                return result

        return _Bar

    def own_bytes(self, n: int) -> None:
        """Bytes of a file fetched by ``_fetch_resumable``."""
        if self.cancel.cancelled:
            raise Cancelled("Download cancelled.")
        with self._lock:
            self._own += n
            self._moved()

    def bar_moved(self, desc: str, n: float, total: float | None) -> None:
        # Called from huggingface_hub's worker threads (8 files at a time): serialize.
        with self._lock:
            if desc.startswith("Downloading bytes"):
                self._net = int(n)
            else:
                self._disk, self._disk_total = int(n), int(total or 0)
            self._moved()

    def _sent(self) -> int:
        return self._own + (self._net if self._net is not None else self._disk)

    def _moved(self) -> None:  # with the lock held
        now = time.monotonic()
        sent = self._sent()
        self._samples.append((now, sent))
        while len(self._samples) > 2 and now - self._samples[1][0] >= self.WINDOW_S:
            self._samples.popleft()
        if now - self._last_report < self.REPORT_EVERY_S:
            return
        self._last_report = now
        self.progress(self._snapshot(now, sent))

    def _totals(self) -> tuple[int, int | None]:
        done = self.already + self._own + self._disk
        total = max(self.expected_total or 0, self.already + self._own + self._disk_total, done) or None
        return done, total

    def _snapshot(self, now: float, sent: int) -> Progress:
        done, total = self._totals()
        t0, sent0 = self._samples[0]
        speed = (sent - sent0) / (now - t0) if now - t0 >= self.MIN_SPAN_S else None
        left = (total - done) / speed if total and speed else None
        if total:
            # Never backwards; 100 % is left to finished(), once every file is in.
            self._fraction = max(self._fraction, min(done / total, 0.99))
        detail = f"Downloading {self.model}: {human_bytes(done)}"
        if total:
            detail += f" of {human_bytes(total)}"
        if speed is not None:
            detail += f" ({human_bytes(speed)}/s"
            detail += f", {human_duration(left)} left)" if left is not None else ")"
        return Progress(
            "download",
            self._fraction if total else None,
            detail,
            done_bytes=done,
            total_bytes=total,
            bytes_per_second=speed,
            seconds_left=left,
        )

    def finished(self) -> None:
        with self._lock:
            done, total = self._totals()
            elapsed = max(time.monotonic() - self.started, 1e-6)
            sent = self._sent()
        size = max(done, total or 0)
        self.progress(
            Progress(
                "download",
                1.0,
                f"Downloading {self.model}: done ({human_bytes(size)})",
                done_bytes=size,
                total_bytes=size,
                bytes_per_second=sent / elapsed,
                seconds_left=0.0,
            )
        )


@dataclass(frozen=True)
class _Planned:
    total: int | None  # bytes of every wanted file (None: the listing failed)
    already: int  # of them, bytes already in the cache (complete files and resumable parts)
    resumable: tuple[Any, ...]  # LFS files (the weights) still to fetch, resumably (RepoFile entries)


def _partial_path(blobs: Path, etag: str) -> Path:
    """Where ``_fetch_resumable`` keeps a file being downloaded, across cancels and restarts."""
    return blobs / f"{etag}.incomplete"


def _plan_download(model: str, cache_dir: Path | None, allow_patterns: list[str] = ALLOW_PATTERNS) -> _Planned:
    """What the download involves, from one listing request.

    The total makes the progress (and the time left) right from the first report.
    Any failure gives an empty plan: ``snapshot_download`` then does all the work
    and reports the real problem, and the bars' own totals are used.
    """
    try:
        from huggingface_hub import HfApi
        from huggingface_hub.hf_api import RepoFile
        from huggingface_hub.utils import filter_repo_objects

        entries = [e for e in HfApi().list_repo_tree(model, recursive=True) if isinstance(e, RepoFile)]
        wanted = list(filter_repo_objects(entries, allow_patterns=allow_patterns, key=lambda e: e.path))
    except Exception as exc:  # noqa: BLE001 - only a nicer progress figure depends on it
        log.debug("could not list %s before downloading: %s", model, exc)
        return _Planned(None, 0, ())
    blobs = repo_folder(model, cache_dir) / "blobs"
    already = 0
    resumable = []
    for entry in wanted:
        etag = entry.lfs.sha256 if entry.lfs else entry.blob_id
        if (blobs / etag).is_file():
            already += entry.size
        elif entry.lfs:
            resumable.append(entry)
            partial = _partial_path(blobs, etag)
            if partial.is_file():
                already += min(partial.stat().st_size, entry.size)
    return _Planned(sum(e.size for e in wanted), already, tuple(resumable))


def _fetch_resumable(model: str, entry: Any, cache_dir: Path | None, meter: _DownloadMeter) -> None:
    """Download one large file into the cache's blobs, continuing a partial file left by a cancel.

    huggingface_hub resumes a dropped connection within one call, but deletes the
    partial file when the call ends early (a cancel, a crash).  Here the part stays
    under a fixed name, and the next try asks only for the rest (an HTTP Range
    request).  ``snapshot_download`` then finds the blob and only links it.
    """
    from huggingface_hub import get_hf_file_metadata, hf_hub_url
    from huggingface_hub.file_download import http_get
    from huggingface_hub.utils import WeakFileLock, build_hf_headers

    folder = repo_folder(model, cache_dir)
    blobs = folder / "blobs"
    blobs.mkdir(parents=True, exist_ok=True)
    url = hf_hub_url(model, entry.path)
    meta = get_hf_file_metadata(url, retry_on_errors=True)
    etag = meta.etag or entry.lfs.sha256
    blob = blobs / etag
    partial = _partial_path(blobs, etag)
    lock = cache_folder(cache_dir) / ".locks" / folder.name / f"{etag}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    headers = build_hf_headers()
    location = meta.location or url
    if urlsplit(location).netloc != urlsplit(url).netloc:
        headers.pop("authorization", None)  # as huggingface_hub does: the token stays with the hub
    size = meta.size if meta.size is not None else entry.size
    meter_bar = _OwnBar.bound(meter)
    with WeakFileLock(lock):
        if blob.is_file():
            return
        have = partial.stat().st_size if partial.is_file() else 0
        if have > size:  # not this file: start again
            partial.unlink()
            have = 0
        if have < size:
            with open(partial, "ab") as f:
                http_get(location, f, resume_size=have, headers=headers, expected_size=size, tqdm_class=meter_bar)
        if partial.stat().st_size != size:
            partial.unlink(missing_ok=True)
            raise OSError(f"{entry.path} arrived with the wrong size; it will be downloaded again")
        if entry.lfs and _sha256(partial) != entry.lfs.sha256:
            partial.unlink(missing_ok=True)
            raise OSError(f"{entry.path} arrived damaged (checksum mismatch); it will be downloaded again")
        os.replace(partial, blob)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class _OwnBar:
    """The progress bar ``http_get`` drives for ``_fetch_resumable``: bytes go to the meter.

    ``initial`` (the resumed part) is not counted again: the plan counted it already.
    """

    meter: _DownloadMeter

    @classmethod
    def bound(cls, meter: _DownloadMeter) -> type:
        return type("_BoundOwnBar", (cls,), {"meter": meter})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __enter__(self):  # returns self (typing it would need typing.Self)
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def close(self) -> None:
        pass

    def update(self, n: float | None = 1) -> None:
        self.meter.own_bytes(int(n or 0))

    def set_postfix_str(self, *args: Any, **kwargs: Any) -> None:
        pass


def _network_errors() -> tuple[type[BaseException], ...]:
    """Transport errors of the HTTP client huggingface_hub uses (httpx2 for 2.x, httpx for 1.x)."""
    found = []
    for module, name in (("httpx2", "TransportError"), ("httpx", "TransportError")):
        try:
            found.append(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError):
            pass
    return tuple(found)


HUB_PROBE_TIMEOUT_S = 5.0


def hub_unreachable(model: str, timeout: float = HUB_PROBE_TIMEOUT_S) -> str | None:
    """Why the Hugging Face hub cannot be reached, or None when it answers (with any status).

    One request, no retries: the library's own calls retry a failed connection five
    times over about 25 s, which is how long a first run without a network sat on
    "Downloading…" before saying so.  A hub that answers at all is left to them.
    """
    from huggingface_hub import constants
    from huggingface_hub.utils import get_session

    try:
        get_session().head(f"{constants.ENDPOINT}/api/models/{model}", timeout=timeout, follow_redirects=False)
    except _network_errors() as exc:
        return (str(exc).splitlines() or [type(exc).__name__])[0] or type(exc).__name__
    except Exception as exc:  # noqa: BLE001 - anything else is left to the download to report
        log.debug("hub probe for %s: %s", model, exc)
    return None


def cached_snapshot(model: str, cache_dir: Path | None, allow_patterns: list[str] = ALLOW_PATTERNS) -> Path | None:
    """The complete cached snapshot of hub id ``model``, or None (never touches the network)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    cache = str(cache_dir) if cache_dir else None
    try:
        cached = Path(snapshot_download(model, cache_dir=cache, local_files_only=True, allow_patterns=allow_patterns))
    except (LocalEntryNotFoundError, FileNotFoundError, OSError, ValueError):
        return None
    return cached if _complete(cached) else None


def resolve_model(
    model: str,
    cache_dir: Path | None,
    progress: ProgressCallback,
    cancel: CancelToken,
    allow_patterns: list[str] = ALLOW_PATTERNS,
    offline: bool = False,
) -> Path:
    """Return a local folder holding ``model``, downloading it on first use.

    A folder is used as it is.  A hub id is taken from the cache when complete
    (so later runs work offline) and downloaded otherwise, with progress, unless
    ``offline`` (the setting) or ``HF_HUB_OFFLINE`` (the environment) says not to
    contact the hub.  An interrupted download resumes where it stopped.
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

    cached = cached_snapshot(model, cache_dir, allow_patterns)
    if cached is not None:
        return cached
    if offline_mode(offline):
        switch = "the offline switch is on" if offline else "offline mode is on (HF_HUB_OFFLINE)"
        raise ModelLoadError(
            f"Model '{model}' is not downloaded yet and {switch}; turn offline mode off to download it, "
            "or choose a downloaded model or a local model folder."
        )
    from huggingface_hub import constants

    # Progress and cancellation are checked once per chunk: keep chunks at 1 MB
    # (the library's default is 10 MB, which makes Cancel slow on a slow line).
    constants.DOWNLOAD_CHUNK_SIZE = min(constants.DOWNLOAD_CHUNK_SIZE, 1 << 20)
    cache = str(cache_dir) if cache_dir else None
    progress(Progress("download", None, f"Downloading {model}…"))
    unreachable = hub_unreachable(model)
    if unreachable is not None:
        raise ModelLoadError(
            f"Model '{model}' could not be downloaded: the Hugging Face hub cannot be reached ({unreachable}), "
            "and it is not downloaded yet. Check the connection, or choose a downloaded model or a local model folder."
        )
    if cancel.cancelled:
        raise Cancelled("Download cancelled.")
    plan = _plan_download(model, cache_dir, allow_patterns)
    if cancel.cancelled:
        raise Cancelled("Download cancelled.")
    meter = _DownloadMeter(model, progress, cancel, plan.total, plan.already)
    try:
        for entry in plan.resumable:  # the weights first, resumably; then the rest, 8 at a time
            _fetch_resumable(model, entry, cache_dir, meter)
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
