"""Model files off the GUI thread: the cache listing, downloads with progress, deletes."""

from __future__ import annotations

import logging
import threading

from PySide6.QtCore import QObject, Signal, Slot, QTimer

from assistant.progress import CancelFlag
from assistant.settings import AppPaths
from ui.workers import new_thread

log = logging.getLogger(__name__)


class _ModelsWorker(QObject):
    """Lives in the models thread: cache scans, deletes and downloads (one at a time)."""

    listed = Signal(object)  # CacheListing
    capabilities = Signal(object)  # dict: what this computer can do (CUDA, bitsandbytes, MPS)
    downloaded = Signal(str, str)  # model, folder
    download_failed = Signal(str, str, bool)  # model, message, cancelled
    deleted = Signal(str, int)  # model, bytes freed
    failed = Signal(str)  # a scan or delete problem, one line
    # model, downloaded (or a folder), approximate bytes (0: unknown), speech, why it cannot be fetched now
    checked = Signal(str, bool, object, bool, str)

    def __init__(self, cache_dir, progress_sink) -> None:
        super().__init__()
        self.cache_dir = cache_dir
        self.progress_sink = progress_sink

    @Slot()
    def scan(self) -> None:
        from assistant.errors import AssistantError
        from assistant.models.cache import list_cached

        try:
            self.listed.emit(list_cached(self.cache_dir))
        except AssistantError as exc:
            self.failed.emit(str(exc))

    @Slot()
    def probe(self) -> None:
        """Importing torch and asking for CUDA takes a while: never on the GUI thread."""
        import importlib.util

        import torch

        from assistant.devices.compute import mps_available

        from assistant.models.recommended import machine_memory

        cuda = torch.cuda.is_available()
        self.capabilities.emit({
            "cuda": cuda,
            "cuda_name": torch.cuda.get_device_name(0) if cuda else "",
            "mps": mps_available(),
            "bitsandbytes": importlib.util.find_spec("bitsandbytes") is not None,
            **machine_memory(),  # ram_bytes, gpu_bytes: which recommended models fit
        })

    @Slot(str, str, bool, bool)
    def check(self, model: str, device: str, speech: bool, offline: bool) -> None:
        """Is ``model`` downloaded (``speech``: the Whisper model; "" is the default for ``device``),
        and if not, why it cannot be fetched now: offline, or the hub cannot be reached ("" when it
        can).  Picking the default speech model imports torch, and the hub is asked once (no retries):
        here, never on the GUI thread."""
        from assistant.encoders.asr import default_asr_model
        from assistant.models.hub import (
            ALLOW_PATTERNS,
            ASR_ALLOW_PATTERNS,
            cached_snapshot,
            hub_unreachable,
            looks_like_path,
            offline_from_environment,
        )
        from assistant.models.recommended import find, speech_download_bytes

        model = model.strip() or (default_asr_model(device) if speech else "")
        patterns = ASR_ALLOW_PATTERNS if speech else ALLOW_PATTERNS
        ready = not model or looks_like_path(model) or cached_snapshot(model, self.cache_dir, patterns) is not None
        why = ""
        if not ready and offline_from_environment():
            why = "offline mode is on (HF_HUB_OFFLINE)"
        elif not ready and offline:
            why = "offline mode is on"
        elif not ready:
            unreachable = hub_unreachable(model)
            why = f"the Hugging Face hub cannot be reached ({unreachable})" if unreachable else ""
        entry = find(model)
        size = speech_download_bytes(model) if speech else (entry.download_bytes if entry else None)
        self.checked.emit(model, ready, size or 0, speech, why)

    @Slot(str, object, bool, bool)
    def download(self, model: str, flag: CancelFlag, offline: bool, speech: bool) -> None:
        from assistant.errors import AssistantError, Cancelled
        from assistant.models.cache import download
        from assistant.models.hub import ALLOW_PATTERNS, ASR_ALLOW_PATTERNS

        patterns = ASR_ALLOW_PATTERNS if speech else ALLOW_PATTERNS
        try:
            folder = download(model, self.cache_dir, self.progress_sink, flag, offline=offline,
                              allow_patterns=patterns)
        except Cancelled:
            self.download_failed.emit(model, f"Download of {model} cancelled; Download again continues where it stopped.", True)
        except AssistantError as exc:
            self.download_failed.emit(model, str(exc), False)
        except Exception as exc:  # noqa: BLE001 - a failed download must never end the thread
            log.exception("download failed")
            self.download_failed.emit(model, f"Downloading '{model}' failed: {exc}", False)
        else:
            self.downloaded.emit(model, str(folder))
        self.scan()

    @Slot(str)
    def delete(self, repo_id: str) -> None:
        from assistant.models.cache import ModelStoreError, delete_cached

        try:
            self.deleted.emit(repo_id, delete_cached(self.cache_dir, repo_id))
        except ModelStoreError as exc:
            self.failed.emit(str(exc))
        self.scan()


class ModelsBridge(QObject):
    """Model files off the GUI thread: list the cache, download (with progress), delete.

    Its own thread, so a download never waits behind a reply (and a reply never waits
    behind a download).  Download progress comes from huggingface_hub's worker threads:
    only the newest report is kept, and a GUI-thread timer shows it (no Qt object is
    touched from a foreign thread).
    """

    listed = Signal(object)  # CacheListing
    capabilities = Signal(object)  # dict
    download_progress = Signal(object)  # Progress
    download_finished = Signal(str, str)  # model, folder
    download_failed = Signal(str, str, bool)  # model, message, cancelled
    deleted = Signal(str, int)
    error = Signal(str)
    downloading_changed = Signal(bool)
    checked = Signal(str, bool, object, bool, str)  # model, downloaded, bytes (0: unknown), speech, why not now

    _scan = Signal()
    _probe = Signal()
    _check = Signal(str, str, bool, bool)
    _download = Signal(str, object, bool, bool)
    _delete = Signal(str)

    def __init__(self, paths: AppPaths, parent: QObject | None = None, poll_ms: int = 100) -> None:
        super().__init__(parent)
        self.paths = paths
        self.downloading: str | None = None  # the hub id being downloaded
        self._flag: CancelFlag | None = None
        self._latest = None  # the newest Progress, from any thread
        self._latest_lock = threading.Lock()
        self._closed = False
        self._poll = QTimer(self)
        self._poll.setInterval(poll_ms)
        self._poll.timeout.connect(self._show_progress)

        self._thread = new_thread("models")
        self._worker = _ModelsWorker(paths.models, self._progress_from_any_thread)
        self._worker.moveToThread(self._thread)
        self._thread.finished.connect(self._worker.deleteLater)
        self._scan.connect(self._worker.scan)
        self._probe.connect(self._worker.probe)
        self._check.connect(self._worker.check)
        self._worker.checked.connect(self.checked)
        self._download.connect(self._worker.download)
        self._delete.connect(self._worker.delete)
        self._worker.listed.connect(self.listed)
        self._worker.capabilities.connect(self.capabilities)
        self._worker.deleted.connect(self.deleted)
        self._worker.failed.connect(self.error)
        self._worker.downloaded.connect(self._on_downloaded)
        self._worker.download_failed.connect(self._on_download_failed)
        self._thread.start()

    # -- requests (GUI thread) ----------------------------------------------------------------

    def refresh(self) -> None:
        self._scan.emit()

    def probe(self) -> None:
        self._probe.emit()

    def check(self, model: str, device: str = "auto", speech: bool = False, offline: bool = False) -> None:
        """Whether ``model`` is downloaded (``speech``: a Whisper model, "" its default), and why it
        cannot be fetched now: answered by ``checked``."""
        self._check.emit(model, device, speech, offline)

    def download(self, model: str, offline: bool = False, speech: bool = False) -> bool:
        """Start downloading ``model`` (``speech``: a Whisper model, whose files differ);
        False when a download is already running."""
        if self.downloading is not None or self._closed:
            return False
        self.downloading = model.strip()
        self._flag = CancelFlag()
        with self._latest_lock:
            self._latest = None
        self._poll.start()
        self.downloading_changed.emit(True)
        self._download.emit(self.downloading, self._flag, offline, speech)
        return True

    def cancel_download(self) -> None:
        """Stop the download at its next chunk; what arrived stays, for the next try."""
        if self._flag is not None:
            self._flag.set()

    def delete(self, repo_id: str) -> None:
        self._delete.emit(repo_id)

    def shutdown(self, timeout_ms: int = 15_000, patience_ms: int = 60_000) -> bool:
        """Cancel a download, end the thread and join it; True when it has ended (within
        ``timeout_ms``, then ``patience_ms`` more: a stalled connection gives up within its
        own timeout).  Safe to call again; the window passes ``patience_ms=0`` and asks later."""
        if not self._closed:
            self._closed = True
            self.cancel_download()
            self._poll.stop()
            self._thread.quit()
        finished = self._thread.wait(timeout_ms)
        if not finished and patience_ms > 0:
            log.warning("models thread still busy after %d ms; waiting for it", timeout_ms)
            finished = self._thread.wait(patience_ms)
        return finished

    # -- worker → GUI ----------------------------------------------------------------------------

    def _progress_from_any_thread(self, progress) -> None:
        with self._latest_lock:
            self._latest = progress

    @Slot()
    def _show_progress(self) -> None:
        with self._latest_lock:
            progress, self._latest = self._latest, None
        if progress is not None:
            self.download_progress.emit(progress)

    def _download_ended(self) -> None:
        self._poll.stop()
        self._show_progress()  # the last report (100 %) before the result
        self.downloading = None
        self._flag = None
        self.downloading_changed.emit(False)

    @Slot(str, str)
    def _on_downloaded(self, model: str, folder: str) -> None:
        self._download_ended()
        self.download_finished.emit(model, folder)

    @Slot(str, str, bool)
    def _on_download_failed(self, model: str, message: str, cancelled: bool) -> None:
        self._download_ended()
        self.download_failed.emit(model, message, cancelled)
