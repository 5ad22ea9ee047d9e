"""What the image search model and the index cost on this computer's CPU.

1. **Embedding cost** per image (a 640x480 camera-sized picture) and per query, for the
   default model's real shapes (openai/clip-vit-base-patch32: ``CLIPConfig()`` defaults)
   and for SigLIP-base-patch16-224's (``SiglipConfig()`` defaults), random weights (they
   time exactly like the real ones), loaded through the app's own ``ContrastiveEncoder``.
2. **Search time** of the exact numpy index at 10,000 and 100,000 vectors (512 and 768
   dimensions): one query, the best 50.
3. **Indexing throughput**: a history of pictures and messages indexed by the app's
   indexer with the default model's shapes (pictures a second, messages a second).

    python benchmarks/search.py [--repeats 5] [--images 24] [--texts 120]
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from assistant.encoders.contrastive import ContrastiveEncoder  # noqa: E402
from assistant.search.index import VectorIndex  # noqa: E402
from assistant.search.retrieval import Retriever  # noqa: E402
from assistant.store.history import HistoryStore  # noqa: E402
from tests.tiny_models import build_tiny_clip, build_tiny_siglip  # noqa: E402


def median_ms(run, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        run()
        times.append(time.perf_counter() - began)
    return statistics.median(times) * 1000


def embedding_cost(folder: Path, repeats: int) -> None:
    rng = np.random.default_rng(0)
    print("1. Embedding cost on the CPU (median of %d; random weights, real shapes)" % repeats)
    print(f"   {'model':<36} {'params':>8} {'dim':>5} {'per image':>10} {'per query':>10} {'8 images':>10}")
    for name, build in (("clip-vit-base-patch32 (default)", build_tiny_clip),
                        ("siglip-base-patch16-224", build_tiny_siglip)):
        path = build(folder / name.split()[0], real_shapes=True)
        encoder = ContrastiveEncoder(str(path), "cpu")
        params = sum(p.numel() for p in encoder.model.parameters()) / 1e6
        encoder.embed_images([rng.integers(0, 255, (480, 640, 3), np.uint8)])  # warm up
        encoder.embed_texts(["warm up"])

        def one_image():
            encoder.embed_images([rng.integers(0, 255, (480, 640, 3), np.uint8)])  # new pixels: never cached

        def eight_images():
            encoder.embed_images([rng.integers(0, 255, (480, 640, 3), np.uint8) for _ in range(8)])

        counter = iter(range(10**9))

        def one_query():
            encoder.embed_texts([f"my red mug on the desk {next(counter)}"])  # new text: never cached

        image_ms, query_ms = median_ms(one_image, repeats), median_ms(one_query, repeats)
        batch_ms = median_ms(eight_images, max(1, repeats // 2)) / 8
        print(f"   {name:<36} {params:>7.0f}M {encoder.dim:>5} {image_ms:>8.0f}ms {query_ms:>8.0f}ms "
              f"{batch_ms:>7.0f}ms/image")
        encoder.close()


def search_time(repeats: int) -> None:
    rng = np.random.default_rng(1)
    print("2. Exact search (numpy): one query, best 50 (median of %d)" % max(repeats, 20))
    for dim in (512, 768):
        for n in (10_000, 100_000):
            vectors = rng.normal(size=(n, dim)).astype(np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            index = VectorIndex(dim)
            began = time.perf_counter()
            index.add([str(i) for i in range(n)], vectors)
            added = time.perf_counter() - began
            query = vectors[rng.integers(n)]
            ms = median_ms(lambda: index.search(query, 50), max(repeats, 20))
            print(f"   {n:>7,} vectors x {dim}: {ms:6.2f} ms a search; loading them {added * 1000:6.0f} ms; "
                  f"{vectors.nbytes / 1e6:5.0f} MB in memory")


def reading_vectors(folder: Path) -> None:
    """How long the window's search thread takes to read a big history's vectors at start."""
    from assistant.store.vectors import VectorTable

    rng = np.random.default_rng(4)
    n, dim = 100_000, 512
    vectors = rng.normal(size=(n, dim)).astype(np.float32)
    with HistoryStore(folder / "vectors.sqlite3", folder / "vector-images") as store:
        table = VectorTable(store, "bench")
        began = time.perf_counter()
        with store._write("benchmark") as conn:  # as the indexer writes them (less the image rows' check)
            conn.executemany("INSERT INTO embeddings(model, kind, item, vector) VALUES ('bench', 'image', ?, ?)",
                             ((f"{i:064x}", vectors[i].astype("<f4").tobytes()) for i in range(n)))
        wrote = time.perf_counter() - began
        began = time.perf_counter()
        items, matrix = table.load("image", dim)
        read = time.perf_counter() - began
    assert matrix.shape == (n, dim) and np.array_equal(matrix[5], vectors[int(items[5], 16)])
    print(f"   Stored in the history database: writing {n:,} vectors {wrote:.1f} s, reading them back {read:.2f} s")


def png(rng) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (480, 640, 3), np.uint8)).save(out, "JPEG", quality=85)
    return out.getvalue()


def indexing(folder: Path, images: int, texts: int) -> None:
    rng = np.random.default_rng(2)
    path = build_tiny_clip(folder / "clip-index", real_shapes=True)
    encoder = ContrastiveEncoder(str(path), "cpu")
    with HistoryStore(folder / "history.sqlite3", folder / "images") as store:
        conv = store.create_conversation()
        for i in range(texts):
            pictures = [png(rng)] if i < images else []
            store.add_message(conv, "user" if i % 2 == 0 else "assistant",
                              f"Message {i}: what is on the desk, and where did I leave the red mug?", pictures)
        retriever = Retriever(store, encoder)
        began = time.perf_counter()
        done = retriever.index()
        seconds = time.perf_counter() - began
    print(f"3. Indexing {images} pictures (640x480 JPEG) and {texts} messages with the default model's shapes: "
          f"{seconds:.1f} s, {done.done / seconds:.1f} items/s "
          f"(~{seconds / max(1, images + texts) * 1000:.0f} ms an item on average)")
    encoder.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--texts", type=int, default=120)
    parser.add_argument("--skip-models", action="store_true", help="only the index (no model building)")
    args = parser.parse_args()
    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    with tempfile.TemporaryDirectory() as tmp:
        if not args.skip_models:
            embedding_cost(Path(tmp), args.repeats)
        search_time(args.repeats)
        reading_vectors(Path(tmp))
        if not args.skip_models:
            indexing(Path(tmp), args.images, args.texts)


if __name__ == "__main__":
    main()
