"""Where the pool reads memory from: one small interface, one real implementation, swappable.

Every reading of memory by the pool goes through :func:`current` (the caller's watch, the run's
pressure gate, each worker's own limit), so a test can put a :class:`MemorySource` of its own in
place with :func:`use_source` and drive recycling, pressure and kills deterministically; worker
processes started by ``fork`` inherit it.

The real source, :class:`ProcSource`, reads Linux's ``/proc`` and cgroup files directly (no
dependency): a process's resident size from ``/proc/PID/statm`` (one small read, a few
microseconds), its own memory (the pages no other process shares: USS) from
``/proc/PID/smaps_rollup`` (a walk of its page tables, so read only to confirm a limit is crossed),
its peak from ``VmHWM`` in ``/proc/PID/status``; the memory available to the pool from its cgroup
(limit minus working set: usage without inactive page cache) when the cgroup has a limit, and
never more than the system's ``MemAvailable``; the OOM killer's counters from the cgroup's
``memory.events`` (v2) or ``memory.oom_control`` (v1), and ``/proc/vmstat``. Elsewhere it falls
back on psutil when it is installed, and reads nothing (None) when it is not.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["MemorySource", "ProcSource", "current", "use_source"]

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
#: a cgroup v1 "no limit" reads as a huge number (the largest page-aligned int64)
_NO_LIMIT = 1 << 60


class MemorySource:
    """What the pool asks of memory. Every method may answer None: not known here.

    ``pid`` None means this process. Sizes are in bytes.
    """

    def rss(self, pid: int | None = None) -> int | None:
        """Resident set size now: cheap, but counts pages shared with other processes."""
        return None

    def own(self, pid: int | None = None) -> int | None:
        """Memory of the process's own (USS: private pages): what ending it gives back. Costly."""
        return None

    def peak(self, pid: int | None = None) -> int | None:
        """The largest resident set size the process has had."""
        return None

    def available(self) -> tuple[int, int] | None:
        """``(available, total)``: memory the pool may still use, and all it may ever use."""
        return None

    def oom_kills(self) -> int | None:
        """A counter of the OOM killer's kills that concern this pool (only its changes matter)."""
        return None


class ProcSource(MemorySource):
    """Linux's ``/proc`` and cgroup files; psutil elsewhere, when installed."""

    def __init__(self) -> None:
        self._proc = os.path.exists("/proc/self/statm")
        self._self_fd: int | None = None
        self._self_pid = -1
        #: the cgroup directory whose limit applies, and its file names (v1 or v2); False: not
        #: looked up yet (limits are set when a container starts: looked up once)
        self._limited: tuple[Path, str, str, str] | bool | None = False
        self._cgroup: Path | bool | None = False
        #: the files that count OOM kills here (looked up once: read at every pool's start)
        self._oom_files: list[str] | None = None

    # -- one process ------------------------------------------------------------------------------

    def rss(self, pid: int | None = None) -> int | None:
        if not self._proc:
            return _psutil_rss(pid)
        try:
            if pid is None or pid == os.getpid():
                data = os.pread(self._own_statm(), 64, 0)
            else:
                fd = os.open(f"/proc/{pid}/statm", os.O_RDONLY)
                try:
                    data = os.read(fd, 64)
                finally:
                    os.close(fd)
            return int(data.split()[1]) * _PAGE
        except (OSError, ValueError, IndexError):
            return None

    def _own_statm(self) -> int:
        """This process's statm, kept open (a fork child opens its own on first use)."""
        pid = os.getpid()
        if self._self_fd is None or self._self_pid != pid:
            self._self_fd = os.open("/proc/self/statm", os.O_RDONLY)
            self._self_pid = pid
        return self._self_fd

    def own(self, pid: int | None = None) -> int | None:
        if not self._proc:
            return _psutil_uss(pid)
        fields = _read_fields(f"/proc/{'self' if pid is None else pid}/smaps_rollup")
        if fields is None:
            return None
        private = [fields.get(k) for k in ("Private_Clean", "Private_Dirty", "Private_Hugetlb")]
        if private[0] is None or private[1] is None:
            return None
        return sum(v for v in private if v is not None) * 1024

    def peak(self, pid: int | None = None) -> int | None:
        if not self._proc:
            return None
        value = _field(_read_raw(f"/proc/{'self' if pid is None else pid}/status"), b"VmHWM:")
        return None if value is None else value * 1024

    # -- the whole pool ---------------------------------------------------------------------------

    def available(self) -> tuple[int, int] | None:
        if not self._proc:
            return _psutil_available()
        meminfo = _read_raw("/proc/meminfo")
        available, total = _field(meminfo, b"MemAvailable:"), _field(meminfo, b"MemTotal:")
        if available is None or total is None:
            return None
        available, total = available * 1024, total * 1024
        limited = self._cgroup_room()
        if limited is not None:
            room, limit = limited
            available, total = min(available, room), min(total, limit)
        return max(0, available), total

    def _cgroup_room(self) -> tuple[int, int] | None:
        """``(limit - working set, limit)`` of the nearest cgroup with a memory limit, if any."""
        if self._limited is False:
            self._limited = self._find_limited()
        if not isinstance(self._limited, tuple):
            return None
        directory, limit_name, usage_name, inactive = self._limited
        limit, usage = _read_int(directory / limit_name), _read_int(directory / usage_name)
        if limit is None or usage is None or limit >= _NO_LIMIT:
            return None
        stat = _read_fields(directory / "memory.stat", separator=" ") or {}
        working = usage - min(usage, stat.get(inactive, 0))
        return limit - working, limit

    def _find_limited(self) -> tuple[Path, str, str, str] | None:
        group = self._cgroup_dir()
        if group is None:
            return None
        v2 = (group / "memory.max").exists() or (group / "memory.current").exists()
        names = (
            ("memory.max", "memory.current", "inactive_file") if v2
            else ("memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file")
        )
        for directory in (group, *group.parents):
            limit = _read_int(directory / names[0])
            if limit is None:
                if not (directory / names[1]).exists():
                    return None  # above the cgroup mount
                continue
            if limit < _NO_LIMIT:
                return (directory, *names)
        return None

    def _cgroup_dir(self) -> Path | None:
        if self._cgroup is False:
            self._cgroup = _find_cgroup()
        return self._cgroup if isinstance(self._cgroup, Path) else None

    def oom_kills(self) -> int | None:
        if not self._proc:
            return None
        if self._oom_files is None:
            self._oom_files = self._find_oom_files()
        counts = [_field(_read_raw(path), b"oom_kill ") for path in self._oom_files]
        known = [c for c in counts if c is not None]
        return sum(known) if known else None

    def _find_oom_files(self) -> list[str]:
        """/proc/vmstat, and the OOM counters of this process's memory cgroup and its parents."""
        files = ["/proc/vmstat"]
        group = self._cgroup_dir()
        if group is not None:
            for directory in (group, *group.parents):
                for name in ("memory.events", "memory.oom_control"):
                    if (directory / name).exists():
                        files.append(str(directory / name))
                if not (directory / "cgroup.procs").exists():
                    break
        return files


def _find_cgroup() -> Path | None:
    """The directory of this process's memory cgroup (v2, or v1's memory controller), if any."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    root = Path("/sys/fs/cgroup")
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if "memory" in controllers.split(","):
            base = root / "memory"
        elif controllers == "" and (root / "cgroup.controllers").exists():
            base = root
        else:
            continue
        candidate = base / path.lstrip("/")
        # In a container the process's path is often not visible: its cgroup is the mount's root.
        return candidate if candidate.is_dir() else base
    return None


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    if text == "max":
        return _NO_LIMIT
    try:
        return int(text)
    except ValueError:
        return None


def _read_raw(path: str) -> bytes:
    """A small file's bytes (b"" when it cannot be read)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return b""
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError:
        return b""
    finally:
        os.close(fd)


def _field(text: bytes, name: bytes) -> int | None:
    """The number after ``name`` at the start of a line of ``text`` (None when absent)."""
    at = text.find(b"\n" + name)
    if at < 0:
        if not text.startswith(name):
            return None
        at = -1
    words = text[at + 1 + len(name):text.find(b"\n", at + 1)].split()
    try:
        return int(words[0])
    except (IndexError, ValueError):
        return None


def _read_fields(path: str | Path, separator: str = ":") -> dict[str, int] | None:
    """``name: value [kB]`` lines as a dict (values as written, in kB where the file says kB)."""
    try:
        with open(path, "rb") as f:
            text = f.read().decode("ascii", "replace")
    except OSError:
        return None
    fields: dict[str, int] = {}
    for line in text.splitlines():
        name, _, rest = line.partition(separator)
        words = rest.split()
        if words:
            with contextlib.suppress(ValueError):
                fields[name.strip()] = int(words[0])
    return fields


def _psutil() -> Any:
    try:
        import psutil  # type: ignore[import-untyped]
    except ImportError:
        return None
    return psutil


def _psutil_rss(pid: int | None) -> int | None:
    psutil = _psutil()
    try:
        return None if psutil is None else int(psutil.Process(pid).memory_info().rss)
    except Exception:
        return None


def _psutil_uss(pid: int | None) -> int | None:
    psutil = _psutil()
    try:
        return None if psutil is None else int(psutil.Process(pid).memory_full_info().uss)
    except Exception:
        return None


def _psutil_available() -> tuple[int, int] | None:
    psutil = _psutil()
    if psutil is None:
        return None
    memory = psutil.virtual_memory()
    return int(memory.available), int(memory.total)


_source: MemorySource | None = None


def current() -> MemorySource:
    """The source every reading of memory goes through (the real one unless a test swapped it)."""
    global _source
    if _source is None:
        _source = ProcSource()
    return _source


@contextlib.contextmanager
def use_source(source: MemorySource) -> Iterator[MemorySource]:
    """Read memory from ``source`` inside the block (and in worker processes forked there)."""
    global _source
    old, _source = _source, source
    try:
        yield source
    finally:
        _source = old
