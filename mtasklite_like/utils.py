"""Small helpers, with every public name of ``mtasklite.utils`` (code and tests written against it
import them from here after the import is renamed)."""

from __future__ import annotations

import copy
import inspect
import sys
from collections.abc import Callable
from typing import Any

__all__ = ["current_function_name", "divide_kwargs", "is_exception", "is_sized_iterator"]

KwArgs = dict[str, Any]


def is_exception(result: Any) -> bool:
    """True when ``result`` is an exception object (what ``'ignore'`` mode yields for a failed item)."""
    return isinstance(result, Exception)


def is_sized_iterator(input_iterable: Any) -> bool:
    """True when the input knows its length, so the result iterator and progress bar can too."""
    return hasattr(input_iterable, "__len__")


def current_function_name() -> str:
    """The name of the function that calls this one (handy in progress bar descriptions and logs)."""
    return sys._getframe(1).f_code.co_name


def divide_kwargs(kwargs: KwArgs, first_type: Callable[..., Any]) -> tuple[KwArgs, KwArgs]:
    """Split ``kwargs`` into those that name a parameter of ``first_type`` and the rest.

    Returns ``(accepted_by_first_type, others)``; nothing is dropped.
    """
    params = inspect.signature(first_type).parameters
    names = {
        n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }
    first = {k: v for k, v in kwargs.items() if k in names}
    second = copy.copy({k: v for k, v in kwargs.items() if k not in names})
    return first, second
