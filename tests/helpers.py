"""Module-level task functions and classes (picklable by every start method)."""

from __future__ import annotations

import os
import threading
import time

from mtasklite_like import delayed_init


def square(x):
    return x * x


def add(a, b):
    return a + b


def fail_on_3(x):
    if x == 3:
        raise ValueError(f"item {x} is bad")
    return x


def fail_odd(x):
    if x % 2:
        raise KeyError(x)
    return x


def sleep_then_return(x):
    seconds, value = x
    time.sleep(seconds)
    return value


def whoami(_x):
    return os.getpid(), threading.get_ident()


class Multiplier:
    """A callable instance."""

    def __init__(self, k):
        self.k = k

    def __call__(self, x):
        return self.k * x

    def times(self, x):
        return self.k * x


@delayed_init
class Counter:
    """Counts its calls; records where it was built."""

    built = 0

    def __init__(self, worker_id, offset=0):
        self.worker_id = worker_id
        self.offset = offset
        self.calls = 0
        self.pid = os.getpid()
        self.tid = threading.get_ident()
        self.env = os.environ.get("MTL_TEST_GPU")

    def __call__(self, x):
        self.calls += 1
        return (self.worker_id, self.pid, self.tid, id(self), self.calls, x + self.offset)

    @classmethod
    def describe(cls):
        return "counter"


@delayed_init
class EnvReader:
    def __init__(self):
        self.gpu = os.environ.get("MTL_TEST_GPU")
        self.pid = os.getpid()

    def __call__(self, _x):
        return self.gpu, self.pid, os.environ.get("MTL_TEST_GPU")


@delayed_init
class BrokenInit:
    def __init__(self, message):
        raise RuntimeError(message)

    def __call__(self, x):
        return x


@delayed_init
class NotCallable:
    def __init__(self):
        pass


def pid_running(pid):
    """True while ``pid`` exists and is not a zombie (a zombie has finished running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("State:"):
                    return line.split()[1] != "Z"
    except OSError:
        return False
    return True


def boom_in_init_helper():
    raise RuntimeError("initializer failed")


def remote_workers(backend, jobs):
    """True when workers run in other processes, so exceptions travel with their traceback as text:
    processes with more than one worker (one runs in the caller), and Ray actors always."""
    if backend.get("backend") == "ray":
        return True
    return jobs > 1 and not backend["use_threads"]
