"""Self-contained demo: run ``python -m mtasklite_like demo``.

It times two realistic workloads serially and with :class:`mtasklite_like.Pool`, checks that the parallel
results equal the serial ones, and prints a table of the speed-ups:

* **CPU-bound** (processes): synthetic text documents are tokenised, their words and bigrams counted, and a
  MinHash signature (the sketch used for near-duplicate detection) is computed for each.  This is pure
  Python, so threads would be serialised by the GIL and only processes help.
* **I/O-bound** (threads): "images" are downloaded from a local HTTP server that adds an artificial latency
  to every request, a stand-in for fetching files from a slow remote store.  Workers spend their time
  waiting, so many threads help even on one core.

Everything is generated here: nothing is downloaded and nothing outside the process is read (but for the
system's load average).  The only network traffic goes to a server bound to 127.0.0.1.

Speed-ups measured on a busy machine are lower than on an idle one, and a bare "0.8x" would read as a
verdict on the pool.  So the demo reads the load average before and during its runs (:class:`LoadWatch`),
takes out what its own work can have added, and when other work kept the CPUs it may use busy, says so next
to the figures: "machine busy: load 3.9 on 2 CPUs".
"""

from __future__ import annotations

import argparse
import hashlib
import http.server
import itertools
import math
import os
import random
import re
import sys
import threading
import time
import urllib.request
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from tqdm import tqdm

T = TypeVar("T")
R = TypeVar("R")

# --------------------------------------------------------------------------------------------------------
# CPU-bound workload: document statistics and MinHash signatures
# --------------------------------------------------------------------------------------------------------

#: Number of hash functions in a MinHash signature; sets the CPU cost per document (~10-30 ms each).
MINHASH_PERMUTATIONS = 64
#: A Mersenne prime larger than any 32-bit shingle hash, the modulus of the universal hash family.
_MERSENNE_61 = (1 << 61) - 1
#: Fixed coefficients (a, b) for the hash family h(x) = (a*x + b) mod p, the same in every worker process.
_MINHASH_COEFFS: tuple[tuple[int, int], ...] = tuple(
    (rng.randrange(1, _MERSENNE_61), rng.randrange(0, _MERSENNE_61))
    for rng in [random.Random(20240607)]
    for _ in range(MINHASH_PERMUTATIONS)
)
_TOKEN_RE = re.compile(r"[a-z]+")


def make_vocabulary(size: int, seed: int) -> list[str]:
    """Return ``size`` distinct pronounceable pseudo-words, so that documents look like text."""
    rng = random.Random(seed)
    consonants, vowels = "bcdfghklmnprstvz", "aeiou"
    words: set[str] = set()
    while len(words) < size:
        syllables = rng.randint(1, 4)
        words.add("".join(rng.choice(consonants) + rng.choice(vowels) for _ in range(syllables)))
    return sorted(words)


def make_documents(count: int, words_per_doc: int, seed: int = 7) -> list[str]:
    """Generate ``count`` synthetic documents with a Zipf-like word distribution and some punctuation.

    A skewed distribution matters: real text has frequent words and a long tail, which gives the word and
    bigram counts something to find.
    """
    rng = random.Random(seed)
    vocab = make_vocabulary(3000, seed)
    rng.shuffle(vocab)  # decouple word frequency from alphabetical order
    weights = [1.0 / (rank + 1) for rank in range(len(vocab))]
    docs = []
    for _ in range(count):
        n_words = rng.randint(words_per_doc // 2, words_per_doc * 3 // 2)
        words = rng.choices(vocab, weights=weights, k=n_words)
        parts: list[str] = []
        for i, word in enumerate(words):
            if i == 0 or parts[-1].endswith("."):
                word = word.capitalize()
            parts.append(word + ("." if rng.random() < 0.08 else ("," if rng.random() < 0.05 else "")))
        docs.append(" ".join(parts))
    return docs


def analyze_document(text: str) -> tuple[int, int, tuple[tuple[str, int], ...], tuple[str, ...], str]:
    """Tokenise one document and summarise it.

    Returns ``(n_tokens, n_unique, top 5 words with counts, top 3 bigrams, MinHash digest)``.  The shingle
    hashes use ``zlib.crc32`` rather than the built-in ``hash``, which is salted per process and would make
    results differ between workers.
    """
    tokens = _TOKEN_RE.findall(text.lower())
    word_counts = Counter(tokens)
    bigrams = Counter(itertools.pairwise(tokens))
    top_bigrams = tuple(f"{a} {b}" for (a, b), _ in bigrams.most_common(3))

    shingles = {zlib.crc32(f"{a} {b}".encode()) for a, b in bigrams}
    signature = [min((a * x + b) % _MERSENNE_61 for x in shingles) for a, b in _MINHASH_COEFFS]
    digest = hashlib.sha256(",".join(map(str, signature)).encode()).hexdigest()[:16]
    return len(tokens), len(word_counts), tuple(word_counts.most_common(5)), top_bigrams, digest


# --------------------------------------------------------------------------------------------------------
# I/O-bound workload: downloading "images" from a slow local HTTP server
# --------------------------------------------------------------------------------------------------------

#: Artificial latency of each HTTP response, standing in for a remote server's round trip.
REQUEST_LATENCY_S = 0.02
#: No proxies: ``urllib`` would otherwise honour ``http_proxy`` from the environment, even for 127.0.0.1.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def make_images(count: int, seed: int = 11) -> dict[str, bytes]:
    """Generate ``count`` fake PNG files (a real signature followed by random bytes), keyed by URL path."""
    rng = random.Random(seed)
    png_signature = b"\x89PNG\r\n\x1a\n"
    return {
        f"/images/{i:04d}.png": png_signature + rng.randbytes(rng.randint(4_000, 60_000))
        for i in range(count)
    }


class _ImageHandler(http.server.BaseHTTPRequestHandler):
    """Serve ``server.images`` after sleeping ``REQUEST_LATENCY_S``; 404 for unknown paths."""

    server: _ImageServer

    def do_GET(self) -> None:
        time.sleep(REQUEST_LATENCY_S)
        body = self.server.images.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Keep the demo's output clean: no line per request on stderr."""


class _ImageServer(http.server.ThreadingHTTPServer):
    """A threaded HTTP server holding the images it serves.

    The listen backlog is raised from the default of 5 so that 16 simultaneous connections are not dropped
    (a dropped SYN is retried only after a second, which would spoil the timings).
    """

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, images: dict[str, bytes]) -> None:
        super().__init__(("127.0.0.1", 0), _ImageHandler)
        self.images = images


def fetch_image(url: str) -> tuple[int, str]:
    """Download one URL and return ``(size in bytes, first 16 hex digits of its SHA-256)``."""
    with _OPENER.open(url, timeout=30) as response:
        data = response.read()
    return len(data), hashlib.sha256(data).hexdigest()[:16]


# --------------------------------------------------------------------------------------------------------
# The machine's load
# --------------------------------------------------------------------------------------------------------

#: Seconds between two readings of the load average during the runs (the kernel updates it every 5 s).
LOAD_SAMPLE_S = 0.5
#: The time constant of the 1-minute load average, in seconds.
_LOAD_WINDOW_S = 60.0


@dataclass(frozen=True)
class LoadReading:
    """The 1-minute load average, and how many CPUs this process may run on."""

    load: float
    cpus: int


def usable_cpus() -> int:
    """CPUs this process may run on: its affinity mask where there is one (a container or ``taskset``
    often allows fewer than the machine has), else the machine's count."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # no affinity mask on this system (macOS, Windows)
        return max(1, os.cpu_count() or 1)


def read_load() -> LoadReading | None:
    """The current load reading, or None where the system has no load average (Windows)."""
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return None
    return LoadReading(load, usable_cpus())


def is_busy(others: float, cpus: int) -> bool:
    """Whether other work, ``others`` CPUs' worth on average, is enough to lower the speed-ups: a
    quarter of the usable CPUs, and at least half of one."""
    return others >= max(0.5, cpus / 4)


class LoadWatch:
    """Readings of the load before and during the timed runs, and whether other work made them slow.

    The load average counts every runnable process, the demo's own too. Its own share is at most the CPUs
    it keeps busy (``own_cpus``) times the part of the 1-minute average that the time since the first
    reading fills (``1 - exp(-elapsed / 60)``): that upper bound is taken out of each reading made during
    the runs, so the demo never calls the machine busy because of itself. ``read`` is the reading function
    (:func:`read_load`; tests pass their own).
    """

    def __init__(
        self, own_cpus: int, read: Callable[[], LoadReading | None] = read_load, every: float = LOAD_SAMPLE_S
    ) -> None:
        self.own_cpus = own_cpus
        self._read = read
        self._every = every
        #: (seconds since the first reading, reading) for each reading made
        self.readings: list[tuple[float, LoadReading]] = []
        self._t0 = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sample(self) -> None:
        """Take one reading now."""
        reading = self._read()
        if reading is not None:
            self.readings.append((time.monotonic() - self._t0, reading))

    def __enter__(self) -> LoadWatch:
        self._t0 = time.monotonic()
        self.sample()  # before the runs
        self._thread = threading.Thread(target=self._loop, name="demo-load-watch", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.sample()  # at the end of the runs

    def _loop(self) -> None:
        while not self._stop.wait(self._every):
            self.sample()

    def others(self) -> tuple[float, LoadReading] | None:
        """The most load other work put on the machine (the demo's own share taken out), with the
        reading it came from; None without readings."""
        best: tuple[float, LoadReading] | None = None
        for elapsed, reading in self.readings:
            own = self.own_cpus * (1 - math.exp(-elapsed / _LOAD_WINDOW_S))
            others = max(0.0, reading.load - own)
            if best is None or others > best[0]:
                best = (others, reading)
        return best

    def note(self) -> str | None:
        """``machine busy: load L on N CPUs`` when other work was enough to lower the speed-ups, else None."""
        found = self.others()
        if found is None:
            return None
        others, reading = found
        if not is_busy(others, reading.cpus):
            return None
        cpus = f"{reading.cpus} CPU" + ("" if reading.cpus == 1 else "s")
        return f"machine busy: load {reading.load:.1f} on {cpus}"


# --------------------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------------------


@dataclass
class Timing:
    """One row of the summary table."""

    workload: str
    items: int
    serial_s: float
    parallel_s: float
    #: the parallel run's statistics (``RunStats``)
    stats: Any = None

    @property
    def speedup(self) -> float:
        """Serial time divided by parallel time."""
        return self.serial_s / self.parallel_s if self.parallel_s > 0 else float("inf")


def _run_serial(fn: Callable[[T], R], items: Sequence[T]) -> tuple[list[R], float]:
    """Apply ``fn`` to every item in a plain loop; return the results and the seconds taken."""
    start = time.perf_counter()
    results = [fn(item) for item in items]
    return results, time.perf_counter() - start


def _run_parallel(
    fn: Callable[[T], R], items: Sequence[T], *, n_jobs: int, use_threads: bool, desc: str, progress: bool
) -> tuple[list[R], float, Any]:
    """Apply ``fn`` with a :class:`Pool` behind a progress bar; return the results, the seconds taken
    and the run's statistics.

    The time includes starting and stopping the workers, since a user pays for that too.
    """
    from mtasklite_like import Pool

    start = time.perf_counter()
    pool = Pool(fn, n_jobs=n_jobs, use_threads=use_threads)
    with pool:
        results = pool(items)
        collected = list(tqdm(results, total=len(items), desc=desc, disable=not progress, leave=False))
    return collected, time.perf_counter() - start, results.stats()


def _compare(name: str, serial: list[Any], parallel: list[Any]) -> str | None:
    """Return a message describing the first difference between two result lists, or None if equal."""
    if len(serial) != len(parallel):
        return f"{name}: {len(parallel)} parallel results but {len(serial)} serial ones"
    for i, (expected, got) in enumerate(zip(serial, parallel, strict=True)):
        if expected != got:
            return f"{name}: item {i} differs: serial {expected!r}, parallel {got!r}"
    return None


def _format_table(rows: list[Timing], note: str | None = None) -> str:
    """Render the timings as an aligned text table; ``note`` (the machine was busy) goes next to every
    speed-up, since each was measured under that load."""
    header = ("workload", "items", "serial s", "parallel s", "speed-up")
    lines = [
        (r.workload, str(r.items), f"{r.serial_s:.2f}", f"{r.parallel_s:.2f}", f"{r.speedup:.1f}x")
        for r in rows
    ]
    widths = [max(len(row[i]) for row in [header, *lines]) for i in range(len(header))]

    def fmt(row: Sequence[str], suffix: str = "") -> str:
        return "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ) + suffix

    suffix = "" if note is None else f"  ({note})"
    rule = "  ".join("-" * w for w in widths)
    return "\n".join([fmt(header), rule, *(fmt(line, suffix) for line in lines)])


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m mtasklite_like demo",
        description="Time a CPU-bound and an I/O-bound workload serially and with mtasklite_like.Pool.",
    )
    parser.add_argument(
        "--n-jobs",
        type=int,
        default=usable_cpus(),
        help="worker processes for the CPU-bound workload (default: the CPUs this process may use, "
        "%(default)s here)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="small workloads: the whole demo takes a few seconds"
    )
    parser.add_argument("--no-progress", action="store_true", help="do not show progress bars")
    parser.add_argument(
        "--stats", action="store_true",
        help="print each parallel run's statistics as a table (per worker: items, time in tasks and "
        "waiting, start-up, bytes); without it, what limited each run, in one line",
    )
    args = parser.parse_args(argv)
    if args.n_jobs < 1:
        parser.error("--n-jobs must be at least 1")
    return args


def main(argv: list[str] | None = None, *, read: Callable[[], LoadReading | None] = read_load) -> int:
    """Run the demo; return 0 on success, 1 if parallel and serial results differ.

    ``read`` gives the machine's load (see :class:`LoadWatch`); tests pass a function of their own.
    """
    args = _parse_args(argv)
    own_cpus = min(args.n_jobs, usable_cpus())
    with LoadWatch(own_cpus, read) as watch:
        rows = _run_workloads(args)
    if rows is None:
        return 1
    note = watch.note()
    print()
    print(_format_table(rows, note))
    if note is not None:
        print("\nSpeed-ups are lower than on an idle machine: other work kept its CPUs busy before or during "
              "the runs\n(the load average, less what the demo itself can have added).")
    print("\nWhat limited each parallel run (--stats for the figures):" if not args.stats else "")
    for row in rows:
        if args.stats:
            print(f"{row.workload}:\n{row.stats}\n")
        else:
            print(f"  {row.workload}: {row.stats.verdict()}")
    print("\nParallel results equal the serial ones.")
    return 0


def _run_workloads(args: argparse.Namespace) -> list[Timing] | None:
    """Time both workloads; None (after saying why on stderr) if parallel and serial results differ."""
    progress = not args.no_progress
    n_docs, words_per_doc, n_images, io_threads = (40, 2000, 40, 16) if args.quick else (200, 2000, 200, 16)
    rows: list[Timing] = []

    processes = f"{args.n_jobs} process" + ("" if args.n_jobs == 1 else "es")
    print(f"CPU-bound: analysing {n_docs} synthetic documents, serial vs. {processes}", flush=True)
    docs = make_documents(n_docs, words_per_doc)
    serial, serial_s = _run_serial(analyze_document, docs)
    parallel, parallel_s, stats = _run_parallel(
        analyze_document, docs, n_jobs=args.n_jobs, use_threads=False, desc="documents", progress=progress
    )
    if (problem := _compare("CPU-bound", serial, parallel)) is not None:
        print(f"error: {problem}", file=sys.stderr)
        return None
    rows.append(Timing(f"CPU-bound, {processes}", n_docs, serial_s, parallel_s, stats))

    print(f"I/O-bound: downloading {n_images} images from a local server, serial vs. {io_threads} threads")
    sys.stdout.flush()
    server = _ImageServer(make_images(n_images))
    server_thread = threading.Thread(target=server.serve_forever, name="demo-image-server", daemon=True)
    server_thread.start()
    try:
        host, port = str(server.server_address[0]), int(server.server_address[1])
        urls = [f"http://{host}:{port}{path}" for path in server.images]
        serial_io, serial_s = _run_serial(fetch_image, urls)
        parallel_io, parallel_s, stats = _run_parallel(
            fetch_image, urls, n_jobs=io_threads, use_threads=True, desc="downloads", progress=progress
        )
    finally:
        server.shutdown()
        server.server_close()
        server_thread.join()
    if (problem := _compare("I/O-bound", serial_io, parallel_io)) is not None:
        print(f"error: {problem}", file=sys.stderr)
        return None
    rows.append(Timing(f"I/O-bound, {io_threads} threads", n_images, serial_s, parallel_s, stats))
    return rows


if __name__ == "__main__":
    raise SystemExit(main())
