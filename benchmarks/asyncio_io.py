"""The I/O workloads: a local HTTP server with 50 ms latency, and the clients that call it.

The server runs in a process of its own (so its work does not share the measured process's
interpreter lock) on 127.0.0.1: ``asyncio.start_server`` with keep-alive connections, answering
``GET /<n>`` with ``n`` after ``delay`` seconds. It records when each request arrived
(``time.monotonic``, one clock for every process), which the rate-limit workload reads back through
``GET /stats`` (and clears with ``GET /reset``).

Every client keeps its connections open, as a real crawler would with a session: ours through a
``@delayed_init`` session object per worker (built on the worker's event loop, closed with
``aclose``), the hand-written asyncio peer through one such session, and the ``ThreadPool`` peer
through one ``http.client`` connection per thread.
"""

from __future__ import annotations

import asyncio
import atexit
import http.client
import json
import multiprocessing
import threading
import time
from collections.abc import Iterable
from typing import Any

from mtasklite_like import delayed_init

#: the server's latency, seconds
DELAY = 0.05
#: concurrent requests in all: 2 workers x 128, the asyncio semaphore, the ThreadPool
CONCURRENCY = 256

_server: dict[str, Any] = {}


# -- the server --------------------------------------------------------------------------------------


def _serve_forever(port_out: Any, delay: float) -> None:
    """The server: an ``asyncio.Protocol`` (no streams: it must never be the bottleneck), each answer
    written ``delay`` seconds after its request arrived."""
    arrivals: list[float] = []

    class Handler(asyncio.Protocol):
        def connection_made(self, transport: Any) -> None:
            self.transport = transport
            self.buffer = b""

        def data_received(self, data: bytes) -> None:
            self.buffer += data
            while b"\r\n\r\n" in self.buffer:
                head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
                path = head.split(b" ", 2)[1]
                if path == b"/stats":
                    self._answer(json.dumps(arrivals).encode())
                elif path == b"/reset":
                    arrivals.clear()
                    self._answer(b"ok")
                else:
                    arrivals.append(time.monotonic())
                    loop.call_later(delay, self._answer, path[1:])

        def _answer(self, body: bytes) -> None:
            if not self.transport.is_closing():
                self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))

    async def main() -> None:
        server = await loop.create_server(Handler, "127.0.0.1", 0, backlog=1024)
        port_out.put(server.sockets[0].getsockname()[1])
        async with server:
            await server.serve_forever()

    loop = asyncio.new_event_loop()
    loop.run_until_complete(main())


def start_server() -> dict[str, Any]:
    """Start the server process once (it lives until the benchmarks end); return notes for the table."""
    if "port" not in _server:
        ctx = multiprocessing.get_context("spawn")
        port_out = ctx.SimpleQueue()
        process = ctx.Process(target=_serve_forever, args=(port_out, DELAY), daemon=True)
        process.start()
        _server["port"] = port_out.get()
        _server["process"] = process
        atexit.register(process.terminate)
    return {"server_latency_ms": DELAY * 1000}


def port() -> int:
    return int(_server["port"])


def server_arrivals() -> list[float]:
    """When each request arrived since the last reset (server's monotonic clock)."""
    conn = http.client.HTTPConnection("127.0.0.1", port())
    conn.request("GET", "/stats")
    data = json.loads(conn.getresponse().read())
    conn.close()
    return list(data)


def reset_server() -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port())
    conn.request("GET", "/reset")
    conn.getresponse().read()
    conn.close()


# -- clients -----------------------------------------------------------------------------------------


class _Connections:
    """Keep-alive HTTP/1.1 connections to one server, reused across requests (one loop only)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def get(self, path: str) -> str:
        if self.idle:
            reader, writer = self.idle.pop()
        else:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.rsplit(b"Content-Length: ", 1)[1].split(b"\r\n", 1)[0])
            body = await reader.readexactly(length)
        except BaseException:
            writer.close()
            raise
        self.idle.append((reader, writer))
        return body.decode()

    def close(self) -> None:
        for _, writer in self.idle:
            writer.close()
        self.idle.clear()


@delayed_init
class Session:
    """One per worker, built on the worker's event loop: keep-alive connections to the server."""

    def __init__(self, port: int) -> None:
        self.connections = _Connections(port)

    async def __call__(self, path: str) -> str:
        return await self.connections.get(path)

    async def aclose(self) -> None:
        self.connections.close()


def paths(n: int) -> list[str]:
    return [f"/{i}" for i in range(n)]


def expected(n: int) -> list[str]:
    return [str(i) for i in range(n)]


def ours_http(task: Any, data: Iterable[str], *, n_jobs: int, concurrency: int, **options: Any) -> list[str]:
    """``Pool(Session(port), n_jobs, concurrency=...)`` over the paths (task is unused)."""
    from mtasklite_like import Pool

    with Pool(Session(port()), n_jobs=n_jobs, concurrency=concurrency, **options) as pool:
        return list(pool(data))


def asyncio_gather_http(task: Any, data: Iterable[str]) -> list[str]:
    """Hand-written: ``asyncio.Semaphore(256)`` around each request, ``asyncio.gather`` of them all."""

    async def main() -> list[str]:
        connections = _Connections(port())
        semaphore = asyncio.Semaphore(CONCURRENCY)

        async def one(path: str) -> str:
            async with semaphore:
                return await connections.get(path)

        try:
            return await asyncio.gather(*(one(p) for p in data))
        finally:
            connections.close()

    return asyncio.run(main())


def threadpool_http(task: Any, data: Iterable[str]) -> list[str]:
    """``multiprocessing.pool.ThreadPool(256).map`` with one keep-alive ``http.client`` connection
    per thread."""
    import multiprocessing.pool

    local = threading.local()
    opened: list[http.client.HTTPConnection] = []
    lock = threading.Lock()

    def get(path: str) -> str:
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = local.conn = http.client.HTTPConnection("127.0.0.1", port())
            with lock:
                opened.append(conn)
        conn.request("GET", path)
        return conn.getresponse().read().decode()

    with multiprocessing.pool.ThreadPool(CONCURRENCY) as pool:
        try:
            return pool.map(get, data)
        finally:
            for conn in opened:
                conn.close()


# -- the rate limit ----------------------------------------------------------------------------------


def _endless() -> Iterable[str]:
    i = 0
    while True:
        yield f"/{i}"
        i += 1


def rate_run(per_second: float, seconds: float) -> dict[str, Any]:
    """Run ``Pool(..., max_per_second=per_second)`` over an endless input for ``seconds`` after the
    first start; return the requests the server saw start in that span and the most in any 1 s."""
    from mtasklite_like import Pool

    reset_server()
    with Pool(Session(port()), n_jobs=2, use_threads=True, concurrency=16, max_per_second=per_second) as pool:
        first: float | None = None
        for _ in pool(_endless()):
            now = time.monotonic()
            first = now if first is None else first
            if now - first > seconds + 0.5:
                break
    times = sorted(server_arrivals())
    t0 = times[0]
    started = [t for t in times if t < t0 + seconds]
    most, j = 0, 0
    for i, t in enumerate(started):
        while started[j] <= t - 1.0:
            j += 1
        most = max(most, i - j + 1)
    return {"started": len(started), "max_per_1s": most, "seconds": seconds}


# -- async consumption of a CPU-bound map ---------------------------------------------------------------


def ours_async_for(task: Any, data: Iterable[Any], *, n_jobs: int, **options: Any) -> list[Any]:
    """``async for`` over ``Pool(task, n_jobs)(data)`` inside ``asyncio.run``."""
    from mtasklite_like import Pool

    async def main() -> list[Any]:
        with Pool(task, n_jobs=n_jobs, **options) as pool:
            return [r async for r in pool(data)]

    return asyncio.run(main())
