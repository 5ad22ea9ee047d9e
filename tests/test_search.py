"""Retrieval: the index, the indexer and the merged search, with controlled embeddings (vectors set
here, so the right answer is known) and with tiny random CLIP and SigLIP models (plumbing);
``--search`` on the command line; frame relevance from the shared encoder."""

from __future__ import annotations

import io
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from assistant.encoders.contrastive import ContrastiveEncoder
from assistant.encoders.shared import EncoderChoice, SharedEncoder
from assistant.errors import Cancelled, ModelLoadError
from assistant.search.index import VectorIndex
from assistant.search.retrieval import K, Retriever, fuse
from assistant.settings import DEFAULT_SEARCH_MODEL, Settings
from assistant.store.history import HistoryStore, open_history
from assistant.store.vectors import VectorTable
from tests.conftest import ROOT

E = np.eye(5, dtype=np.float32)  # e0 … e4: the directions the fake encoder uses


def png(color: tuple[int, int, int], size=(40, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, "PNG")
    return out.getvalue()


RED, WHITE, BLUE = png((220, 20, 20)), png((250, 250, 250)), png((20, 20, 220))


class FakeEncoder:
    """Controlled embeddings: a picture's vector is set by its main colour, a text's by a table."""

    model_name = "fake-clip"
    dim = 5

    def __init__(self, texts: dict[str, np.ndarray] | None = None) -> None:
        self.texts = texts or {}
        self.images_run = 0
        self.texts_run = 0

    def embed_images(self, images, keys=None):
        self.images_run += len(images)
        out = []
        for image in images:
            r, g, b = np.asarray(image).reshape(-1, 3).mean(0)
            out.append(E[0] if r > 150 and g < 100 else E[1] if min(r, g, b) > 200 else E[2] if b > 150 else E[4])
        return np.stack(out)

    def embed_texts(self, texts):
        self.texts_run += len(texts)
        vectors = [self.texts.get(t, E[4]) for t in texts]
        return np.stack([v / np.linalg.norm(v) for v in vectors]).astype(np.float32)


@pytest.fixture
def store(tmp_path):
    with HistoryStore(tmp_path / "history.sqlite3", tmp_path / "images") as s:
        yield s


def fill(store) -> dict[str, int]:
    """Three chats: a red mug (a picture), a receipt (a picture), a street sign (words, and a blue picture)."""
    ids = {}
    ids["mug"] = store.create_conversation()
    ids["mug_q"] = store.add_message(ids["mug"], "user", "What is this?", [RED])
    store.add_message(ids["mug"], "assistant", "It looks like a cup.")
    ids["receipt"] = store.create_conversation()
    ids["receipt_q"] = store.add_message(ids["receipt"], "user", "Keep this for my taxes", [WHITE])
    ids["sign"] = store.create_conversation()
    ids["sign_q"] = store.add_message(ids["sign"], "user", "Where is the street sign?")
    ids["sign_a"] = store.add_message(ids["sign"], "assistant", "On the left, here it is.", [BLUE])
    return ids


QUERIES = {
    "my red mug": 0.95 * E[0] + 0.3 * E[4],
    "the receipt": 0.9 * E[1] + 0.4 * E[4],
    "street sign": E[2] + 0.1 * E[4],
    "Where is the street sign?": E[2],
}


def test_a_picture_is_found_by_what_it_shows(store):
    ids = fill(store)
    retriever = Retriever(store, FakeEncoder(QUERIES))
    done = retriever.index()
    assert (done.done, done.total, done.failed) == (3 + 5, 8, 0)  # 3 pictures, 5 texts
    [best, *_] = retriever.search("my red mug")
    assert (best.kind, best.conversation_id, best.message_id) == ("image", ids["mug"], ids["mug_q"])
    assert best.matched_by == ("picture",) and best.snippet == "What is this?" and best.score == pytest.approx(1.0)
    assert best.image_path.endswith(".png") and best.image_sha256 and best.similarity > 0.9
    assert re.fullmatch(r"score=1\.000 chat=\d+ message=\d+ kind=image title=What is this\?", best.line)
    assert retriever.search("the receipt")[0].conversation_id == ids["receipt"]


def test_found_by_meaning_and_by_words_beats_either_alone(store):
    ids = fill(store)
    retriever = Retriever(store, FakeEncoder(QUERIES))
    retriever.index()
    results = retriever.search("street sign")
    first, second = results[:2]
    # The question matches by meaning (its vector) and by its words: two first places.
    assert (first.kind, first.message_id) == ("text", ids["sign_q"])
    assert set(first.matched_by) == {"meaning", "words"} and first.score == pytest.approx(2.0)
    assert "«street»" in first.snippet and "«sign»" in first.snippet
    # The blue picture is first by what it shows only.
    assert (second.kind, second.message_id, second.matched_by) == ("image", ids["sign_a"], ("picture",))
    assert second.score == pytest.approx(1.0)
    # A text hit shows the message's first picture as its thumbnail when it has one.
    answer = next(r for r in results if r.kind == "text" and r.message_id == ids["sign_a"])
    assert answer.image_path.endswith(".png")
    scores = [r.score for r in results]
    assert scores == sorted(scores, reverse=True)


def test_rank_fusion_scores():
    fused = fuse({"a": [(("text", "1"), 0.9), (("text", "2"), 0.5)], "b": [(("text", "2"), None)]})
    assert fused[("text", "1")].score == pytest.approx(1.0)
    assert fused[("text", "2")].score == pytest.approx((K + 1) / (K + 2) + 1.0)
    assert fused[("text", "2")].matched_by == ["a", "b"] and fused[("text", "2")].similarity == 0.5


def test_a_deleted_chat_is_never_found(store):
    ids = fill(store)
    retriever = Retriever(store, FakeEncoder(QUERIES))
    retriever.index()
    store.delete_conversation(ids["mug"])
    found = retriever.search("my red mug")
    assert found and all(r.conversation_id != ids["mug"] for r in found)
    assert VectorTable(store, "fake-clip").count_pending() == (0, 0)


def test_indexing_stops_and_goes_on_where_it_stopped(store):
    fill(store)
    encoder = FakeEncoder(QUERIES)

    class StopAfterFirstBatch:
        calls = 0

        @property
        def cancelled(self):
            self.calls += 1
            return self.calls > 1

    seen = []
    with pytest.raises(Cancelled):
        Retriever(store, encoder).index(progress=seen.append, cancel=StopAfterFirstBatch(), batch=2)
    table = VectorTable(store, "fake-clip")
    first = table.count_indexed()
    assert 0 < sum(first) < 8 and seen[0].done == 0 and seen[-1].done == sum(first)
    # A new run (the app restarted) does only what is left; nothing is embedded twice.
    again = Retriever(store, encoder)
    result = again.index()
    assert result.done == 8 - sum(first) and table.count_indexed() == (3, 5)
    assert encoder.images_run + encoder.texts_run == 8
    assert again.index().done == 0


def test_a_broken_picture_is_marked_and_not_tried_again(store):
    ids = fill(store)
    [path] = [p for p in (store.images_dir).rglob("*.png") if p.read_bytes() == WHITE]
    path.write_bytes(b"not a picture")
    encoder = FakeEncoder(QUERIES)
    result = Retriever(store, encoder).index()
    assert result.failed == 1 and VectorTable(store, "fake-clip").count_pending() == (0, 0)
    assert Retriever(store, encoder).index().done == 0
    assert all(r.message_id != ids["receipt_q"] or r.kind == "text" for r in Retriever(store, encoder).search("the receipt"))


def test_a_message_whose_text_changes_is_indexed_again(store):
    ids = fill(store)
    Retriever(store, FakeEncoder(QUERIES)).index()
    store.update_message(ids["sign_a"], "On the right.")
    assert VectorTable(store, "fake-clip").count_pending() == (0, 1)


def test_each_model_has_its_own_vectors(store):
    fill(store)
    Retriever(store, FakeEncoder(QUERIES)).index()
    other = FakeEncoder(QUERIES)
    other.model_name = "another-model"
    assert VectorTable(store, "another-model").count_pending() == (3, 5)
    assert Retriever(store, other).index().done == 8


def test_exact_index_matches_brute_force():
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(1000, 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = VectorIndex()
    index.add([str(i) for i in range(600)], vectors[:600])
    index.add([str(i) for i in range(600, 1000)], vectors[600:])
    index.add(["5"], vectors[7:8])  # replaced, not added
    assert len(index) == 1000
    vectors[5] = vectors[7]
    query = rng.normal(size=32).astype(np.float32)
    expected = np.argsort(-(vectors @ query), kind="stable")[:10]
    found = index.search(query, 10)
    assert [int(item) for item, _ in found][:10] == list(expected)
    assert [s for _, s in found] == sorted((s for _, s in found), reverse=True)
    assert index.search(query, 5000)[-1][1] == pytest.approx(float((vectors @ query).min()), abs=1e-5)
    assert VectorIndex().search(query, 3) == []


# -- the real architectures: tiny random CLIP and SigLIP ------------------------------------------


@pytest.mark.parametrize("kind", ["clip", "siglip"])
def test_tiny_models_index_and_search_a_real_history(store, tiny_search_models, kind):
    ids = fill(store)
    encoder = ContrastiveEncoder(str(tiny_search_models[kind]), "cpu")
    try:
        assert encoder.sigmoid == (kind == "siglip") and encoder.dim > 0
        retriever = Retriever(store, encoder)
        assert retriever.index().done == 8 and encoder.encoded_images == 3
        results = retriever.search("a red mug on a desk")
        assert len(results) == 8 and {r.kind for r in results} == {"image", "text"}
        assert [r.score for r in results] == sorted((r.score for r in results), reverse=True)
        assert {r.conversation_id for r in results} == {ids["mug"], ids["receipt"], ids["sign"]}
        assert all(-1 <= r.similarity <= 1 for r in results if r.similarity is not None)
        # Vectors from the database give the same answers as fresh ones.
        reloaded = Retriever(store, encoder)
        assert [(r.kind, r.message_id) for r in reloaded.search("a red mug on a desk")] == \
            [(r.kind, r.message_id) for r in results]
        # Classification uses the same model: one score per label.
        labels = encoder.embed_texts(["a mug", "a receipt", "a sign"])
        scores = encoder.label_scores(encoder.embed_images([np.full((30, 40, 3), 200, np.uint8)]), labels)
        assert scores.shape == (1, 3) and np.all((0 <= scores) & (scores <= 1))
        if kind == "clip":
            assert scores.sum() == pytest.approx(1.0, abs=1e-5)
    finally:
        encoder.close()


def test_an_image_is_embedded_once_by_its_content(tiny_search_models):
    encoder = ContrastiveEncoder(str(tiny_search_models["clip"]), "cpu")
    try:
        a = np.random.default_rng(0).integers(0, 255, (48, 64, 3), np.uint8)
        first = encoder.embed_images([a, a.copy()])
        assert encoder.encoded_images == 1 and np.allclose(first[0], first[1])
        again = encoder.embed_images([a.copy()])
        assert encoder.encoded_images == 1 and np.allclose(again[0], first[0])
        encoder.embed_images([a[::-1].copy()])
        assert encoder.encoded_images == 2
        # Same vector whether it came from the cache or not.
        fresh = ContrastiveEncoder(str(tiny_search_models["clip"]), "cpu")
        assert np.allclose(fresh.embed_images([a])[0], first[0], atol=1e-5)
        fresh.close()
    finally:
        encoder.close()


def test_the_shared_encoder_loads_once_says_a_failure_once_and_never_downloads_when_told_not_to(tmp_path,
                                                                                                  tiny_search_models):
    shared = SharedEncoder(tmp_path / "models", EncoderChoice(DEFAULT_SEARCH_MODEL, "cpu"))
    assert shared.get() is None and not shared.is_downloaded()
    with pytest.raises(ModelLoadError, match="not downloaded"):
        shared.load(download=False)
    assert "not downloaded" in shared.failure()
    with pytest.raises(ModelLoadError):  # remembered: not tried again unless asked
        shared.load(download=False)
    shared.configure(EncoderChoice(str(tiny_search_models["clip"]), "cpu"))
    assert shared.failure() is None and shared.is_downloaded()
    encoder = shared.load()
    assert shared.get() is encoder and shared.load() is encoder
    shared.configure(EncoderChoice(""))
    assert shared.get() is None and encoder.closed and shared.load() is None


def test_old_settings_relevance_model_becomes_the_search_model():
    assert Settings.from_dict({"relevance_model": "some/clip"}).search_model == "some/clip"
    assert Settings.from_dict({"relevance_model": ""}).search_model == DEFAULT_SEARCH_MODEL
    assert Settings.from_dict({"relevance_model": "x/y", "search_model": ""}).search_model == ""
    assert Settings().search_model == DEFAULT_SEARCH_MODEL


# -- frame relevance from the shared encoder ----------------------------------------------------


def test_fusion_scores_frames_with_the_shared_encoder(paths, tiny_models, tiny_search_models):
    from assistant.devices.camera import Frame
    from assistant.engine import Engine
    from assistant.events import FramesChosen
    from assistant.session import UserTurn

    events = []
    settings = Settings(model=str(tiny_models["idefics3"]), device="cpu", max_new_tokens=2,
                        search_model=str(tiny_search_models["clip"]))
    engine = Engine(settings, paths, events.append)
    try:
        assert engine.load(), events
        rng = np.random.default_rng(1)
        frames = tuple(Frame(rng.integers(0, 255, (48, 64, 3), np.uint8), t=i / 10, index=90_000 + i)
                       for i in range(6))
        assert engine.handle_turn(UserTurn("what is on the label?", frames=frames)) is not None, events
        [chosen] = [e for e in events if isinstance(e, FramesChosen)]
        assert all("relevance" in c.scores for c in chosen.chosen)
        encoder = engine.encoder.get()
        assert encoder is not None and encoder.encoded_images == 6
        # Off: frames are chosen without the question, and nothing is loaded.
        engine.apply_settings(settings.replace(search_model=""))
        assert encoder.closed and engine.encoder.get() is None
        events.clear()
        engine.handle_turn(UserTurn("and now?", frames=frames))
        [chosen] = [e for e in events if isinstance(e, FramesChosen)]
        assert all("relevance" not in c.scores for c in chosen.chosen)
    finally:
        engine.unload()
        engine.encoder.close()


# -- the command line -------------------------------------------------------------------------------


LINE = re.compile(r"score=\d+\.\d{3} chat=\d+ message=\d+ kind=(image|text) title=.+")


def test_search_on_the_command_line_indexes_then_prints_the_best_matches(tmp_path, tiny_search_models):
    data = tmp_path / "data"
    from assistant.settings import AppPaths

    store, _ = open_history(AppPaths.under(data).data)
    with store:
        ids = fill(store)

    def search(*extra):
        return subprocess.run(
            [sys.executable, str(ROOT / "main.py"), "--data-dir", str(data), "--search", "a red mug",
             "--search-model", str(tiny_search_models["clip"]), *extra],
            capture_output=True, text=True, timeout=300, cwd=tmp_path,
        )

    first = search()
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    assert len(lines) == 8 and all(LINE.fullmatch(line) for line in lines), lines
    assert any(f"chat={ids['mug']} message={ids['mug_q']} kind=image title=What is this?" in line for line in lines)
    scores = [float(line.split()[0][6:]) for line in lines]
    assert scores == sorted(scores, reverse=True)
    assert "Indexing pictures and messages for search: 8 of 8" in first.stderr
    assert "Loading weights" not in first.stderr and "Traceback" not in first.stderr  # no library chatter
    again = search()  # everything is indexed: no indexing, the same answer
    assert again.returncode == 0 and again.stdout == first.stdout and "Indexing" not in again.stderr

    off = search("--offline")
    assert off.returncode == 0  # a folder needs no hub
    missing = subprocess.run(
        [sys.executable, str(ROOT / "main.py"), "--data-dir", str(data), "--search", "mug",
         "--search-model", "openai/clip-vit-base-patch32", "--offline"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert missing.returncode == 1 and missing.stdout == ""
    assert missing.stderr.startswith("error: ") and "not downloaded yet" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_what_is_in_view_goes_with_the_question_when_asked(paths, tiny_models, tiny_search_models):
    from assistant.devices.camera import Frame
    from assistant.engine import Engine
    from assistant.session import UserTurn
    from assistant.store.history import open_history

    store, _ = open_history(paths.data)
    events = []
    settings = Settings(model=str(tiny_models["idefics3"]), device="cpu", max_new_tokens=2,
                        search_model=str(tiny_search_models["clip"]), labels_with_question=True,
                        view_label_list="mug, keyboard, cat")
    engine = Engine(settings, paths, events.append, store=store)
    try:
        assert engine.load(), events
        rng = np.random.default_rng(2)
        frames = tuple(Frame(rng.integers(0, 255, (48, 64, 3), np.uint8), t=i / 10, index=91_000 + i)
                       for i in range(4))
        assert engine.handle_turn(UserTurn("what is this?", frames=frames)) is not None
        sent = engine.chat[0].text
        assert re.fullmatch(r"what is this\?\n\n\(The camera sees: (mug|keyboard|cat) \d\.\d\d, "
                            r"(mug|keyboard|cat) \d\.\d\d, (mug|keyboard|cat) \d\.\d\d\.\)", sent), sent
        [question] = [m for m in store.messages(engine.conversation_id) if m.role == "user"]
        assert question.text == "what is this?"  # the saved question is what the user asked
        assert [label for label, _ in question.meta["view_labels"]] == re.findall(r"(mug|keyboard|cat)", sent)
        # Reopened, the model sees the question as it was sent.
        engine.open_conversation(engine.conversation_id)
        assert engine.chat[0].text == sent
        # Off: the question goes as it is.
        engine.apply_settings(settings.replace(labels_with_question=False))
        engine.handle_turn(UserTurn("and now?", frames=frames))
        assert engine.chat[-2].text == "and now?"
    finally:
        engine.unload()
        engine.encoder.close()
        store.close()


def test_the_schema_still_fits_the_first_page(tmp_path):
    """The schema's text lives in the file's first page: if it grows past it, the table list
    spreads to other pages, and damage there hides every table from salvage."""
    import sqlite3

    HistoryStore(tmp_path / "h.sqlite3", tmp_path / "images").close()
    with sqlite3.connect(tmp_path / "h.sqlite3") as conn:
        try:
            pages = conn.execute("SELECT pageno FROM dbstat WHERE name = 'sqlite_schema'").fetchall()
        except sqlite3.OperationalError:
            pytest.skip("this SQLite has no dbstat table")
    assert pages == [(1,)]


def test_vectors_are_saved_only_for_things_as_they_were_embedded(store):
    ids = fill(store)
    table = VectorTable(store, "fake-clip")
    pending = table.pending(10)
    # A reply still being written: its text changed after it was read, so its vector is not kept.
    store.update_message(ids["sign_a"], "On the left, here it is. And more words now.")
    texts = dict(pending.texts)
    assert table.save("text", [(mid, E[4]) for mid in texts], texts=texts) == len(texts) - 1
    assert table.count_pending() == (3, 1)
    # A picture whose chat was deleted (and whose row was cleaned up) gets no vector, not even "broken".
    store.delete_conversation(ids["receipt"])
    store.prune_images(older_than=-1)
    shas = [sha for sha, _ in pending.images]
    assert table.save("image", [(sha, None) for sha in shas]) == 2
    assert len(shas) == 3


def test_vectors_of_another_size_are_dropped_and_embedded_again(store):
    fill(store)
    Retriever(store, FakeEncoder(QUERIES)).index()
    bigger = FakeEncoder(QUERIES)
    bigger.dim = 7  # the same name, another model (a folder reused)
    table = VectorTable(store, "fake-clip")
    items, matrix = table.load("image", 7)
    assert items == [] and matrix.shape == (0, 7)
    assert table.count_pending() == (3, 0)  # the pictures are to be embedded again
