"""A small, real HTTP server that looks like the Hugging Face hub to ``huggingface_hub``.

It serves local folders (or in-memory files) as model repos, well enough for the
real ``huggingface_hub.snapshot_download`` / ``hf_hub_download`` to download them
over plain HTTP (it never advertises Xet storage)::

    with FakeHub({"TestOrg/tiny-vlm": folder}) as hub:
        use_fake_hub(monkeypatch, hub)          # point huggingface_hub at it, online
        snapshot_download("TestOrg/tiny-vlm", cache_dir=...)

Endpoints (all that ``snapshot_download`` of huggingface_hub 2.x calls for a model):

* ``GET /api/models/{repo_id}[/revision/{rev}]`` - model info (``sha``, ``siblings``)
* ``GET /api/models/{repo_id}/tree/{rev}[/{path}]?recursive=..`` - the file listing
  (``oid``, ``size``, ``lfs``; no ``xetHash``), one page
* ``HEAD|GET /{repo_id}/resolve/{rev}/{path}`` - a file, with ``X-Repo-Commit``,
  ``ETag`` (git blob sha1, or the sha256 for LFS files, which also get
  ``X-Linked-Etag`` / ``X-Linked-Size``), ``Content-Length``, ``Accept-Ranges`` and
  ``Range`` support (``206`` + ``Content-Range``; ``416`` when unsatisfiable)
* with ``lfs_redirect=True``, LFS files answer ``302`` to ``/_lfs/{sha256}`` on a
  *different* origin (``localhost`` instead of ``127.0.0.1``), like the hub's CDN.

Errors use the hub's ``X-Error-Code`` header (``RepoNotFound``,
``RevisionNotFound``, ``EntryNotFound``) so clients raise the proper exceptions.

Test knobs: ``throttle()`` (bytes/s or a delay per chunk), ``fail_after()`` (drop
the connection after N body bytes, optionally going "down" so every later request
is disconnected unanswered until ``down = False``), and a log of every request.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import struct
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit

__all__ = ["FakeHub", "RepoFile", "ServedRequest", "use_fake_hub", "go_offline"]

LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".onnx", ".gguf", ".h5", ".msgpack", ".model")
LFS_MIN_SIZE = 10 * 1024 * 1024  # bigger files are LFS whatever their name, like the hub's default .gitattributes


@dataclass(frozen=True)
class RepoFile:
    path: str  # posix, relative to the repo root
    size: int
    git_oid: str  # sha1 of the git blob: the ETag of a regular file
    sha256: str  # the ETag of an LFS file
    lfs: bool
    source: Path | None = None
    data: bytes | None = None

    def read(self, start: int = 0, end: int | None = None) -> bytes:
        """Bytes [start, end) of the file."""
        end = self.size if end is None else end
        if self.data is not None:
            return self.data[start:end]
        assert self.source is not None
        with open(self.source, "rb") as f:
            f.seek(start)
            return f.read(end - start)

    @property
    def etag(self) -> str:
        return self.sha256 if self.lfs else self.git_oid


@dataclass
class _Repo:
    repo_id: str
    files: dict[str, RepoFile]
    sha: str


@dataclass
class ServedRequest:
    """One request, logged when it arrives; ``status`` is set once it is answered."""

    method: str
    path: str  # unquoted URL path, without the query
    query: str
    range: str | None
    status: int | None = None  # None while in progress, or when hung up on without an answer


def _file_entry(path: str, data: bytes | None = None, source: Path | None = None) -> RepoFile:
    if data is None:
        assert source is not None
        data_for_hash = source.read_bytes()
    else:
        data_for_hash = data
    git_oid = hashlib.sha1(b"blob %d\0" % len(data_for_hash) + data_for_hash).hexdigest()
    sha256 = hashlib.sha256(data_for_hash).hexdigest()
    lfs = path.endswith(LFS_SUFFIXES) or len(data_for_hash) >= LFS_MIN_SIZE
    return RepoFile(path, len(data_for_hash), git_oid, sha256, lfs, source=source, data=data)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, hub: FakeHub, address: tuple[str, int]) -> None:
        self.hub = hub
        super().__init__(address, _Handler)

    def process_request(self, request, client_address):  # one tracked thread per connection
        thread = threading.Thread(
            target=self._serve_connection, args=(request, client_address), daemon=True, name="fake-hub-connection"
        )
        self.hub._track(request, thread)
        thread.start()

    def _serve_connection(self, request, client_address) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:  # noqa: BLE001
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)
            self.hub._untrack(request, threading.current_thread())

    def verify_request(self, request, client_address) -> bool:
        return not self.hub.down  # "down": accept, then hang up without a word

    def handle_error(self, request, client_address) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):
            return  # the client went away (a cancelled download): not the server's problem
        self.hub.errors.append(exc)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the real hub
    server: _Server
    server_version = "FakeHub/1.0"

    def log_message(self, format, *args):  # noqa: A002 - quiet
        pass

    @property
    def hub(self) -> FakeHub:
        return self.server.hub

    def do_HEAD(self) -> None:
        self._dispatch(head=True)

    def do_GET(self) -> None:
        self._dispatch(head=False)

    # -- routing -----------------------------------------------------------------------

    def _dispatch(self, head: bool) -> None:
        parts = urlsplit(self.path)
        path = unquote(parts.path)
        record = ServedRequest(self.command, path, parts.query, self.headers.get("Range"))
        self.hub._log(record)
        if self.hub.down:
            self.close_connection = True
            return  # disconnect without an answer
        self._record = record
        self._route(path, parse_qs(parts.query), head)

    def _route(self, path: str, query: dict[str, list[str]], head: bool) -> None:
        if path.startswith("/api/models/"):
            rest = path[len("/api/models/") :]
            if "/tree/" in rest:
                repo_id, _, tail = rest.partition("/tree/")
                revision, _, sub = tail.partition("/")
                return self._tree(repo_id, revision, sub.strip("/"), query, head)
            if "/revision/" in rest:
                repo_id, _, revision = rest.partition("/revision/")
            else:
                repo_id, revision = rest.rstrip("/"), "main"
            return self._model_info(repo_id, revision, query, head)
        if path.startswith("/_lfs/"):
            return self._lfs_blob(path[len("/_lfs/") :], head)
        if "/resolve/" in path:
            repo_id, _, tail = path.lstrip("/").partition("/resolve/")
            revision, _, filename = tail.partition("/")
            return self._resolve(repo_id, revision, filename, head)
        self._error(404, None, "Not Found", head)

    # -- answers -----------------------------------------------------------------------

    def _send(self, status: int, headers: Mapping[str, str], body: bytes = b"", head: bool = False) -> None:
        self._record.status = status
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        if "Content-Length" not in headers:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and not head:
            self.wfile.write(body)

    def _json(self, payload, head: bool, headers: Mapping[str, str] | None = None) -> None:
        body = json.dumps(payload).encode()
        self._send(200, {"Content-Type": "application/json; charset=utf-8", **(headers or {})}, body, head)

    def _error(self, status: int, code: str | None, message: str, head: bool, headers: Mapping[str, str] | None = None):
        extra = dict(headers or {})
        if code:
            extra["X-Error-Code"] = code
        extra["X-Error-Message"] = message
        body = json.dumps({"error": message}).encode()
        self._send(status, {"Content-Type": "application/json; charset=utf-8", **extra}, body, head)

    def _repo(self, repo_id: str, revision: str, head: bool) -> _Repo | None:
        repo = self.hub._repos.get(repo_id)
        if repo is None:
            self._error(404, "RepoNotFound", "Repository not found", head)
            return None
        if revision not in ("main", repo.sha):
            self._error(404, "RevisionNotFound", "Invalid rev id: " + revision, head)
            return None
        return repo

    def _model_info(self, repo_id: str, revision: str, query, head: bool) -> None:
        repo = self._repo(repo_id, revision, head)
        if repo is None:
            return
        blobs = query.get("blobs", ["false"])[0].lower() in ("1", "true")
        siblings = []
        for f in repo.files.values():
            entry: dict = {"rfilename": f.path}
            if blobs:
                entry.update(size=f.size, blobId=f.git_oid)
                if f.lfs:
                    entry["lfs"] = {"sha256": f.sha256, "size": f.size, "pointerSize": 134}
            siblings.append(entry)
        author = repo_id.split("/")[0] if "/" in repo_id else None
        self._json(
            {
                "_id": hashlib.md5(repo_id.encode()).hexdigest()[:24],
                "id": repo_id,
                "modelId": repo_id,
                "author": author,
                "sha": repo.sha,
                "lastModified": "2025-01-01T00:00:00.000Z",
                "createdAt": "2025-01-01T00:00:00.000Z",
                "private": False,
                "disabled": False,
                "gated": False,
                "downloads": 0,
                "likes": 0,
                "tags": ["transformers", "safetensors"],
                "library_name": "transformers",
                "siblings": siblings,
            },
            head,
        )

    def _tree(self, repo_id: str, revision: str, sub: str, query, head: bool) -> None:
        repo = self._repo(repo_id, revision, head)
        if repo is None:
            return
        recursive = query.get("recursive", ["false"])[0].lower() in ("1", "true")
        prefix = sub + "/" if sub else ""
        entries: dict[str, dict] = {}
        for f in sorted(repo.files.values(), key=lambda f: f.path):
            if not f.path.startswith(prefix):
                continue
            rel = f.path[len(prefix) :].split("/")
            # every folder on the way, then the file itself (unless deeper than asked)
            for depth in range(1, len(rel)):
                folder = prefix + "/".join(rel[:depth])
                if recursive or depth == 1:
                    entries.setdefault(
                        folder,
                        {"type": "directory", "oid": hashlib.sha1(folder.encode()).hexdigest(), "size": 0, "path": folder},
                    )
            if recursive or len(rel) == 1:
                entry = {"type": "file", "oid": f.git_oid, "size": f.size, "path": f.path}
                if f.lfs:
                    entry["lfs"] = {"oid": f.sha256, "size": f.size, "pointerSize": 134}
                entries[f.path] = entry
        if sub and not entries:
            self._error(404, "EntryNotFound", f"{sub} does not exist on \"{revision}\"", head)
            return
        self._json(list(entries.values()), head)

    def _file_headers(self, repo: _Repo, f: RepoFile) -> dict[str, str]:
        headers = {
            "X-Repo-Commit": repo.sha,
            "ETag": f'"{f.etag}"',
            "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream",
            "Content-Disposition": f"inline; filename*=UTF-8''{quote(f.path.rsplit('/', 1)[-1])}; "
            f'filename="{f.path.rsplit("/", 1)[-1]}";',
        }
        if f.lfs:
            headers["X-Linked-Etag"] = f'"{f.sha256}"'
            headers["X-Linked-Size"] = str(f.size)
        return headers

    def _resolve(self, repo_id: str, revision: str, filename: str, head: bool) -> None:
        repo = self._repo(repo_id, revision, head)
        if repo is None:
            return
        f = repo.files.get(filename)
        if f is None:
            self._error(404, "EntryNotFound", "Entry not found", head, {"X-Repo-Commit": repo.sha})
            return
        headers = self._file_headers(repo, f)
        if f.lfs and self.hub.lfs_redirect:
            # Like the hub: a redirect to a CDN on another origin, metadata on the redirect itself.
            headers["Location"] = f"http://localhost:{self.hub.port}/_lfs/{f.sha256}"
            self._send(302, headers, b"", head)
            return
        self._send_file(f, headers, head)

    def _lfs_blob(self, sha256: str, head: bool) -> None:
        for repo in self.hub._repos.values():
            for f in repo.files.values():
                if f.lfs and f.sha256 == sha256:
                    headers = {
                        "ETag": f'"{f.sha256}"',
                        "Accept-Ranges": "bytes",
                        "Content-Type": "application/octet-stream",
                    }
                    return self._send_file(f, headers, head)
        self._error(404, None, "Not Found", head)

    def _send_file(self, f: RepoFile, headers: dict[str, str], head: bool) -> None:
        start, end = 0, f.size  # [start, end)
        status = 200
        wanted = self.headers.get("Range")
        if wanted and not head:
            match = re.fullmatch(r"bytes=(\d*)-(\d*)", wanted.strip())
            if match is None or match.groups() == ("", ""):
                self._error(416, None, "Invalid range", head, {"Content-Range": f"bytes */{f.size}"})
                return
            first, last = match.groups()
            if first:
                start = int(first)
                end = min(int(last) + 1, f.size) if last else f.size
            else:
                start = max(f.size - int(last), 0)
            if start >= f.size or start >= end:
                self._error(416, None, "Range not satisfiable", head, {"Content-Range": f"bytes */{f.size}"})
                return
            status = 206
            headers = {**headers, "Content-Range": f"bytes {start}-{end - 1}/{f.size}"}
        headers = {**headers, "Content-Length": str(end - start)}
        self._record.status = status
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if head:
            return
        self.wfile.flush()
        self._stream(f, start, end)

    def _stream(self, f: RepoFile, start: int, end: int) -> None:
        hub = self.hub
        pos = start
        while pos < end:
            size = min(hub.chunk_size, end - pos)
            chunk = f.read(pos, pos + size)
            allowed, drop = hub._take_budget(f.path, len(chunk))
            chunk = chunk[:allowed]
            delay = hub._delay_for(len(chunk))
            if delay and hub._stopping.wait(delay):
                drop = True  # the server is stopping: hang up mid-body
            try:
                if chunk:
                    self.wfile.write(chunk)
                    self.wfile.flush()
                    hub._count_bytes(len(chunk))
            except OSError:
                self.close_connection = True
                return  # the client hung up (a cancelled download)
            pos += len(chunk)
            if drop:
                self._hang_up(reset=hub._drop_with_reset)
                return

    def _hang_up(self, reset: bool) -> None:
        """Drop the connection mid-body: a FIN (clean EOF) or, with ``reset``, a RST."""
        self.close_connection = True
        try:
            if reset:
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.connection.close()
            else:
                self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class FakeHub:
    """A fake Hugging Face hub on ``http://127.0.0.1:<free port>``, served from a daemon thread.

    ``repos`` maps a repo id (``"owner/name"``) to a local folder, or to a dict of
    ``{path: bytes}``.  Use as a context manager, or call ``start()`` / ``stop()``
    (``stop`` closes every connection and joins every thread it started; ``start``
    again listens on the same port, so a client can "reconnect").
    """

    def __init__(
        self,
        repos: Mapping[str, Path | str | Mapping[str, bytes]] | None = None,
        *,
        chunk_size: int = 16 * 1024,
        bytes_per_second: float | None = None,
        chunk_delay: float = 0.0,
        lfs_redirect: bool = False,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.host = host
        self.port = port
        self.chunk_size = chunk_size
        self.bytes_per_second = bytes_per_second
        self.chunk_delay = chunk_delay
        self.lfs_redirect = lfs_redirect
        self.down = False
        self.errors: list[BaseException] = []  # unexpected server-side exceptions (should stay empty)
        self._repos: dict[str, _Repo] = {}
        self._lock = threading.Lock()
        self._requests: list[ServedRequest] = []
        self._bytes_sent = 0
        self._fail_budget: int | None = None
        self._fail_path: str | None = None
        self._fail_then_down = False
        self._drop_with_reset = False
        self._drops = 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._connections: dict[socket.socket, threading.Thread] = {}
        for repo_id, content in (repos or {}).items():
            self.add_repo(repo_id, content)

    # -- content -----------------------------------------------------------------------

    def add_repo(self, repo_id: str, content: Path | str | Mapping[str, bytes], extra_files: Mapping[str, bytes] | None = None) -> str:
        """Serve a folder (or ``{path: bytes}``) as ``repo_id``; returns its commit sha."""
        files: dict[str, RepoFile] = {}
        if isinstance(content, Mapping):
            for path, data in content.items():
                files[path] = _file_entry(path, data=bytes(data))
        else:
            root = Path(content)
            if not root.is_dir():
                raise FileNotFoundError(f"no model folder at {root}")
            for p in sorted(root.rglob("*")):
                if p.is_file():
                    rel = p.relative_to(root).as_posix()
                    files[rel] = _file_entry(rel, source=p)
        for path, data in (extra_files or {}).items():
            files[path] = _file_entry(path, data=bytes(data))
        digest = hashlib.sha1()
        for path in sorted(files):
            digest.update(f"{path}\0{files[path].git_oid}\n".encode())
        sha = digest.hexdigest()
        with self._lock:
            self._repos[repo_id] = _Repo(repo_id, files, sha)
        return sha

    def commit(self, repo_id: str) -> str:
        return self._repos[repo_id].sha

    def files(self, repo_id: str) -> dict[str, RepoFile]:
        return dict(self._repos[repo_id].files)

    # -- test knobs --------------------------------------------------------------------

    def throttle(self, bytes_per_second: float | None = None, chunk_delay: float = 0.0) -> None:
        """Slow file bodies down (``None`` / ``0`` for full speed)."""
        self.bytes_per_second = bytes_per_second
        self.chunk_delay = chunk_delay

    def fail_after(self, n_bytes: int, *, path: str | None = None, then_down: bool = False, reset: bool = False) -> None:
        """Drop the connection once ``n_bytes`` more body bytes were sent (one time).

        ``path``: count only the bytes of that repo file.  ``then_down``: from then
        on hang up on every request without answering, until ``down = False``.
        ``reset``: drop with a TCP RST instead of a clean end-of-stream.
        """
        with self._lock:
            self._fail_budget = n_bytes
            self._fail_path = path
            self._fail_then_down = then_down
            self._drop_with_reset = reset

    @property
    def drops(self) -> int:
        """How many connections ``fail_after`` dropped."""
        return self._drops

    # -- bookkeeping -------------------------------------------------------------------

    @property
    def requests(self) -> list[ServedRequest]:
        """Every request so far, in the order they arrived."""
        with self._lock:
            return list(self._requests)

    @property
    def request_count(self) -> int:
        with self._lock:
            return len(self._requests)

    @property
    def bytes_sent(self) -> int:
        with self._lock:
            return self._bytes_sent

    def downloads(self, since: int = 0) -> list[str]:
        """Repo file paths fetched with GET (through ``/resolve/``), from request number ``since`` on."""
        out = []
        for r in self.requests[since:]:
            if r.method == "GET" and "/resolve/" in r.path:
                out.append(r.path.split("/resolve/", 1)[1].partition("/")[2])
        return out

    def reset_stats(self) -> None:
        with self._lock:
            self._requests.clear()
            self._bytes_sent = 0

    def _log(self, request: ServedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def _count_bytes(self, n: int) -> None:
        with self._lock:
            self._bytes_sent += n

    def _take_budget(self, path: str, n: int) -> tuple[int, bool]:
        """How many of ``n`` bytes of ``path`` may go out, and whether to drop after them."""
        with self._lock:
            if self._fail_budget is None or (self._fail_path is not None and self._fail_path != path):
                return n, False
            if n < self._fail_budget:
                self._fail_budget -= n
                return n, False
            allowed = self._fail_budget
            self._fail_budget = None
            self._drops += 1
            if self._fail_then_down:
                self.down = True
            return allowed, True

    def _delay_for(self, n: int) -> float:
        delay = self.chunk_delay or 0.0
        if self.bytes_per_second:
            delay += n / self.bytes_per_second
        return delay

    def _track(self, conn: socket.socket, thread: threading.Thread) -> None:
        with self._lock:
            self._connections[conn] = thread

    def _untrack(self, conn: socket.socket, thread: threading.Thread) -> None:
        with self._lock:
            if self._connections.get(conn) is thread:
                del self._connections[conn]

    # -- life cycle --------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        if not self.port:
            raise RuntimeError("FakeHub is not started")
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> FakeHub:
        if self._server is not None:
            return self
        self._stopping.clear()
        self._server = _Server(self, (self.host, self.port))
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True, name="fake-hub"
        )
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop listening, hang up on every open connection and join all threads."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self._stopping.set()
        server.shutdown()  # returns once serve_forever has left its loop: no new connections
        server.server_close()
        with self._lock:
            connections = dict(self._connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)  # wakes a handler blocked on a keep-alive read
            except OSError:
                pass
        deadline = time.monotonic() + timeout
        for t in [*connections.values(), thread]:
            if t is not None:
                t.join(max(deadline - time.monotonic(), 0.01))
        alive = [t for t in [*connections.values(), thread] if t is not None and t.is_alive()]
        self._server = self._thread = None
        if alive:
            raise RuntimeError(f"FakeHub threads did not stop: {alive}")

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


# -- pointing huggingface_hub at it -------------------------------------------------------


def use_fake_hub(monkeypatch, hub: FakeHub, *, chunk_size: int | None = 16 * 1024) -> None:
    """Send huggingface_hub to ``hub`` and switch offline mode off, for one test.

    huggingface_hub 2.x reads ``constants.ENDPOINT`` at call time (``HfApi``), but
    builds ``resolve`` URLs from ``constants.HUGGINGFACE_CO_URL_TEMPLATE``, computed
    from ``HF_ENDPOINT`` at import: both are patched.  Offline mode is the
    ``constants.HF_HUB_OFFLINE`` flag (read on every request by
    ``constants.is_offline_mode()``); the app reads the ``HF_HUB_OFFLINE`` variable.
    ``chunk_size``: huggingface_hub streams files in 10 MB chunks and only then
    reports progress; tiny test files need smaller ones to report (and be cancelled)
    mid-file.  ``None`` keeps the library's value.
    """
    from huggingface_hub import constants

    endpoint = hub.endpoint
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", endpoint + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setenv("HF_ENDPOINT", endpoint)  # for anything started in a subprocess
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.delenv("HF_TOKEN", raising=False)  # never send a real token to the fake hub
    if chunk_size is not None:
        monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", chunk_size)


def go_offline(monkeypatch) -> None:
    """Offline mode as a user sets it: the variable (for the app) and the library flag."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
