"""``mtasklite.version``'s name at the same path: ``from mtasklite_like.version import __version__``."""

from __future__ import annotations

from ._version import __version__

__all__ = ["__version__"]
