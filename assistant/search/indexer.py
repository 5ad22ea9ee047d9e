"""Indexing the history for search: embed every saved picture and message text not embedded yet.

Work goes in small batches, newest first, and each batch is saved before the next, so
indexing can stop at any point (cancel, app closed) and goes on from there next time.
``pause`` is called between batches: the window passes one that waits while a reply is
being written, so indexing never delays an answer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from assistant.encoders.contrastive import ContrastiveEncoder
from assistant.errors import Cancelled
from assistant.progress import CancelToken, NeverCancelled
from assistant.search.index import VectorIndex
from assistant.store.vectors import VectorTable

log = logging.getLogger(__name__)

__all__ = ["IndexProgress", "index_pending"]

# Items a batch: small, so a pause or a cancel is never far away, and a question with
# the camera never waits long for the encoder (4 pictures: about 0.5 s on 2 CPU cores).
BATCH = 4


@dataclass(frozen=True)
class IndexProgress:
    done: int
    total: int
    failed: int = 0  # pictures that could not be read (broken files): left out

    @property
    def fraction(self) -> float:
        return 1.0 if self.total <= 0 else min(1.0, self.done / self.total)

    @property
    def text(self) -> str:
        return f"Indexing pictures and messages for search: {self.done} of {self.total}"


def index_pending(
    table: VectorTable,
    encoder: ContrastiveEncoder,
    images: VectorIndex,
    texts: VectorIndex,
    *,
    progress: Callable[[IndexProgress], None] | None = None,
    cancel: CancelToken | None = None,
    pause: Callable[[], None] | None = None,
    batch: int = BATCH,
) -> IndexProgress:
    """Embed what is not embedded yet, save it and add it to ``images`` / ``texts``.

    Returns the final progress.  Raises ``Cancelled`` when ``cancel`` says so (what was
    saved stays saved).
    """
    cancel = cancel or NeverCancelled()
    total = sum(table.count_pending())
    done = failed = 0
    report = progress or (lambda _p: None)
    if total:
        report(IndexProgress(0, total))
    while True:
        if pause is not None:
            pause()
        if cancel.cancelled:
            raise Cancelled("Indexing was stopped.")
        pending = table.pending(batch)
        if not pending.images and not pending.texts:
            break
        if pending.images:
            failed += _embed_images(table, encoder, images, pending.images)
        if pending.texts:
            ids = [mid for mid, _ in pending.texts]
            vectors = encoder.embed_texts([text for _, text in pending.texts])
            table.save("text", zip(ids, vectors), texts=dict(pending.texts))
            texts.add([str(mid) for mid in ids], vectors)
        done += len(pending.images) + len(pending.texts)
        total = max(total, done)
        report(IndexProgress(done, total, failed))
    return IndexProgress(done, max(total, done), failed)


def _embed_images(table: VectorTable, encoder: ContrastiveEncoder, index: VectorIndex,
                  items: list[tuple[str, str]]) -> int:
    """Embed pictures from their files (decoded as the model's pictures are: upright, RGB,
    within the app's size limits); a file that cannot be read is marked, not retried."""
    from pathlib import Path

    from assistant.encoders.images import decode_image

    readable: list[tuple[str, np.ndarray]] = []
    broken: list[str] = []
    for sha, path in items:
        try:
            readable.append((sha, np.asarray(decode_image(Path(path).read_bytes(), Path(path).name))))
        except Exception as exc:  # noqa: BLE001 - any picture that cannot be read: marked, never a crash
            log.warning("search: picture %s could not be read: %s", path, exc)
            broken.append(sha)
    if readable:
        vectors = encoder.embed_images([pixels for _, pixels in readable], [sha for sha, _ in readable])
        table.save("image", [(sha, vector) for (sha, _), vector in zip(readable, vectors)])
        index.add([sha for sha, _ in readable], vectors)
    if broken:
        table.save("image", [(sha, None) for sha in broken])
    return len(broken)
