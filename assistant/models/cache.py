"""Managing the models on disk: what is in the app's Hugging Face cache, downloading, deleting.

Plain Python (no Qt): the window runs these calls in a worker thread, and the
command line can use them as they are.  The cache is the app's own folder
(``AppPaths.models``) or, when that is None, the shared Hugging Face cache.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from assistant.progress import CancelToken, Progress, ProgressCallback
from assistant.errors import AssistantError, ModelLoadError
from assistant.models.hub import (
    ALLOW_PATTERNS,
    cache_folder,
    cached_snapshot,
    human_bytes,
    looks_like_path,
    repo_folder,
    resolve_model,
)

log = logging.getLogger(__name__)


class ModelStoreError(AssistantError):
    """The model cache could not be read or changed."""


@dataclass(frozen=True)
class CachedModel:
    repo_id: str
    size_bytes: int  # on disk: every file of every revision, partial downloads included
    files: int  # files in its snapshots
    complete: bool  # a snapshot with the config and every weight file the app needs
    partial_bytes: int  # of ``size_bytes``: unfinished downloads (resumed by the next download)
    last_modified: float  # seconds since the epoch
    path: Path

    @property
    def size_text(self) -> str:
        return human_bytes(self.size_bytes)


@dataclass(frozen=True)
class CacheListing:
    folder: Path
    models: tuple[CachedModel, ...]  # largest first
    problems: tuple[str, ...] = ()  # folders that could not be read (corrupted), one line each

    @property
    def size_bytes(self) -> int:
        return sum(m.size_bytes for m in self.models)


def list_cached(cache_dir: Path | None) -> CacheListing:
    """The models in the cache with their disk sizes (``huggingface_hub.scan_cache_dir``)."""
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    folder = cache_folder(cache_dir)
    try:
        info = scan_cache_dir(folder)
    except CacheNotFound:
        return CacheListing(folder, ())
    except OSError as exc:
        raise ModelStoreError(f"The model folder {folder} could not be read: {exc.strerror or exc}.") from None
    partial: dict[Path, int] = {}
    for item in info.incomplete_files:
        repo_path = item.file_path.parent.parent  # <repo>/blobs/<etag>.incomplete
        partial[repo_path] = partial.get(repo_path, 0) + item.size_on_disk
    models = []
    for repo in info.repos:
        if repo.repo_type != "model":
            continue
        waiting = partial.get(repo.repo_path, 0)
        models.append(
            CachedModel(
                repo_id=repo.repo_id,
                size_bytes=repo.size_on_disk + waiting,
                files=repo.nb_files,
                complete=cached_snapshot(repo.repo_id, folder) is not None,
                partial_bytes=waiting,
                last_modified=repo.last_modified,
                path=repo.repo_path,
            )
        )
    # A download cancelled before its first file finished has blobs but no snapshot yet:
    # scan_cache_dir may skip it as corrupted; it still takes space and can be resumed.
    listed = {m.path for m in models}
    for repo_path, waiting in partial.items():
        if repo_path not in listed and repo_path.name.startswith("models--"):
            models.append(
                CachedModel(
                    repo_id=repo_path.name.removeprefix("models--").replace("--", "/"),
                    size_bytes=_folder_size(repo_path),
                    files=0,
                    complete=False,
                    partial_bytes=waiting,
                    last_modified=repo_path.stat().st_mtime,
                    path=repo_path,
                )
            )
            listed.add(repo_path)
    problems = tuple(
        str(w).splitlines()[0] for w in info.warnings if not any(str(p) in str(w) for p in listed)
    )
    models.sort(key=lambda m: (-m.size_bytes, m.repo_id))
    return CacheListing(folder, tuple(models), problems)


def _folder_size(folder: Path) -> int:
    total = 0
    for path in folder.rglob("*"):
        try:
            if path.is_file() and not path.is_symlink():
                total += path.stat().st_size
        except OSError:
            pass
    return total


def delete_cached(cache_dir: Path | None, repo_id: str) -> int:
    """Delete every file of ``repo_id`` from the cache (partial downloads too); the bytes freed."""
    if looks_like_path(repo_id):
        raise ModelStoreError(f"'{repo_id}' is a folder on this computer, not a downloaded model: it is left alone.")
    folder = repo_folder(repo_id, cache_dir)
    cache = cache_folder(cache_dir).resolve()
    if folder.resolve().parent != cache:  # e.g. '..' in a crafted name
        raise ModelStoreError(f"'{repo_id}' is not a model name.")
    if not folder.is_dir():
        raise ModelStoreError(f"'{repo_id}' is not in the model folder {cache}.")
    freed = _folder_size(folder)
    try:
        shutil.rmtree(folder)
    except OSError as exc:
        raise ModelStoreError(f"'{repo_id}' could not be deleted: {exc.strerror or exc}.") from None
    log.info("deleted %s from the cache (%s)", repo_id, human_bytes(freed))
    return freed


def download(
    model: str,
    cache_dir: Path | None,
    progress: ProgressCallback,
    cancel: CancelToken,
    offline: bool = False,
    allow_patterns: list[str] = ALLOW_PATTERNS,
) -> Path:
    """Download hub id ``model`` into the cache, with byte progress; resumes what an earlier try left.

    ``allow_patterns``: which files (``ASR_ALLOW_PATTERNS`` for a speech model).

    Raises ``Cancelled`` when ``cancel`` is set (the partial files stay, for the next
    try), ``ModelLoadError`` with a clear message otherwise.  A model already complete
    in the cache is reported as done at once.
    """
    model = model.strip()
    if not model:
        raise ModelLoadError("Type a Hugging Face model id (like HuggingFaceTB/SmolVLM-256M-Instruct) to download.")
    if looks_like_path(model):
        raise ModelLoadError(f"'{model}' is a folder on this computer: there is nothing to download.")
    cached = cached_snapshot(model, cache_dir, allow_patterns)
    if cached is not None:
        size = _folder_size(repo_folder(model, cache_dir))
        progress(
            Progress(
                "download", 1.0, f"{model} is already downloaded ({human_bytes(size)}).", done_bytes=size,
                total_bytes=size, seconds_left=0.0,
            )
        )
        return cached
    return resolve_model(model, cache_dir, progress, cancel, allow_patterns=allow_patterns, offline=offline)
