"""A real HTTP server on 127.0.0.1 for the async tests, and the task functions they run.

:class:`LocalServer` runs ``asyncio.start_server`` on its own event loop in a thread and speaks just
enough HTTP/1.1. It records what a test needs to check from the server's side: the time each
request arrived (``time.monotonic``, one clock for every process on Linux), how many requests were
in flight at most, in all and per client (the ``X-Client`` header names the worker), and which
requests the client abandoned before the answer (a cancelled coroutine closes its connection).

Paths:

- ``/echo/<text>?ms=<delay>``: ``<text>`` after ``delay`` milliseconds (default 50);
- ``/fail/<text>``: status 500;
- ``/hang/<text>``: never answers, until the client goes away;
- ``/flaky/<key>``: 500 on the first request for ``key``, then ``key``;
- ``/log/<text>``: records ``<text>`` in :attr:`LocalServer.log`.

Task functions used by process workers live here, at module level.
"""

from __future__ import annotations

import asyncio
import http.client
import os
import threading
import time
import uuid
from collections import Counter
from typing import Any

from mtasklite_like import delayed_init

# -- the server ------------------------------------------------------------------------------------


class LocalServer:
    """An HTTP server on 127.0.0.1 in a background thread (see the module docstring)."""

    def __init__(self, default_ms: float = 50.0) -> None:
        self.default_ms = default_ms
        self._loop = asyncio.new_event_loop()
        self._lock = threading.Lock()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._main, name="test-http-server", daemon=True)
        self.port = 0
        self.reset()

    # -- what the tests read ---------------------------------------------------------------------

    def reset(self) -> None:
        with self._lock:
            self.arrivals: list[float] = []  # monotonic time of each request
            self.paths: list[str] = []
            self.in_flight = 0
            self.max_in_flight = 0
            self.client_in_flight: Counter[str] = Counter()
            self.max_client_in_flight: Counter[str] = Counter()
            self.completed: list[str] = []
            self.aborted: list[str] = []  # requests whose client left before the answer
            self.log: list[str] = []
            self.flaky: Counter[str] = Counter()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def wait_for(self, predicate: Any, timeout: float = 10.0) -> bool:
        """Poll ``predicate()`` until it is true or ``timeout`` passes; return its last value."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                ok = bool(predicate())
            if ok or time.monotonic() > deadline:
                return ok
            time.sleep(0.01)

    # -- life cycle ------------------------------------------------------------------------------

    def start(self) -> LocalServer:
        self._thread.start()
        if not self._started.wait(10):
            raise RuntimeError("the test server did not start")
        return self

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._started.set()
        try:
            self._loop.run_forever()
        finally:
            server.close()
            for task in asyncio.all_tasks(self._loop):
                task.cancel()
            self._loop.run_until_complete(asyncio.sleep(0))
            self._loop.close()

    # -- one connection --------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                path = lines[0].split(" ")[1]
                headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
                keep = headers.get("connection", "").lower() == "keep-alive"
                status, body = await self._answer(path, headers.get("x-client", "?"), reader)
                if status is None:
                    return
                data = body.encode()
                writer.write(
                    f"HTTP/1.1 {status} X\r\nContent-Length: {len(data)}\r\n"
                    f"Connection: {'keep-alive' if keep else 'close'}\r\n\r\n".encode() + data
                )
                await writer.drain()
                if not keep:
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            writer.close()

    async def _answer(self, path: str, client: str, reader: asyncio.StreamReader) -> tuple[int | None, str]:
        now = time.monotonic()
        route, _, rest = path.lstrip("/").partition("/")
        text, _, query = rest.partition("?")
        with self._lock:
            self.arrivals.append(now)
            self.paths.append(path)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self.client_in_flight[client] += 1
            self.max_client_in_flight[client] = max(
                self.max_client_in_flight[client], self.client_in_flight[client]
            )
        try:
            if route == "hang":
                # Until the client goes away: EOF on its side of the connection.
                await reader.read()
                with self._lock:
                    self.aborted.append(path)
                return None, ""
            ms = float(query.split("=", 1)[1]) if query.startswith("ms=") else self.default_ms
            if route != "log":
                sleep = asyncio.ensure_future(asyncio.sleep(ms / 1000))
                gone = asyncio.ensure_future(reader.read(1))  # EOF: the client abandoned the request
                await asyncio.wait([sleep, gone], return_when=asyncio.FIRST_COMPLETED)
                if gone.done():
                    sleep.cancel()
                    with self._lock:
                        self.aborted.append(path)
                    return None, ""
                gone.cancel()
            with self._lock:
                self.completed.append(path)
                if route == "log":
                    self.log.append(text)
                if route == "flaky":
                    self.flaky[text] += 1
                    if self.flaky[text] == 1:
                        return 500, "first try fails"
            if route == "fail":
                return 500, "failed on purpose"
            return 200, text
        finally:
            with self._lock:
                self.in_flight -= 1
                self.client_in_flight[client] -= 1


# -- clients -----------------------------------------------------------------------------------------


def client_id() -> str:
    """Which worker sends a request: process and thread."""
    return f"{os.getpid()}-{threading.get_ident()}"


class HTTPStatusError(Exception):
    pass


async def get(url: str) -> str:
    """GET ``url`` with a fresh connection (closed even when cancelled); the body, or an error."""
    host_port, _, path = url.removeprefix("http://").partition("/")
    host, _, port = host_port.partition(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(
            f"GET /{path} HTTP/1.1\r\nHost: {host}\r\nX-Client: {client_id()}\r\n"
            f"Connection: close\r\n\r\n".encode()
        )
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        # The body's length, not the end of the connection: under fork, a worker started later
        # holds a copy of the server's socket (the server runs in the test's process), so the
        # connection's end may never come.
        length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))
        body = await reader.readexactly(length)
    finally:
        writer.close()
    status = int(head.split(b" ", 2)[1])
    if status != 200:
        raise HTTPStatusError(f"{status} for {url}")
    return body.decode()


def get_blocking(url: str) -> str:
    """The same with ``http.client``, for plain (not async) workers."""
    host_port, _, path = url.removeprefix("http://").partition("/")
    host, _, port = host_port.partition(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request("GET", f"/{path}", headers={"X-Client": client_id()})
        response = conn.getresponse()
        body = response.read().decode()
    finally:
        conn.close()
    if response.status != 200:
        raise HTTPStatusError(f"{response.status} for {url}")
    return body


async def get_or_die(url: str) -> str:
    """Ends the worker's process at once for a URL containing ``die``, else like :func:`get`."""
    if "die" in url:
        os._exit(3)
    return await get(url)


@delayed_init
class Session:
    """One per worker: built on the worker's loop, tells the server when it is closed."""

    built = 0

    def __init__(self, log_url: str) -> None:
        asyncio.get_running_loop()  # raises unless built inside a running loop
        self.log_url = log_url
        self.name = uuid.uuid4().hex
        type(self).built += 1

    async def __call__(self, url: str) -> tuple[str, str, int]:
        return await get(url), self.name, type(self).built

    async def aclose(self) -> None:
        await get(f"{self.log_url}/closed-{self.name}")
