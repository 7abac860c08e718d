"""Sizes as users write them: ``2 << 30``, ``"2GiB"``, ``"512 MB"``, ``"10%"``.

Units follow the IEC and SI prefixes: ``KiB``/``MiB``/``GiB``/``TiB`` are powers of 1024,
``kB``/``MB``/``GB``/``TB`` powers of 1000, and the bare letters ``K``/``M``/``G``/``T`` (as in
``docker --memory 2g`` or ``ulimit``) powers of 1024. Case is ignored, so is space between the
number and the unit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

__all__ = ["Threshold", "format_bytes", "parse_bytes", "parse_threshold"]

_UNITS = {
    "": 1, "b": 1,
    "k": 1 << 10, "kib": 1 << 10, "kb": 1000,
    "m": 1 << 20, "mib": 1 << 20, "mb": 1000**2,
    "g": 1 << 30, "gib": 1 << 30, "gb": 1000**3,
    "t": 1 << 40, "tib": 1 << 40, "tb": 1000**4,
}
_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([a-zA-Z]*)\s*$")


def parse_bytes(value: Any, name: str) -> int:
    """A number of bytes >= 1 from an int or a string such as ``"2GiB"``; ``name`` is the option
    the messages speak of."""
    if isinstance(value, bool):
        raise TypeError(_size_message(name, value))
    if isinstance(value, int):
        if value < 1:
            raise ValueError(_size_message(name, value))
        return value
    if isinstance(value, float) and value.is_integer() and value >= 1:
        return int(value)
    if isinstance(value, str):
        match = _SIZE.match(value)
        if match is not None:
            unit = _UNITS.get(match.group(2).lower())
            if unit is not None:
                size = int(float(match.group(1)) * unit)
                if size >= 1:
                    return size
        raise ValueError(_size_message(name, value))
    raise TypeError(_size_message(name, value))


def _size_message(name: str, value: Any) -> str:
    return (
        f"{name} must be a number of bytes >= 1, such as 2 << 30 or '2GiB' (units: KiB, MiB, GiB, TiB; "
        f"kB, MB, GB, TB; K, M, G, T), or None; not {value!r:.40}"
    )


@dataclass(frozen=True)
class Threshold:
    """An amount of memory given in bytes or as a fraction of the memory there is (``"10%"``)."""

    bytes: int | None = None
    fraction: float | None = None

    def of(self, total: int) -> int:
        """The threshold in bytes, out of ``total`` bytes."""
        if self.bytes is not None:
            return self.bytes
        assert self.fraction is not None
        return int(total * self.fraction)

    def __str__(self) -> str:
        if self.bytes is not None:
            return format_bytes(self.bytes)
        assert self.fraction is not None
        return f"{self.fraction * 100:g}%"


def parse_threshold(value: Any, name: str) -> Threshold:
    """Bytes (as :func:`parse_bytes` reads them) or a percentage such as ``"10%"`` (above 0, below
    100)."""
    if isinstance(value, Threshold):
        return value
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            percent = float(value.strip()[:-1])
        except ValueError:
            percent = -1.0
        if not 0 < percent < 100:
            raise ValueError(
                f"{name} as a percentage must be above 0% and below 100%, such as '10%'; not {value!r:.40}"
            )
        return Threshold(fraction=percent / 100)
    try:
        return Threshold(bytes=parse_bytes(value, name))
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{exc.args[0]}; or a percentage of the memory there is, such as '10%'") from None


def format_bytes(n: float) -> str:
    """``n`` bytes for people: ``"512 MiB"``, ``"1.5 GiB"``."""
    for unit, size in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if abs(n) >= size:
            return f"{n / size:.3g} {unit}"
    return f"{int(n)} B"
