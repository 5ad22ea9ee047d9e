"""Overhead of the remote backend: the assistant's pipeline against the bare ``openai`` client.

Both arms talk to the same llama.cpp server with the same request (model,
messages, max_tokens, temperature 0), in interleaved pairs whose order
alternates.  For each run it measures

- time to first token (TTFT): from submitting the turn (``Engine.handle_turn``)
  or calling ``chat.completions.create`` to the first streamed text;
- decode speed: streamed chunks after the first, per second, up to the last.

and prints the medians, and the median of the per-pair ratios (target ≥ 0.95:
TTFT ratio = direct/pipeline, speed ratio = pipeline/direct).  The prompt is the same
every run, so the server's prompt cache is warm for both arms alike after the
warm-up: what differs is only the client side.

By default it starts ``python -m llama_cpp.server`` on the real Gemma 3 270M
GGUF (the test suite's server); ``--base-url``/``--remote-model`` benchmark a
server you already run.

    python benchmarks/remote.py [--pairs 30] [--tokens 64] [--base-url URL --remote-model NAME]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PROMPT = "Here is a long story about a lighthouse keeper and the storm that changed her life."


def via_engine(engine, prompt: str, marks: dict) -> tuple[float, float, int]:
    from assistant.events import UserTurn

    marks.clear()
    started = time.perf_counter()
    reply = engine.handle_turn(UserTurn(prompt))
    if reply is None:
        raise SystemExit("the engine reported an error; see above")
    return marks["first"] - started, marks["last"] - marks["first"], marks["count"]


def direct(client, model: str, prompt: str, tokens: int) -> tuple[float, float, int]:
    started = time.perf_counter()
    stream = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": prompt}], stream=True, max_tokens=tokens, temperature=0.0
    )
    first = last = None
    count = 0
    for chunk in stream:
        for choice in chunk.choices:
            if choice.delta is not None and choice.delta.content:
                last = time.perf_counter()
                first = first or last
                count += 1
    stream.close()
    return first - started, last - first, count


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=30)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--base-url", help="a running server (default: start llama_cpp.server on Gemma 3 270M)")
    parser.add_argument("--remote-model", default="")
    args = parser.parse_args()

    import openai

    from assistant.engine import Engine
    from assistant.events import ErrorEvent, TokenChunk
    from assistant.settings import AppPaths, Settings

    server = None
    tmp = tempfile.TemporaryDirectory()
    try:
        if args.base_url:
            base_url, model = args.base_url, args.remote_model
        else:
            from tests.remote_servers import MODEL_ALIAS, LlamaServer, assemble_gguf

            gguf = assemble_gguf(Path(tmp.name))
            server = LlamaServer(gguf, log_dir=Path(tmp.name)).start()
            base_url, model = server.base_url, MODEL_ALIAS
            print(f"llama_cpp.server on {base_url} with {gguf.name}")

        marks: dict = {}

        def emit(event) -> None:
            if isinstance(event, TokenChunk):
                now = time.perf_counter()
                marks.setdefault("first", now)
                marks["last"] = now
                marks["count"] = marks.get("count", 0) + 1
            elif isinstance(event, ErrorEvent):
                print(f"error: {event.message}", file=sys.stderr)

        settings = Settings(backend="openai", base_url=base_url, remote_model=model, system_prompt="",
                            max_new_tokens=args.tokens, temperature=0.0)
        engine = Engine(settings, AppPaths.under(tmp.name), emit)  # no history store: the model sees one turn
        if not engine.load():
            return 1
        model = engine.info.model
        client = openai.OpenAI(base_url=base_url, api_key="no-key", max_retries=0)

        def engine_run():
            engine.new_chat()  # the same single-turn request as the direct arm
            return via_engine(engine, PROMPT, marks)

        def direct_run():
            return direct(client, model, PROMPT, args.tokens)

        for _ in range(args.warmup):
            engine_run()
            direct_run()
        results: dict[str, list[tuple[float, float, int]]] = {"engine": [], "direct": []}
        for i in range(args.pairs):
            order = [("engine", engine_run), ("direct", direct_run)]
            if i % 2:
                order.reverse()
            for name, run in order:
                results[name].append(run())
        engine.unload()
        client.close()
    finally:
        if server is not None:
            server.kill()
        tmp.cleanup()

    def summary(name: str) -> tuple[float, float]:
        runs = results[name]
        ttft = statistics.median(r[0] for r in runs)
        speed = statistics.median((r[2] - 1) / r[1] for r in runs if r[1] > 0)
        tokens = statistics.median(r[2] for r in runs)
        print(f"{name:>7}: TTFT median {ttft * 1000:7.1f} ms   decode median {speed:6.1f} tokens/s   "
              f"({tokens:.0f} chunks, {len(runs)} runs)")
        return ttft, speed

    engine_ttft, engine_speed = summary("engine")
    direct_ttft, direct_speed = summary("direct")
    print(f"ratio of medians: TTFT {direct_ttft / engine_ttft:.3f}   tokens/s {engine_speed / direct_speed:.3f}")
    # The verdict: the median of the per-pair ratios (each pair ran back to back, so a
    # busy machine slows both runs of a pair alike and the ratio cancels it out).
    pairs = list(zip(results["engine"], results["direct"]))
    ttft_ratio = statistics.median(d[0] / e[0] for e, d in pairs)
    speed_ratio = statistics.median(((e[2] - 1) / e[1]) / ((d[2] - 1) / d[1]) for e, d in pairs)
    print(f"median of paired ratios (target >= 0.95): TTFT {ttft_ratio:.3f}   tokens/s {speed_ratio:.3f}")
    return 0 if min(ttft_ratio, speed_ratio) >= 0.95 else 1


if __name__ == "__main__":
    sys.exit(main())
