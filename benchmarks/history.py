"""Conversation store speed with a big history.

Builds a store with 10,000 messages across ~200 conversations (one of them long,
some messages with images) through the production ``add_message`` path, then
times what the window does:

* opening the app's history (``open_history``, including ``PRAGMA quick_check``)
  and listing the conversations for the sidebar, in this process and in a fresh
  Python process (import included);
* switching conversation: loading one conversation's messages (a typical one and
  the longest);
* full-text search: a common word, a rare word, Chinese (three characters: the
  trigram index; two characters: the fallback scan).

Each is run several times; the median and the maximum are printed in ms
(target: under 200 ms each).  Figures are with a warm OS file cache.

    python benchmarks/history.py [--messages 10000] [--conversations 200] [--runs 7] [--keep DIR]
"""

from __future__ import annotations

import argparse
import io
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from assistant.store.history import HistoryStore, open_history  # noqa: E402

TARGET_MS = 200.0
WORDS = (
    "the a of to and in is it you that for on with as this what was are be at or how can image camera "
    "photo label price cheaper bottle red blue green house street table window light read text number "
    "model answer question weather tomorrow morning coffee café naïve résumé über straße "
    "今天 天气 很好 天气很好 这是什么 多少钱 这是 什么 图片 价格 便宜 因为 所以 我们 你们 chat python code function error "
    "function variable memory speed quick brown fox jumps over lazy dog"
).split()


def sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."


def make_images(count: int, rng: random.Random) -> list[bytes]:
    from PIL import Image

    images = []
    for i in range(count):
        im = Image.effect_noise((96, 72), 40 + i).convert("RGB")
        buf = io.BytesIO()
        im.save(buf, "JPEG" if i % 2 else "PNG", quality=80)
        images.append(buf.getvalue())
    return images


def build(data_dir: Path, n_messages: int, n_conversations: int, seed: int = 1) -> tuple[dict, list[float]]:
    rng = random.Random(seed)
    images = make_images(60, rng)
    store, _ = open_history(data_dir)
    big = n_messages // 10  # one long conversation
    rest = n_messages - big
    sizes = [big] + [rest // (n_conversations - 1)] * (n_conversations - 1)
    sizes[1] += rest - sum(sizes[1:])
    write_ms: list[float] = []
    conv_ids = []
    for size in sizes:
        conv = store.create_conversation()
        conv_ids.append(conv)
        for j in range(size):
            role = "user" if j % 2 == 0 else "assistant"
            if role == "user":
                text = sentence(rng, rng.randint(4, 25)) + "?"
                pics = [rng.choice(images)] if rng.random() < 0.05 else []
            else:
                text = "\n\n".join(sentence(rng, rng.randint(10, 40)) for _ in range(rng.randint(1, 6)))
                pics = []
            t0 = time.perf_counter()
            store.add_message(conv, role, text, images=pics, meta={"tokens": len(text) // 4} if role == "assistant" else None)
            write_ms.append((time.perf_counter() - t0) * 1000)
    store.add_message(conv_ids[5], "user", "Where is the zanzibarian quokka sanctuary?")  # one rare word
    store.close()
    typical = conv_ids[len(conv_ids) // 2]
    return {"big": conv_ids[0], "typical": typical, "sizes": sizes}, write_ms


def timed(fn: Callable[[], object], runs: int) -> list[float]:
    fn()  # warm-up (first touch of the pages)
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


CHILD = """
import sys, time
t0 = time.perf_counter()
sys.path.insert(0, {root!r})
from pathlib import Path
from assistant.store.history import open_history
store, warning = open_history(Path({data!r}))
items = store.list_conversations()
t1 = time.perf_counter()
store.close()
print((t1 - t0) * 1000, len(items))
"""


def fresh_process_open(data_dir: Path, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        res = subprocess.run(
            [sys.executable, "-c", CHILD.format(root=str(ROOT), data=str(data_dir))],
            capture_output=True, text=True, check=True,
        )
        out.append(float(res.stdout.split()[0]))
    return out


def window_times(data_dir: Path, info: dict, runs: int) -> list[tuple[str, list[float]]]:
    """The real window (offscreen): from creation to a filled sidebar, and sidebar click to a shown chat."""
    import os

    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QEventLoop

    from assistant.settings import AppPaths, Settings
    from ui.app import create_app
    from ui.main_window import MainWindow

    app = create_app([])
    paths = AppPaths.under(data_dir / "app")
    opening, switching = [], {"typical": [], "big": []}
    for _ in range(runs):
        started = time.perf_counter()
        store, _ = open_history(data_dir)
        window = MainWindow(Settings(model=str(data_dir / "no-model-needed")), paths, store=store,
                            persist_settings=False)
        window.show()
        listed = QEventLoop()
        window.bridge.conversations.connect(lambda _e: listed.quit())
        listed.exec()
        app.processEvents()  # the sidebar is drawn
        opening.append((time.perf_counter() - started) * 1000)
        for which in ("typical", "big"):
            opened = QEventLoop()
            window.bridge.conversation_opened.connect(lambda _e: opened.quit())
            started = time.perf_counter()
            window.bridge.open_conversation(info[which])
            opened.exec()
            app.processEvents()  # the chat view is laid out and drawn
            switching[which].append((time.perf_counter() - started) * 1000)
            window.bridge.conversation_opened.disconnect()
        window.close()
        store.close()
        app.processEvents()
    return [
        ("window: open until the sidebar shows all chats", opening),
        ("window: switch to a typical chat, shown", switching["typical"]),
        ("window: switch to the 1,000-message chat, shown", switching["big"]),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=10_000)
    ap.add_argument("--conversations", type=int, default=200)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--keep", type=Path, help="build the store in this folder and keep it")
    args = ap.parse_args()

    tmp = None
    if args.keep:
        data_dir = args.keep
    else:
        tmp = tempfile.TemporaryDirectory(prefix="history-bench-")
        data_dir = Path(tmp.name)

    t0 = time.perf_counter()
    info, write_ms = build(data_dir, args.messages, args.conversations)
    build_s = time.perf_counter() - t0
    db = data_dir / "history.sqlite3"
    n_images = sum(1 for p in (data_dir / "images").rglob("*") if p.is_file())
    print(
        f"built {args.messages + 1} messages in {len(info['sizes'])} conversations "
        f"({n_images} distinct image files) in {build_s:.1f} s; database {db.stat().st_size / 1e6:.1f} MB"
    )
    print(
        f"add_message: median {statistics.median(write_ms):.2f} ms, "
        f"p99 {sorted(write_ms)[int(len(write_ms) * 0.99)]:.2f} ms, max {max(write_ms):.1f} ms"
    )

    def open_and_list() -> None:
        store, warning = open_history(data_dir)
        assert warning is None
        items = store.list_conversations()
        assert len(items) == len(info["sizes"])
        store.close()

    results: list[tuple[str, list[float]]] = [
        ("open_history + list_conversations (sidebar)", timed(open_and_list, args.runs)),
        ("  same, fresh Python process incl. import", fresh_process_open(data_dir, max(3, args.runs // 2))),
    ]
    store = HistoryStore(db, data_dir / "images")
    try:
        results.append(("  list_conversations alone", timed(store.list_conversations, args.runs)))
        typical, big = info["typical"], info["big"]
        n_typ, n_big = len(store.messages(typical)), len(store.messages(big))
        results += [
            (f"switch: messages() of a {n_typ}-message chat", timed(lambda: store.messages(typical), args.runs)),
            (f"switch: messages() of the {n_big}-message chat", timed(lambda: store.messages(big), args.runs)),
        ]
        for label, query in [
            ("common word 'camera'", "camera"),
            ("rare word 'zanzibarian'", "zanzibarian"),
            ("two words 'red bottle'", "red bottle"),
            ("Chinese '天气很好' (index)", "天气很好"),
            ("Chinese, 2 chars '价格' (scan)", "价格"),
            ("short words 'is it' (scan)", "is it"),
            ("accented 'café'", "café"),
        ]:
            hits = store.search(query)
            results.append((f"search {label}: {len(hits)} hits", timed(lambda q=query: store.search(q), args.runs)))
    finally:
        store.close()

    results += window_times(data_dir, info, args.runs)

    width = max(len(name) for name, _ in results)
    print(f"\n{'operation':<{width}}  {'median ms':>9}  {'max ms':>7}")
    worst = 0.0
    for name, times in results:
        worst = max(worst, max(times))
        print(f"{name:<{width}}  {statistics.median(times):9.1f}  {max(times):7.1f}")
    print(f"\nslowest single run {worst:.1f} ms: {'within' if worst < TARGET_MS else 'OVER'} the {TARGET_MS:.0f} ms target")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
