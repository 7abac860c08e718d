"""Task functions for tests/test_zerocopy.py (process workers import them by name)."""

import os
import signal
import sys
import time

MIB = 1 << 20


def identity(x):
    return x


def describe(x):
    """What the worker received: its type, its size, and whether NumPy is loaded there."""
    return type(x).__name__, len(x), "numpy" in sys.modules


def big_result(n):
    """A large result built in the worker: an array-free buffer of n MiB."""
    return bytearray(b"r" * (n * MIB))


def fail_on_marked(x):
    if x[:1] == b"F":
        raise ValueError(f"marked item of {len(x)} bytes")
    return x[::-1]


def die_on_marked(x):
    if x[:1] == b"K":
        os.kill(os.getpid(), signal.SIGKILL)
    return len(x)


def hang_on_marked(x):
    if x[:1] == b"H":
        time.sleep(60)
    return len(x)
