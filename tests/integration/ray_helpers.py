"""Task functions and worker classes for the Ray tests (module level: actors import them by name)."""

from __future__ import annotations

import os
import signal
import time

from mtasklite_like import delayed_init


def tag_from_env(x):
    return os.environ.get("MTL_INIT_TAG"), x


def set_tag(tag):
    os.environ["MTL_INIT_TAG"] = tag


def gpu_view(_x):
    import ray

    return os.getpid(), os.environ.get("CUDA_VISIBLE_DEVICES"), tuple(ray.get_gpu_ids())


def fail_or_wait(x):
    """'boom' fails at once; anything else sleeps that many seconds."""
    if x == "boom":
        raise LookupError("fails fast")
    time.sleep(x)
    return x


def slow_square(x):
    time.sleep(0.02)
    return x * x


def exit_on(x, bad, how="os_exit", then=0.005):
    """Item ``bad`` ends its actor; the items after it take ``then`` seconds, those before 5 ms."""
    if x == bad:
        if how == "os_exit":
            os._exit(1)
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(then if x > bad else 0.005)
    return x


def record_then_square(folder, x):
    """Leaves a file per computed item, so a test can tell which items ran."""
    with open(os.path.join(folder, f"done-{x}-{os.getpid()}-{time.monotonic_ns()}"), "w"):
        pass
    return x * x


def array_of(n):
    import numpy as np

    return np.full(n, 7, dtype=np.uint8)


def array_sum(a):
    return int(a.sum()), a.flags.writeable


@delayed_init
class SlowInit:
    def __init__(self, seconds):
        time.sleep(seconds)

    def __call__(self, x):
        return x


@delayed_init
class Pid:
    def __init__(self):
        self.pid = os.getpid()

    def __call__(self, x):
        return self.pid, x


def pid_and_item(x):
    return os.getpid(), x


def report_then_wait(job):
    """Reports ``fraction`` from inside the task (``mtasklite_like.progress``), then waits for the
    file ``release`` (a minute at most)."""
    from mtasklite_like import progress

    fraction, release = job
    progress(fraction)
    deadline = time.monotonic() + 60
    while not os.path.exists(release):
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{release} never appeared")
        time.sleep(0.005)
    return fraction


_KEPT: list[bytearray] = []


def keep_memory(x):
    """Keeps 24 MiB of real, touched memory per item, never freed; returns the item and the pid."""
    block = bytearray(24 << 20)
    block[::4096] = b"\x01" * len(range(0, len(block), 4096))
    _KEPT.append(block)
    return x, os.getpid()


def log_item(x):
    """Logs one INFO and one DEBUG record of the logger ``tests.ray_logs``; warns on item 5."""
    import logging
    import warnings

    logger = logging.getLogger("tests.ray_logs")
    logger.info("ray item %s", x)
    logger.debug("ray hidden %s", x)
    if x == 5:
        warnings.warn("careful on ray", RuntimeWarning, stacklevel=1)
    return x
