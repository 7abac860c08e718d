"""Module-level task functions for the journal, mp_lock and CLI tests (picklable by name).

Tasks that record their calls append one line per call to the file named by the environment
variable ``MTL_TEST_LOG`` (opened with ``O_APPEND``, so lines from several processes never mix):
that file is the side-effect counter which shows what was computed, and how often.
"""

from __future__ import annotations

import os
import threading
import time

_fds: dict[str, int] = {}
_lock = threading.Lock()


def log_call(key: object) -> None:
    path = os.environ.get("MTL_TEST_LOG")
    if not path:
        return
    with _lock:
        fd = _fds.get(path)
        if fd is None:
            fd = _fds[path] = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.write(fd, f"{key}\n".encode())


def read_log(path: str) -> list[str]:
    try:
        with open(path) as f:
            return [line.rstrip("\n") for line in f if line.endswith("\n")]
    except FileNotFoundError:
        return []


def logged_square(x: int) -> int:
    log_call(x)
    return x * x


def slow_logged_square(x: int) -> int:
    """About 50 µs of waiting per item, so a run of 20,000 items lasts long enough to be killed."""
    log_call(x)
    time.sleep(0.00005)
    return x * x


def other_function(x: int) -> int:
    return x + 1


def logged_fail_on_3(x: int) -> int:
    log_call(x)
    if x % 10 == 3:
        raise ValueError(f"item {x} is bad")
    return x * x


def logged_name(record: dict) -> str:
    log_call(record["name"])
    return record["name"].upper()


class Unpicklable:
    """A result neither pickle nor dill can store."""

    def __reduce__(self):
        raise TypeError("Unpicklable objects cannot be pickled")


def unpicklable_for_7(x: int) -> object:
    log_call(x)
    if x == 7:
        return Unpicklable()
    return x * x


def logged_upper(line: str) -> str:
    log_call(line)
    time.sleep(0.001)
    return line.upper()


def logged_length_dict(line: str) -> dict:
    log_call(line)
    return {"line": line, "length": len(line)}


# -- mp_lock --------------------------------------------------------------------------------------


def mp_init(shared_data):
    log_call(f"init {os.getpid()}")
    return {"offset": shared_data["offset"]}


def mp_process(data, shared_data={}, init_values={}):  # noqa: B006 - the documented signature
    log_call(data)
    print(f"processing {data}")
    if data.startswith("bad") and not os.path.exists(shared_data.get("fixed", "/nonexistent")):
        raise ValueError(f"cannot process {data}")
    return int(data.removeprefix("bad")) + init_values.get("offset", 0)


def mp_process_batch(batch, shared_data={}, init_values={}):  # noqa: B006
    log_call(",".join(batch))
    return [int(x) * 2 for x in batch]


def logged_part_squares(xs: list[int]) -> list[int]:
    """A part of a map-reduce call: logs the part's first item; fails on the item named by
    ``MTL_TEST_FAIL_ITEM`` when that variable is set."""
    log_call(xs[0])
    bad = os.environ.get("MTL_TEST_FAIL_ITEM")
    if bad is not None and int(bad) in xs:
        raise ValueError(f"part {xs[0]} is bad")
    return [x * x for x in xs]


def part_cubes(xs: list[int]) -> list[int]:
    return [x**3 for x in xs]


async def async_logged_square(x: int) -> int:
    """A coroutine worker that records its calls."""
    log_call(x)
    return x * x


def journal_records(run_dir: str) -> list[tuple[int, bytes]]:
    """Every complete record of the journal in ``run_dir`` as ``(kind, payload)``, in file order
    (every record, not the merged view that read_journal gives)."""
    import struct
    from pathlib import Path

    from mtasklite_like._journal import JOURNAL_FILE, MAGIC

    data = (Path(run_dir) / JOURNAL_FILE).read_bytes()
    _, length = struct.unpack_from("<HI", data, len(MAGIC))
    pos = len(MAGIC) + 6 + length + 4
    records = []
    while pos + 9 <= len(data):
        size, _, kind = struct.unpack_from("<IIB", data, pos)
        if pos + 9 + size > len(data):
            break
        records.append((kind, data[pos + 9 : pos + 9 + size]))
        pos += 9 + size
    return records


def mp_init_missing_module(shared_data):
    """An init_function that fails the way a missing dependency does."""
    import mtasklite_like_no_such_module  # noqa: F401
