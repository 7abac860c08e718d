"""Every public name has a docstring: the API reference (docs/api/) is generated from them.

Public means: each name in ``__all__`` of ``mtasklite_like`` and of its public modules (those whose
name has no leading underscore), and for a public class, each public method and property it
defines or inherits from the package's own classes. Constants (values that are not functions,
classes or modules) are described by the module's docstring instead.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import types
from typing import Any

import pytest

import mtasklite_like

pytest.importorskip("numpy")  # mtasklite_like.shared needs it


def public_modules() -> list[str]:
    names = ["mtasklite_like"]
    for info in pkgutil.walk_packages(mtasklite_like.__path__, "mtasklite_like."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            names.append(info.name)
    return sorted(names)


def _has_doc(obj: Any) -> bool:
    doc = getattr(obj, "__doc__", None)
    return isinstance(doc, str) and bool(doc.strip())


def _members(cls: type) -> list[tuple[str, Any]]:
    """Public methods and properties of ``cls`` defined by the package (not by object or Exception)."""
    seen: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        if not klass.__module__.startswith("mtasklite_like"):
            continue
        for name, value in vars(klass).items():
            if not name.startswith("_"):
                seen[name] = value
    out = []
    for name, value in seen.items():
        if isinstance(value, property):
            out.append((name, value.fget))
        elif isinstance(value, (staticmethod, classmethod)):
            out.append((name, value.__func__))
        elif inspect.isfunction(value):
            out.append((name, value))
    return out


def undocumented() -> list[str]:
    missing = []
    for module_name in public_modules():
        module = importlib.import_module(module_name)
        if not _has_doc(module):
            missing.append(module_name)
        exported = getattr(module, "__all__", None)
        if exported is None:
            missing.append(f"{module_name}.__all__ (a public module must list its public names)")
            continue
        for name in exported:
            obj = getattr(module, name)
            if not (inspect.isclass(obj) or callable(obj) or isinstance(obj, types.ModuleType)):
                continue  # a constant
            if not _has_doc(obj):
                missing.append(f"{module_name}.{name}")
            if inspect.isclass(obj):
                for member, value in _members(obj):
                    if not _has_doc(value):
                        missing.append(f"{module_name}.{name}.{member}")
    return sorted(set(missing))


def test_public_modules_are_found() -> None:
    modules = public_modules()
    assert {"mtasklite_like", "mtasklite_like.processes", "mtasklite_like.mapreduce",
            "mtasklite_like.workercontext.reductions"} <= set(modules)
    assert not any("._" in m for m in modules)


def test_every_public_name_has_a_docstring() -> None:
    assert undocumented() == []


def test_the_check_sees_a_missing_docstring(monkeypatch: pytest.MonkeyPatch) -> None:
    def bare() -> None:
        pass

    monkeypatch.setattr(mtasklite_like, "bare", bare, raising=False)
    monkeypatch.setattr(mtasklite_like, "__all__", [*mtasklite_like.__all__, "bare"])
    assert "mtasklite_like.bare" in undocumented()
