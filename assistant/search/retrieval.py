"""Search the history by what its pictures show, by meaning and by words, merged into one list.

Three ranked lists answer a query:

* **pictures**: the query's text vector against every saved picture's vector (CLIP/SigLIP
  put both in one space, so "my red mug" finds a photo of a red mug);
* **meaning**: the query's vector against every message's text vector;
* **words**: the full-text index (``HistoryStore.search``): every word of the query, as typed.

Similarities of different kinds are not on one scale (a picture that matches a caption
well scores about 0.3 with CLIP, two texts that mean the same about 0.9), so the lists
are merged by reciprocal rank fusion (Cormack et al., 2009), as hybrid search engines
do: an item's score is the sum over the lists it is in of ``(K + 1) / (K + rank)``, so
first place in one list is 1.000 and an item found both by meaning and by its words
scores higher than one found either way.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from assistant.encoders.contrastive import ContrastiveEncoder
from assistant.progress import CancelToken
from assistant.search.index import VectorIndex
from assistant.search.indexer import BATCH, IndexProgress, index_pending
from assistant.store.history import HistoryStore
from assistant.store.vectors import VectorTable

__all__ = ["K", "Retriever", "SearchResult", "fuse"]

K = 60  # the usual reciprocal-rank-fusion constant: how quickly lower ranks count less
CANDIDATES = 50  # how far down each list is read
SNIPPET = 90


@dataclass(frozen=True)
class SearchResult:
    kind: str  # "image" or "text"
    score: float  # fused: 1.000 is first place in one list (see the module's note)
    conversation_id: int
    message_id: int
    conversation_title: str
    snippet: str  # the matching text (words matched wrapped in « »), or the question a picture came with
    created: float
    image_path: str = ""  # the picture found ("image"), or the first picture of the message ("text")
    image_sha256: str = ""
    matched_by: tuple[str, ...] = ()  # "picture", "meaning", "words"
    similarity: float | None = None  # cosine similarity with the query (pictures and meaning)

    @property
    def line(self) -> str:
        """The command line's result line: ``score=… chat=… message=… kind=… title=…``."""
        title = " ".join(self.conversation_title.split()) or "(untitled)"
        return (f"score={self.score:.3f} chat={self.conversation_id} message={self.message_id} "
                f"kind={self.kind} title={title}")


@dataclass
class _Fused:
    score: float = 0.0
    matched_by: list[str] = field(default_factory=list)
    similarity: float | None = None
    snippet: str = ""


def fuse(lists: dict[str, list[tuple[tuple[str, str], float | None]]]) -> dict[tuple[str, str], _Fused]:
    """Reciprocal rank fusion of ranked lists of ``((kind, item), similarity)``, keyed by
    list name; returns each item's fused score and which lists found it."""
    fused: dict[tuple[str, str], _Fused] = {}
    for name, ranked in lists.items():
        for rank, (key, similarity) in enumerate(ranked, start=1):
            entry = fused.setdefault(key, _Fused())
            entry.score += (K + 1) / (K + rank)
            entry.matched_by.append(name)
            if similarity is not None:
                entry.similarity = similarity if entry.similarity is None else max(entry.similarity, similarity)
    return fused


class Retriever:
    """Search over one history with one encoder; ``index`` embeds what is missing first.

    The vectors of the encoder's model are read from the database once (``load``) and
    kept in memory; ``index`` adds new ones as it saves them.  Not thread-safe on its own:
    one thread (the search worker, or a command line) uses it.
    """

    def __init__(self, store: HistoryStore, encoder: ContrastiveEncoder) -> None:
        self.store = store
        self.encoder = encoder
        self.table = VectorTable(store, encoder.model_name)
        self.images = VectorIndex(encoder.dim)
        self.texts = VectorIndex(encoder.dim)
        self._loaded = False

    def load(self) -> None:
        for kind, index in (("image", self.images), ("text", self.texts)):
            items, matrix = self.table.load(kind, self.encoder.dim)
            index.add(items, matrix)
        self._loaded = True

    def pending(self) -> int:
        return sum(self.table.count_pending())

    def index(self, progress: Callable[[IndexProgress], None] | None = None, cancel: CancelToken | None = None,
              pause: Callable[[], None] | None = None, batch: int = BATCH) -> IndexProgress:
        if not self._loaded:
            self.load()
        return index_pending(self.table, self.encoder, self.images, self.texts,
                             progress=progress, cancel=cancel, pause=pause, batch=batch)

    def search(self, query: str, limit: int = 10) -> list[SearchResult]:
        """The best matches for ``query``, best first (pictures and messages together)."""
        query = " ".join(str(query).split())
        if not query or limit <= 0:
            return []
        if not self._loaded:
            self.load()
        vector = self.encoder.embed_texts([query])[0]
        pictures = [(("image", sha), s) for sha, s in self.images.search(vector, CANDIDATES)]
        meaning = [(("text", mid), s) for mid, s in self.texts.search(vector, CANDIDATES)]
        hits = self.store.search(query, limit=CANDIDATES)
        words = [(("text", str(hit.message_id)), None) for hit in hits]
        fused = fuse({"picture": pictures, "meaning": meaning, "words": words})
        snippets = {str(hit.message_id): hit.snippet for hit in hits}
        ranked = sorted(fused.items(), key=lambda kv: (-kv[1].score, kv[0]))
        return self._describe(ranked, snippets, limit)

    def _describe(self, ranked, snippets: dict[str, str], limit: int) -> list[SearchResult]:
        """Results for the best ranked items that still exist (a deleted chat's are left out)."""
        results: list[SearchResult] = []
        start = 0
        while len(results) < limit and start < len(ranked):
            chunk = ranked[start : start + 2 * limit]
            start += len(chunk)
            uses = self.table.image_uses([item for (kind, item), _ in chunk if kind == "image"])
            rows = self.table.message_rows([int(item) for (kind, item), _ in chunk if kind == "text"])
            firsts = self._first_pictures([m.message_id for m in rows.values()])
            for (kind, item), entry in chunk:
                matched = tuple(dict.fromkeys(entry.matched_by))
                if kind == "image" and item in uses:
                    use = uses[item]
                    row = self.table.message_rows([use.message_id]).get(use.message_id)
                    said = _first_words(row.text) if row is not None and row.text.strip() else "(a picture)"
                    results.append(SearchResult("image", entry.score, use.conversation_id, use.message_id,
                                                use.conversation_title, said, use.created, use.path, item,
                                                matched, entry.similarity))
                elif kind == "text" and int(item) in rows:
                    row = rows[int(item)]
                    snippet = snippets.get(item) or _first_words(row.text)
                    sha, path = firsts.get(row.message_id, ("", ""))
                    results.append(SearchResult("text", entry.score, row.conversation_id, row.message_id,
                                                row.conversation_title, snippet, row.created, path, sha,
                                                matched, entry.similarity))
                if len(results) >= limit:
                    break
        return results

    def _first_pictures(self, message_ids: list[int]) -> dict[int, tuple[str, str]]:
        if not message_ids:
            return {}
        with self.store._read("find pictures") as conn:
            rows = conn.execute(
                f"""SELECT mi.message_id, i.sha256, i.ext FROM message_images mi JOIN images i ON i.sha256 = mi.sha256
                    WHERE mi.position = 0 AND mi.message_id IN ({','.join('?' * len(message_ids))})""",
                message_ids,
            ).fetchall()
        return {mid: (sha, str(self.store.image_path(sha, ext))) for mid, sha, ext in rows}


def _first_words(text: str, width: int = SNIPPET) -> str:
    line = " ".join(re.sub(r"[#*_`>]+", " ", text).split())
    return line if len(line) <= width else line[: width - 1].rsplit(" ", 1)[0] + "…"
