"""The conversation store: round trips, titles, search, export/import, damage and crashes."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from PIL import Image, features

from assistant.errors import AssistantError
from assistant.store.export import EXPORT_FORMAT, export_json, export_markdown, import_json
from assistant.store.history import (
    SCHEMA_VERSION,
    HistoryError,
    HistoryStore,
    StoredMessage,
    derive_title,
    open_history,
)
from assistant.store.records import prepare_image

ROOT = Path(__file__).resolve().parent.parent


def image_bytes(color=(200, 30, 30), fmt="PNG", size=(24, 16)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, fmt)
    return buf.getvalue()


def image_files(images_dir: Path) -> list[Path]:
    return sorted(p for p in images_dir.rglob("*") if p.is_file())


@pytest.fixture
def store(tmp_path):
    s = HistoryStore(tmp_path / "history.sqlite3", tmp_path / "images")
    yield s
    s.close()


def reopen(store: HistoryStore) -> HistoryStore:
    store.close()
    return HistoryStore(store.path, store.images_dir)


# -- round trip -------------------------------------------------------------------------------


def test_round_trip_with_images_stored_once(tmp_path):
    red, blue = image_bytes((255, 0, 0)), image_bytes((0, 0, 255), fmt="JPEG")
    store = HistoryStore(tmp_path / "h.sqlite3", tmp_path / "images")
    conv = store.create_conversation()
    q = store.add_message(conv, "user", "What is this?", images=[red, blue])
    a = store.add_message(conv, "assistant", "A red square and a blue one.", meta={"frames": [3, 4], "tokens": 9})
    q2 = store.add_message(conv, "user", "And this one again?", images=[red])
    store.add_message(conv, "assistant", "The same red", status="stopped")
    assert q < a < q2

    files = image_files(tmp_path / "images")
    assert len(files) == 2  # the red image, shown twice, is one file
    red_sha = hashlib.sha256(red).hexdigest()
    assert (tmp_path / "images" / red_sha[:2] / f"{red_sha}.png").is_file()
    assert {p.suffix for p in files} == {".png", ".jpg"}

    store = reopen(store)
    try:
        msgs = store.messages(conv)
        assert [(m.role, m.text, m.status) for m in msgs] == [
            ("user", "What is this?", "complete"),
            ("assistant", "A red square and a blue one.", "complete"),
            ("user", "And this one again?", "complete"),
            ("assistant", "The same red", "stopped"),
        ]
        assert msgs[1].meta == {"frames": [3, 4], "tokens": 9}
        assert msgs[0].meta == {}
        assert [i.path.read_bytes() for i in msgs[0].images] == [red, blue]
        assert msgs[2].images[0].path == msgs[0].images[0].path
        assert msgs[2].images[0].sha256 == red_sha
        assert msgs[0].created <= msgs[3].created
        # records are immutable and hashable
        with pytest.raises(AttributeError):
            msgs[0].text = "x"  # type: ignore[misc]
        assert len({msgs[0], msgs[1]}) == 2
    finally:
        store.close()


@pytest.mark.skipif(not features.check("webp"), reason="PIL without WebP")
def test_image_extension_follows_the_format(store):
    conv = store.create_conversation()
    store.add_message(conv, "user", "webp", images=[image_bytes(fmt="WEBP")])
    [msg] = store.messages(conv)
    assert msg.images[0].path.suffix == ".webp"


def test_update_message_and_status(store):
    conv = store.create_conversation()
    mid = store.add_message(conv, "assistant", "Once upon", status="stopped")
    store.update_message(mid, text="Once upon a time")
    store.update_message(mid, status="failed")
    [msg] = store.messages(conv)
    assert (msg.text, msg.status) == ("Once upon a time", "failed")
    assert store.search("upon a time")[0].message_id == mid
    store.update_message(mid, text="Rewritten entirely")
    assert store.search("upon") == []  # the index follows the text
    assert [h.message_id for h in store.search("Rewritten")] == [mid]
    with pytest.raises(HistoryError, match="does not exist"):
        store.update_message(9999, text="x")
    with pytest.raises(HistoryError, match="status"):
        store.update_message(mid, status="done")


def test_bad_input_is_a_clear_error_and_writes_nothing(store):
    conv = store.create_conversation()
    assert issubclass(HistoryError, AssistantError)
    with pytest.raises(HistoryError, match="does not exist"):
        store.add_message(12345, "user", "hi")
    with pytest.raises(HistoryError, match="role"):
        store.add_message(conv, "robot", "hi")
    with pytest.raises(HistoryError, match="status"):
        store.add_message(conv, "user", "hi", status="maybe")
    with pytest.raises(HistoryError, match="not an image"):
        store.add_message(conv, "user", "hi", images=[b"definitely not a picture"])
    with pytest.raises(HistoryError, match="JSON"):
        store.add_message(conv, "user", "hi", meta={"x": object()})
    assert store.messages(conv) == []
    assert store.get_conversation(conv).title == ""
    assert image_files(store.images_dir) == []
    store.close()
    with pytest.raises(HistoryError, match="closed"):
        store.list_conversations()
    store.close()  # twice is fine


# -- titles and the sidebar -------------------------------------------------------------------


def test_titles_from_the_first_question(store):
    long = "Could you please   tell me\twhat the weather will be like tomorrow in Amsterdam and Rotterdam?"
    assert derive_title(long) == "Could you please tell me what the weather will be like…"
    assert len(derive_title(long)) <= 61
    assert derive_title("\n\n  First line  \nsecond line") == "First line"
    assert derive_title("", has_images=True) == "Image question"
    assert derive_title("") == ""
    assert derive_title("天" * 100).endswith("…") and len(derive_title("天" * 100)) == 61

    conv = store.create_conversation()
    store.add_message(conv, "system", "You are helpful.")
    store.add_message(conv, "assistant", "Hello! Ask me anything.")
    assert store.get_conversation(conv).title == ""  # only a user's question names it
    store.add_message(conv, "user", long)
    store.add_message(conv, "user", "A later question")
    assert store.get_conversation(conv).title == derive_title(long)

    pic = store.create_conversation()
    store.add_message(pic, "user", "  ", images=[image_bytes()])
    assert store.get_conversation(pic).title == "Image question"

    named = store.create_conversation("My  trip")
    store.add_message(named, "user", "Where to?")
    assert store.get_conversation(named).title == "My trip"


def test_list_is_newest_updated_first_with_counts(store):
    a = store.create_conversation("a")
    time.sleep(0.002)
    b = store.create_conversation("b")
    time.sleep(0.002)
    c = store.create_conversation("c")
    assert [s.id for s in store.list_conversations()] == [c, b, a]
    assert store.last_conversation_id() == c
    time.sleep(0.002)
    store.add_message(a, "user", "bump a")
    store.add_message(a, "assistant", "ok")
    listed = store.list_conversations()
    assert [s.id for s in listed] == [a, c, b]
    assert {s.id: s.message_count for s in listed} == {a: 2, b: 0, c: 0}
    assert store.last_conversation_id() == a
    assert store.get_conversation(999) is None
    assert store.messages(999) == []


def test_empty_store(store):
    assert store.list_conversations() == []
    assert store.last_conversation_id() is None
    assert store.search("anything") == []


def test_rename_and_delete_remove_unshared_images(store):
    shared, own = image_bytes((1, 2, 3)), image_bytes((9, 9, 9))
    keep = store.create_conversation()
    store.add_message(keep, "user", "shared picture", images=[shared])
    gone = store.create_conversation()
    store.add_message(gone, "user", "both pictures searchable", images=[shared, own])
    store.add_message(gone, "assistant", "nice pictures")

    store.rename_conversation(gone, "  Holiday   photos ")
    assert store.get_conversation(gone).title == "Holiday photos"
    with pytest.raises(HistoryError, match="does not exist"):
        store.rename_conversation(999, "x")

    own_path = store.messages(gone)[0].images[1].path
    shared_path = store.messages(keep)[0].images[0].path
    assert own_path.is_file() and shared_path.is_file()

    assert store.delete_conversation(gone) is True
    assert store.get_conversation(gone) is None
    assert store.messages(gone) == []
    assert not own_path.exists()
    assert shared_path.read_bytes() == shared
    assert [p.name for p in image_files(store.images_dir)] == [shared_path.name]
    assert store.search("searchable") == []  # the index lost the deleted messages
    assert store.delete_conversation(gone) is False

    with sqlite3.connect(store.path) as raw:
        assert raw.execute("SELECT count(*) FROM messages WHERE conversation_id = ?", (gone,)).fetchone()[0] == 0
        assert raw.execute("SELECT count(*) FROM images").fetchone()[0] == 1
        assert raw.execute("SELECT count(*) FROM message_images").fetchone()[0] == 1
    raw.close()

    store.delete_conversation(keep)
    assert image_files(store.images_dir) == []


def age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_prune_images_removes_old_orphans_and_spares_young_files(store):
    kept = store.add_message(store.create_conversation(), "user", "x", images=[image_bytes()])
    kept_path = store.messages(store.last_conversation_id())[0].images[0].path
    # A save that failed after its image file was written (the transaction rolled back).
    orphan = image_bytes((0, 250, 0))
    bad_record = {"role": "robot", "text": "", "status": "complete", "created": 1.0, "meta": "{}", "images": []}
    good_record = dict(bad_record, role="user", images=[prepare_image(orphan)])
    with pytest.raises(HistoryError):
        store.insert_conversation("failed import", None, [good_record, bad_record])
    sha = hashlib.sha256(orphan).hexdigest()
    orphan_path = store.images_dir / sha[:2] / f"{sha}.png"
    assert orphan_path.read_bytes() == orphan  # written, then never referenced
    # What a crash leaves: a half-written temporary file, a file a deletion had set aside.
    temp_file = orphan_path.with_name(".tmp-abc123.part")
    temp_file.write_bytes(b"half an image")
    deleting = orphan_path.with_name("cd" + "0" * 62 + ".jpg.deleting")
    deleting.write_bytes(b"being deleted")
    strays = [orphan_path, temp_file, deleting]

    assert store.prune_images() == 0  # young: maybe a save in progress in another instance
    assert all(p.exists() for p in strays)

    for path in [*strays, kept_path]:
        age(path, 2 * 3600)
    assert store.prune_images() == 3
    assert not any(p.exists() for p in strays)
    assert kept_path.read_bytes() == image_bytes()
    assert store.messages(store.last_conversation_id())[0].id == kept
    assert store.prune_images() == 0


def test_prune_images_removes_at_most_limit_per_call(store):
    folder = store.images_dir / "ee"
    folder.mkdir(parents=True)
    for i in range(5):
        stray = folder / f"ee{i:062d}.png"
        stray.write_bytes(b"stray")
        age(stray, 2 * 3600)
    assert store.prune_images(limit=2) == 2
    assert store.prune_images(limit=2) == 2
    assert store.prune_images(limit=2) == 1
    assert list(folder.iterdir()) == []


# -- search -----------------------------------------------------------------------------------


@pytest.fixture
def searchable(store):
    weather = store.create_conversation()
    store.add_message(weather, "user", "今天天气很好吗?")
    store.add_message(weather, "assistant", "是的,今天天气很好。")
    cafe = store.create_conversation("Paris")
    store.add_message(cafe, "user", "Where can I get a café au lait near the Louvre?")
    store.add_message(cafe, "assistant", "Try the CAFÉ Marly.\nIt is OK, a bit pricey.")
    code = store.create_conversation()
    store.add_message(code, "user", 'What does "SELECT * FROM t" do? Is x AND y OR z valid?')
    return store, weather, cafe, code


def test_search_finds_words_in_any_script(searchable):
    store, weather, cafe, code = searchable
    hits = store.search("天气很好")
    assert {h.conversation_id for h in hits} == {weather} and len(hits) == 2
    assert "«天气很好»" in hits[0].snippet
    # two characters: below the trigram index, found by the fallback scan
    hits = store.search("天气")
    assert len(hits) == 2 and all("«天气»" in h.snippet for h in hits)

    hits = store.search("café")
    assert [h.conversation_id for h in hits] == [cafe, cafe]
    assert hits[0].snippet == "Try the «CAFÉ» Marly. It is OK, a bit pricey."  # newest first, case-insensitive
    assert hits[0].role == "assistant" and hits[0].conversation_title == "Paris"
    assert hits[1].snippet.count("«café»") == 1
    # the same word typed in decomposed form (e + combining accent) is the same word
    assert len(store.search("cafe\u0301")) == 2


def test_search_short_words_and_several_words(searchable):
    store, weather, cafe, code = searchable
    assert [h.conversation_id for h in store.search("ok")] == [cafe]
    assert [h.conversation_id for h in store.search("OK marly")] == [cafe]
    assert store.search("ok weather") == []  # every word must match
    assert [h.conversation_id for h in store.search("louvre lait")] == [cafe]
    assert "«Louvre»" in store.search("louvre")[0].snippet


def test_short_queries_are_literal_and_case_insensitive(store):
    conv = store.create_conversation()
    pct = store.add_message(conv, "user", "It is 100% done_now")
    other = store.add_message(conv, "assistant", "Ça va? 好")
    store.add_message(conv, "user", "nothing special here")
    assert [h.message_id for h in store.search("%")] == [pct]
    assert [h.message_id for h in store.search("_")] == [pct]
    assert [h.message_id for h in store.search("0%")] == [pct]
    assert [h.message_id for h in store.search("ÇA")] == [other]
    assert [h.message_id for h in store.search("ça")] == [other]
    assert [h.message_id for h in store.search("好")] == [other]
    assert "«Ça»" in store.search("ça")[0].snippet


def test_search_query_syntax_is_plain_text(searchable):
    store, weather, cafe, code = searchable
    for query in ['"SELECT', "* FROM", "AND", "x AND y", 'do?', "t\"", "OR z", "t\" do?"]:
        assert [h.conversation_id for h in store.search(query)] == [code], query
    for query in ["NEAR(", "a:b", "-x", "^abc", "(((", "col:*"]:
        assert store.search(query) == []
    assert store.search("") == [] and store.search("   ") == []
    assert store.search("nothing like this anywhere") == []


def test_search_orders_newest_first_and_limits(store):
    conv = store.create_conversation()
    ids = [store.add_message(conv, "user", f"needle number {i}") for i in range(30)]
    hits = store.search("needle", limit=10)
    assert [h.message_id for h in hits] == ids[::-1][:10]
    long_text = "word " * 200 + "the needle is here " + "word " * 200
    mid = store.add_message(conv, "assistant", long_text)
    snippet = store.search("needle")[0].snippet
    assert store.search("needle")[0].message_id == mid
    assert snippet.startswith("…") and snippet.endswith("…") and "«needle»" in snippet
    assert len(snippet) < 130


# -- export / import --------------------------------------------------------------------------


def test_json_export_import_round_trip(store):
    red, jpeg = image_bytes((255, 0, 0)), image_bytes((0, 200, 0), fmt="JPEG")
    conv = store.create_conversation()
    store.add_message(conv, "system", "Be brief.")
    store.add_message(conv, "user", "Qu'est-ce que c'est? 这是什么?", images=[red, jpeg])
    store.add_message(conv, "assistant", "Deux carrés.", meta={"frames_used": [1, 2], "weights": [0.7, 0.3]})
    store.add_message(conv, "user", "Encore?", images=[red])
    store.add_message(conv, "assistant", "Partial", status="stopped")
    store.add_message(conv, "assistant", "", status="failed", meta={"error": "CUDA out of memory"})

    data = json.loads(json.dumps(export_json(store, conv)))  # through real JSON text
    assert data["format"] == EXPORT_FORMAT and data["version"] == 1
    assert data["title"] == store.get_conversation(conv).title
    assert data["messages"][1]["images"][0]["sha256"] == hashlib.sha256(red).hexdigest()
    assert data["messages"][1]["images"][1]["ext"] == "jpg"

    new = import_json(store, data)
    assert new != conv
    assert store.get_conversation(new).title == store.get_conversation(conv).title
    assert store.get_conversation(new).created == store.get_conversation(conv).created
    before, after = store.messages(conv), store.messages(new)

    def comparable(m):
        return (m.role, m.text, m.status, m.created, m.meta, tuple(i.path.read_bytes() for i in m.images))

    assert [comparable(m) for m in after] == [comparable(m) for m in before]
    assert len(image_files(store.images_dir)) == 2  # still stored once
    assert store.list_conversations()[0].id == new  # an import shows at the top

    # a JSON string (what a file holds) is accepted too
    again = import_json(store, json.dumps(data))
    assert len(store.messages(again)) == len(before)


def test_import_of_an_untitled_export_takes_its_first_question(store):
    data = {"format": EXPORT_FORMAT, "version": 1, "messages": [{"role": "user", "text": "Hello there"}]}
    conv = import_json(store, data)
    assert store.get_conversation(conv).title == "Hello there"
    assert store.messages(conv)[0].status == "complete"


def _valid_export(store) -> dict:
    conv = store.create_conversation()
    store.add_message(conv, "user", "valid", images=[image_bytes()])
    return export_json(store, conv)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda d: [1, 2, 3], "not a JSON object"),
        (lambda d: "{not json", "not valid JSON"),
        (lambda d: {**d, "format": "something-else"}, "format"),
        (lambda d: {**d, "version": 99}, "newer version"),
        (lambda d: {**d, "version": "1"}, "version"),
        (lambda d: {**d, "messages": "many"}, "list of messages"),
        (lambda d: {**d, "title": 5}, "title"),
        (lambda d: {**d, "messages": [5]}, "message 1 is not an object"),
        (lambda d: {**d, "messages": [{**d["messages"][0], "role": "wizard"}]}, "role"),
        (lambda d: {**d, "messages": [{**d["messages"][0], "status": "??"}]}, "status"),
        (lambda d: {**d, "messages": [{**d["messages"][0], "text": None}]}, "text"),
        (lambda d: {**d, "messages": [{**d["messages"][0], "created": "yesterday"}]}, "time"),
        (lambda d: {**d, "messages": [{**d["messages"][0], "meta": [1]}]}, "meta"),
        (
            lambda d: {**d, "messages": [{**d["messages"][0], "images": [{"data": "!!!not base64!!!"}]}]},
            "base64",
        ),
        (
            lambda d: {
                **d,
                "messages": [{**d["messages"][0], "images": [{**d["messages"][0]["images"][0], "sha256": "0" * 64}]}],
            },
            "checksum",
        ),
        (
            lambda d: {
                **d,
                "messages": [
                    {**d["messages"][0], "images": [{"data": base64.b64encode(b"plain text").decode()}]}
                ],
            },
            "not an image",
        ),
    ],
)
def test_import_rejects_bad_data_and_writes_nothing(store, damage, message):
    data = _valid_export(store)
    count = len(store.list_conversations())
    with pytest.raises(HistoryError, match=message):
        import_json(store, damage(data))
    assert len(store.list_conversations()) == count


def test_export_missing_conversation(store, tmp_path):
    with pytest.raises(HistoryError, match="does not exist"):
        export_json(store, 42)
    with pytest.raises(HistoryError, match="does not exist"):
        export_markdown(store, 42, tmp_path / "out")


def test_markdown_export(store, tmp_path):
    red = image_bytes((255, 0, 0))
    conv = store.create_conversation()
    store.add_message(conv, "user", "What is in this photo?", images=[red])
    store.add_message(conv, "assistant", "A **red** square.\n\n```python\nprint(1)\n```")
    store.add_message(conv, "user", "Again", images=[red, image_bytes((0, 0, 1), fmt="JPEG")])
    store.add_message(conv, "assistant", "A red", status="stopped")
    store.add_message(conv, "assistant", "", status="failed", meta={"error": "out of memory"})
    out = tmp_path / "export"

    path = export_markdown(store, conv, out)
    assert path == out / "what-is-in-this-photo.md"
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# What is in this photo?\n")
    assert text.count("## You") == 2 and text.count("## Assistant") == 3
    assert "print(1)" in text
    assert "Stopped" in text and "Failed" in text and "out of memory" in text
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert len(links) == 3
    for link in links:
        assert not Path(link).is_absolute()
        assert (out / link).is_file()
    assert (out / links[0]).read_bytes() == red
    assert len(list((out / "images").iterdir())) == 2

    second = export_markdown(store, conv, out)  # never overwrites an earlier export
    assert second == out / "what-is-in-this-photo-2.md"

    untitled = store.create_conversation()
    assert export_markdown(store, untitled, out).name == f"conversation-{untitled}.md"


# -- opening: damage, newer versions, migrations ----------------------------------------------


def test_open_history_creates_a_fresh_store(tmp_path):
    store, warning = open_history(tmp_path / "data")
    try:
        assert warning is None
        assert store.path == tmp_path / "data" / "history.sqlite3"
        assert store.images_dir == tmp_path / "data" / "images"
        conv = store.create_conversation()
        store.add_message(conv, "user", "persist me", images=[image_bytes()])
        assert image_files(tmp_path / "data" / "images")
        with sqlite3.connect(store.path) as raw:
            assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        raw.close()
    finally:
        store.close()
    again, warning = open_history(tmp_path / "data")
    with again:
        assert warning is None
        assert again.messages(again.last_conversation_id())[0].text == "persist me"


def conversation_image(c: int) -> bytes:
    return image_bytes((c % 256, 90, 200))


def build_history(data: Path, conversations: int, messages: int) -> Path:
    """A real history through the store's API: message ``i`` of conversation ``c`` starts
    ``marker-c-i.`` and every first message shows an image; returns the database file."""
    filler = "Some words of a plausible question or reply. " * 6
    store, _ = open_history(data)
    with store:
        for c in range(conversations):
            records = [
                {
                    "role": "user" if i % 2 == 0 else "assistant",
                    "text": f"marker-{c}-{i}. {filler}",
                    "status": "complete",
                    "created": 1e9 + c * 1000 + i,
                    "meta": "{}",
                    "images": [prepare_image(conversation_image(c))] if i == 0 else [],
                }
                for i in range(messages)
            ]
            store.insert_conversation(f"chat {c}", 1e9 + c * 1000, records)
    db = data / "history.sqlite3"
    assert not db.with_name(db.name + "-wal").exists()  # checkpointed on close
    return db


def damage_page_holding(db: Path, text: str) -> bytes:
    """Overwrite the whole database page that holds ``text`` with random bytes; returns the file."""
    raw = bytearray(db.read_bytes())
    page_size = int.from_bytes(raw[16:18], "big")
    page_no = raw.index(text.encode()) // page_size + 1
    offset = (page_no - 1) * page_size
    raw[offset : offset + page_size] = os.urandom(page_size)
    db.write_bytes(bytes(raw))
    return bytes(raw)


def saved_messages(store: HistoryStore) -> dict[str, StoredMessage]:
    """Every message of the store by its marker (``marker-c-i``)."""
    return {m.text.split(".")[0]: m for c in store.list_conversations() for m in store.messages(c.id)}


def assert_sound(db: Path) -> None:
    with sqlite3.connect(db) as raw:
        assert raw.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        raw.execute("INSERT INTO messages_fts(messages_fts) VALUES ('integrity-check')")
        assert raw.execute("PRAGMA foreign_key_check").fetchall() == []
    raw.close()


def test_one_damaged_page_loses_only_the_messages_on_it(tmp_path):
    data = tmp_path / "data"
    db = build_history(data, conversations=12, messages=25)
    damaged = damage_page_holding(db, "marker-6-10.")

    store, warning = open_history(data)
    with store:
        saved = saved_messages(store)
        assert len(store.list_conversations()) == 12
        assert 270 <= len(saved) < 300  # a 4 KiB page holds about a dozen of these messages
        assert "marker-6-10" not in saved
        assert f"12 conversations ({len(saved)} messages) could be saved" in warning
        [backup] = data.glob("history.sqlite3.broken-*[0-9]")
        assert backup.read_bytes() == damaged  # kept aside, untouched
        assert backup.name in warning
        for c in range(12):
            first = saved.get(f"marker-{c}-0")
            if first is not None:
                assert first.images[0].path.read_bytes() == conversation_image(c)
        survivor = next(m for key, m in saved.items() if key.startswith("marker-6-"))
        assert store.search(survivor.text.split(".")[0] + ".")[0].message_id == survivor.id
        assert_sound(db)
        conv = store.create_conversation()
        store.add_message(conv, "user", "works again", images=[image_bytes()])
    again, warning = open_history(data)
    with again:
        assert warning is None
        assert len(saved_messages(again)) == len(saved) + 1


def test_messages_whose_conversation_row_was_lost_are_kept(tmp_path):
    data = tmp_path / "data"
    store, _ = open_history(data)
    with store:
        for c in range(400):
            record = {"role": "user", "text": f"question {c}", "status": "complete", "created": 1e9 + c,
                      "meta": "{}", "images": []}
            store.insert_conversation(f"conversation-title-{c:04d}", 1e9 + c, [record])
    damage_page_holding(data / "history.sqlite3", "conversation-title-0200")

    store, warning = open_history(data)
    with store:
        conversations = store.list_conversations()
        assert len(conversations) == 400
        assert "400 conversations (400 messages) could be saved" in warning
        recovered = [c for c in conversations if c.title == "Recovered conversation"]
        assert 1 <= len(recovered) < 100
        for conv in recovered:
            [message] = store.messages(conv.id)
            assert message.text == f"question {conv.id - 1}"
            assert conv.created == conv.updated == message.created
        assert_sound(store.path)


def test_a_damaged_file_header_is_repaired(tmp_path):
    data = tmp_path / "data"
    db = build_history(data, conversations=5, messages=10)
    raw = bytearray(db.read_bytes())
    raw[:100] = b"garbage!" * 12 + b"junk"  # magic, page size, formats, counters: all wrong
    db.write_bytes(bytes(raw))

    store, warning = open_history(data)
    with store:
        saved = saved_messages(store)
        assert sorted(saved) == sorted(f"marker-{c}-{i}" for c in range(5) for i in range(10))
        assert "5 conversations (50 messages) could be saved" in warning
        assert saved["marker-3-0"].images[0].path.read_bytes() == conversation_image(3)
        assert_sound(db)
    [backup] = data.glob("history.sqlite3.broken-*[0-9]")
    assert backup.read_bytes() == bytes(raw)


def test_garbage_database_is_set_aside(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    garbage = os.urandom(3000) + b"this is not sqlite" * 100
    (data / "history.sqlite3").write_bytes(garbage)
    (data / "history.sqlite3-wal").write_bytes(b"junk wal")
    store, warning = open_history(data)
    try:
        assert warning and "damaged" in warning and "history.sqlite3.broken-" in warning
        assert "nothing in it could be read" in warning and "new, empty history" in warning
        [backup] = data.glob("history.sqlite3.broken-*[0-9]")
        assert backup.read_bytes() == garbage  # kept, untouched, for the user
        assert backup.with_name(backup.name + "-wal").read_bytes() == b"junk wal"
        assert backup.name in warning
        assert sorted(p.name for p in data.iterdir() if "salvage" in p.name) == []  # no scratch files left
        assert store.list_conversations() == []
        conv = store.create_conversation()
        store.add_message(conv, "user", "works again")
        assert store.search("again")[0].conversation_id == conv
    finally:
        store.close()


def test_many_damaged_pages_are_detected_and_what_is_left_saved(tmp_path):
    data = tmp_path / "data"
    db = build_history(data, conversations=3, messages=100)
    raw = bytearray(db.read_bytes())
    page = 4096
    for offset in range(2 * page, len(raw) - page, 3 * page):  # scribble over many b-tree pages
        raw[offset : offset + 64] = b"\xde\xad\xbe\xef" * 16
    db.write_bytes(bytes(raw))

    store, warning = open_history(data)
    with store:
        assert warning is not None and "broken-" in warning
        count = len(saved_messages(store))
        assert 0 < count < 300
        assert re.search(rf"\d+ conversations? \({count} messages\) could be saved", warning)
        assert_sound(db)


def test_truncated_database_keeps_its_first_half(tmp_path):
    data = tmp_path / "data"
    db = build_history(data, conversations=1, messages=200)
    db.write_bytes(db.read_bytes()[: db.stat().st_size // 2])  # a copy cut short
    store, warning = open_history(data)
    with store:
        saved = saved_messages(store)
        assert f"1 conversation ({len(saved)} messages) could be saved" in warning
        assert 50 <= len(saved) < 200
        assert "marker-0-0" in saved
        assert_sound(db)


def test_salvage_time_of_a_large_history(tmp_path):
    """SALVAGE_CONVERSATIONS=1000 measures 1,000 conversations of 20 messages (run with -s)."""
    conversations = int(os.environ.get("SALVAGE_CONVERSATIONS", "100"))
    data = tmp_path / "data"
    db = build_history(data, conversations=conversations, messages=20)
    damage_page_holding(db, f"marker-{conversations // 2}-10.")
    started = time.monotonic()
    store, warning = open_history(data)
    elapsed = time.monotonic() - started
    with store:
        assert f"{conversations:,} conversations" in warning
        count = sum(c.message_count for c in store.list_conversations())
        assert count >= conversations * 20 - 20
    print(f"\nsalvaged {conversations} conversations / {count} messages in {elapsed:.2f} s")
    assert elapsed < 60


def test_empty_database_file_is_a_new_history(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "history.sqlite3").write_bytes(b"")
    store, warning = open_history(data)
    with store:
        assert warning is None
        assert store.list_conversations() == []


def test_newer_schema_is_left_untouched(tmp_path):
    data = tmp_path / "data"
    store, _ = open_history(data)
    store.add_message(store.create_conversation(), "user", "from the future")
    store.close()
    db = data / "history.sqlite3"
    raw = sqlite3.connect(db)
    raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    raw.close()
    before = db.read_bytes()

    with pytest.raises(HistoryError, match="newer version"):
        HistoryStore(db, data / "images")
    with pytest.raises(HistoryError, match="newer version"):
        open_history(data)
    assert db.read_bytes() == before
    assert list(data.glob("*broken*")) == []


def test_migrations_are_idempotent(tmp_path):
    db, images = tmp_path / "h.sqlite3", tmp_path / "images"
    first = HistoryStore(db, images)
    conv = first.create_conversation("kept")
    first.add_message(conv, "user", "still here")
    second = HistoryStore(db, images)  # opened while the first is open
    first.close()
    second.close()
    third = HistoryStore(db, images)
    try:
        assert [c.title for c in third.list_conversations()] == ["kept"]
        assert third.messages(conv)[0].text == "still here"
    finally:
        third.close()
    raw = sqlite3.connect(db)
    try:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        tables = [r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'messages_fts_%' AND name NOT LIKE 'sqlite_%'")]
        assert sorted(tables) == ["conversations", "embeddings", "images", "message_images", "messages", "messages_fts"]
    finally:
        raw.close()


# -- threads and crashes ----------------------------------------------------------------------


def test_a_second_store_reads_while_the_first_writes(tmp_path):
    db, images = tmp_path / "h.sqlite3", tmp_path / "images"
    writer = HistoryStore(db, images)
    reader = HistoryStore(db, images)
    conv = writer.create_conversation()
    errors: list[BaseException] = []
    n = 150

    def write() -> None:
        try:
            for i in range(n):
                writer.add_message(conv, "user", f"threaded message {i}", images=[image_bytes((i, 0, 0))] if i % 10 == 0 else ())
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    thread = threading.Thread(target=write)
    thread.start()
    seen = 0
    while thread.is_alive():
        listed = reader.list_conversations()
        seen = max(seen, listed[0].message_count)
        reader.search("threaded")
        reader.messages(conv)
        # the same object from another thread is also fine (calls take turns)
        writer.get_conversation(conv)
    thread.join(timeout=30)
    try:
        assert not errors
        assert len(reader.messages(conv)) == n
        assert reader.list_conversations()[0].message_count == n
    finally:
        writer.close()
        reader.close()


CHILD = textwrap.dedent(
    """
    import io, sys
    sys.path.insert(0, {root!r})
    from pathlib import Path
    from PIL import Image
    from assistant.store.history import HistoryStore

    def reply(i, k):
        return f"answer {{i}} part {{k}} " + "détail 细节 " * (k * 5)

    store = HistoryStore(Path(sys.argv[1]), Path(sys.argv[2]))
    conv = store.create_conversation()
    print("conv", conv, flush=True)
    i = 0
    while True:
        buf = io.BytesIO()
        Image.new("RGB", (16, 16), (i % 256, 7, 9)).save(buf, "PNG")
        images = [buf.getvalue()] if i % 4 == 0 else []
        qid = store.add_message(conv, "user", f"question {{i}} " + "x" * (i % 300), images=images)
        print("add", qid, i, flush=True)
        rid = store.add_message(conv, "assistant", "", status="stopped")
        for k in range(4):
            store.update_message(rid, text=reply(i, k))
            print("upd", rid, i, k, flush=True)
        store.update_message(rid, status="complete")
        print("done", rid, i, flush=True)
        i += 1
    """
)


def reply(i: int, k: int) -> str:
    return f"answer {i} part {k} " + "détail 细节 " * (k * 5)


def test_sigkill_mid_reply_loses_nothing_committed(tmp_path):
    db, images = tmp_path / "h.sqlite3", tmp_path / "images"
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD.format(root=str(ROOT)), str(db), str(images)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
    )
    lines: list[str] = []
    deadline = time.monotonic() + 60
    try:
        while sum(line.startswith("add ") for line in lines) < 120:
            line = proc.stdout.readline()
            if not line:
                pytest.fail(f"the writer died early: {proc.stderr.read()}")
            lines.append(line)
            assert time.monotonic() < deadline, "the writer is too slow"
        os.kill(proc.pid, signal.SIGKILL)  # mid-stream: probably half-way through a reply
    finally:
        proc.kill()
        rest, _ = proc.communicate(timeout=30)
    lines += rest.splitlines(keepends=True)
    assert proc.returncode == -signal.SIGKILL

    conv = None
    questions: dict[int, int] = {}  # message id -> i
    replies: dict[int, tuple[int, int]] = {}  # message id -> (i, last committed part)
    done: set[int] = set()
    for line in lines:
        if not line.endswith("\n"):
            continue  # cut off by the kill
        kind, *nums = line.split()
        nums = [int(n) for n in nums]
        if kind == "conv":
            conv = nums[0]
        elif kind == "add":
            questions[nums[0]] = nums[1]
        elif kind == "upd":
            replies[nums[0]] = (nums[1], nums[2])
        elif kind == "done":
            done.add(nums[0])

    raw = sqlite3.connect(db)
    try:
        assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        raw.execute("INSERT INTO messages_fts(messages_fts) VALUES ('integrity-check')")
    finally:
        raw.close()

    store = HistoryStore(db, images)
    try:
        stored = {m.id: m for m in store.messages(conv)}
        for mid, i in questions.items():
            assert stored[mid].text == f"question {i} " + "x" * (i % 300)
            assert stored[mid].role == "user"
            for image in stored[mid].images:
                assert hashlib.sha256(image.path.read_bytes()).hexdigest() == image.sha256
            assert len(stored[mid].images) == (1 if i % 4 == 0 else 0)
        for mid, (i, k) in replies.items():
            # the printed part is committed; a later one may have committed just before the kill
            assert stored[mid].text in {reply(i, later) for later in range(k, 4)}
        for mid in done:
            assert stored[mid].status == "complete" and stored[mid].text == reply(questions[mid - 1], 3)
        last_i = max(questions.values())
        assert [h.message_id for h in store.search(f"question {last_i} ")][:1] == [
            mid for mid, i in questions.items() if i == last_i
        ]
        # A temp file of an image being written at the kill may remain; the writer is dead, so no grace period.
        store.prune_images(older_than=0)
        assert not list(images.rglob("*.part"))
    finally:
        store.close()
