"""Helpers of the web tests: call WSGI/ASGI apps in-process, run servers on free ports."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from http.cookies import Morsel, SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import quote
from wsgiref.util import setup_testing_defaults

import attrs

import tracardi_tracker
from tracardi_tracker.web.asgi import ASGIApp, Message

ROOT = Path(tracardi_tracker.__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
SOURCE_ID = "demo-source"
BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
SESSION = "tracardi-session-id"
PROFILE = "tracardi-profile-id"


@attrs.frozen
class Response:
    """What an app answered: status, headers, body and the cookies it set."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes

    @property
    def cookies(self) -> dict[str, Morsel[str]]:
        """``Set-Cookie`` headers by cookie name."""
        found: dict[str, Morsel[str]] = {}
        for name, value in self.headers:
            if name.lower() == "set-cookie":
                jar: SimpleCookie = SimpleCookie()
                jar.load(value)
                found.update(jar)
        return found

    def cookie(self, name: str) -> str | None:
        """The value the response set for cookie ``name``, if any."""
        morsel = self.cookies.get(name)
        return None if morsel is None else morsel.value


def cookie_header(cookies: Mapping[str, str | None]) -> str:
    return "; ".join(f"{name}={value}" for name, value in cookies.items() if value is not None)


def call_wsgi(
    app: Callable[..., Iterable[bytes]],
    path: str = "/",
    *,
    method: str = "GET",
    query: str = "",
    headers: Mapping[str, str] | None = None,
    cookies: Mapping[str, str | None] | None = None,
    https: bool = False,
    remote_addr: str = "198.51.100.7",
) -> Response:
    """Call a WSGI app as a server would (closing the response iterable)."""
    environ: dict[str, Any] = {}
    setup_testing_defaults(environ)
    environ.update(
        REQUEST_METHOD=method,
        PATH_INFO=path,
        QUERY_STRING=query,
        REMOTE_ADDR=remote_addr,
        HTTP_HOST="shop.example",
        HTTP_USER_AGENT=BROWSER,
    )
    environ["wsgi.url_scheme"] = "https" if https else "http"
    for name, value in (headers or {}).items():
        environ["HTTP_" + name.upper().replace("-", "_")] = value
    if cookies:
        environ["HTTP_COOKIE"] = cookie_header(cookies)
    started: list[tuple[str, list[tuple[str, str]]]] = []

    def start_response(
        status: str, response_headers: list[tuple[str, str]], exc: Any = None
    ) -> Any:
        started.append((status, response_headers))
        return lambda data: None

    result = app(environ, start_response)
    try:
        body = b"".join(result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    status, response_headers = started[-1]
    return Response(int(status.split()[0]), response_headers, body)


async def call_asgi(
    app: ASGIApp,
    path: str = "/",
    *,
    method: str = "GET",
    query: str = "",
    headers: Mapping[str, str] | None = None,
    cookies: Mapping[str, str | None] | None = None,
    scheme: str = "http",
    client: tuple[str, int] = ("198.51.100.7", 50000),
) -> Response:
    """Call an ASGI app with one ``http`` request, as a server would."""
    all_headers = {"host": "shop.example", "user-agent": BROWSER, **(headers or {})}
    if cookies:
        all_headers["cookie"] = cookie_header(cookies)
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": scheme,
        "path": path,
        "raw_path": quote(path).encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in all_headers.items()],
        "client": client,
        "server": ("127.0.0.1", 8000),
    }
    sent: list[Message] = []
    received = False

    async def receive() -> Message:
        nonlocal received
        if not received:
            received = True
            return {"type": "http.request", "body": b"", "more_body": False}
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    response_headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in start["headers"]]
    return Response(int(start["status"]), response_headers, body)


def free_port() -> int:
    """A port free on 127.0.0.1 now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_listening(port: int, process: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited with {process.returncode}:\n{log.read_text()}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise AssertionError(f"server not listening on {port} after {timeout}s:\n{log.read_text()}")


@contextlib.contextmanager
def running(
    command: list[str],
    *,
    port: int,
    endpoint: str,
    log: Path,
    cwd: Path = ROOT,
    timeout: float = 20.0,
    stop: int = signal.SIGTERM,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run a server process pointed at ``endpoint`` until the block ends, then stop it
    with ``stop`` and wait for it. Its output goes to ``log``."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "TRACARDI_ENDPOINT": endpoint,
        "TRACARDI_SOURCE_ID": SOURCE_ID,
        "PYTHONUNBUFFERED": "1",
    }
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_listening(port, process, log, timeout)
            yield process
        finally:
            if process.poll() is None:
                process.send_signal(stop)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)


def python(*args: str) -> list[str]:
    return [sys.executable, *args]


@contextlib.asynccontextmanager
async def lifespan(app: ASGIApp) -> AsyncIterator[None]:
    """Run an ASGI app's lifespan: startup before the block, shutdown after it."""
    inbox: asyncio.Queue[Message] = asyncio.Queue()
    outbox: asyncio.Queue[Message] = asyncio.Queue()

    async def receive() -> Message:
        return await inbox.get()

    async def send(message: Message) -> None:
        await outbox.put(message)

    task = asyncio.create_task(app({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send))
    await inbox.put({"type": "lifespan.startup"})
    started = await asyncio.wait_for(outbox.get(), 5)
    assert started["type"] == "lifespan.startup.complete", started
    try:
        yield
    finally:
        await inbox.put({"type": "lifespan.shutdown"})
        stopped = await asyncio.wait_for(outbox.get(), 10)
        await asyncio.wait_for(task, 5)
        assert stopped["type"] == "lifespan.shutdown.complete", stopped
